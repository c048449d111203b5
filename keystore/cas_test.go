package keystore_test

import (
	"errors"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
)

func TestCreateCA(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	owner := e.user(t, "owner")
	top := e.group(t, "acme", nil, owner.ID)
	other := e.group(t, "other", nil, owner.ID)
	sub := e.group(t, "infra", &top.ID, 0)
	pub, line := newEd25519(t, "acme-ca")

	ca, err := e.s.CreateCA(e.ctx, keystore.Actor{UserID: owner.ID, RemoteIP: "198.51.100.7"}, top.ID,
		keystore.CAInput{Title: " Acme CA ", Key: `cert-authority ` + line})
	if err != nil {
		t.Fatal(err)
	}
	if ca.GroupID != top.ID || ca.Title != "Acme CA" || ca.Key != line || ca.FingerprintSHA256 != gossh.FingerprintSHA256(pub) ||
		!ca.CreatedAt.Equal(t0ms) {
		t.Fatalf("ca = %+v", ca)
	}
	got, err := e.s.CA(e.ctx, top.ID, ca.ID)
	if err != nil || *got != *ca {
		t.Fatalf("CA = %+v, %v; want %+v", got, err, ca)
	}
	_, err = e.s.CA(e.ctx, other.ID, ca.ID)
	wantIs(t, err, keystore.ErrNotFound)

	_, line2 := newEd25519(t, "")
	_, rsaLine := authorizedLine(t, &rsaKey(2048).PublicKey, "rsa-ca")
	cases := []struct {
		name    string
		group   int64
		in      keystore.CAInput
		field   string
		reason  string
		wantErr error
	}{
		{"second-ca-same-group", top.ID, keystore.CAInput{Title: "second", Key: line2}, "", "", nil},
		{"rsa-ca-other-group", other.ID, keystore.CAInput{Title: "rsa", Key: rsaLine}, "", "", nil},
		{"subgroup", sub.ID, keystore.CAInput{Title: "x", Key: line2}, "", "", keystore.ErrNotTopLevel},
		{"unknown-group", 9999, keystore.CAInput{Title: "x", Key: line2}, "", "", keystore.ErrNotFound},
		// A key is its group's own: another group registering it first
		// stops no one.
		{"same-ca-other-group", other.ID, keystore.CAInput{Title: "dup", Key: line}, "", "", nil},
		{"same-ca-same-group-other-comment", top.ID, keystore.CAInput{Title: "dup", Key: strings.TrimSuffix(line, " acme-ca")}, "fingerprint_sha256", "has already been taken", nil},
		{"certificate-as-ca", other.ID, keystore.CAInput{Title: "cert", Key: certLine(t)}, "key", "not a certificate", nil},
		{"blank-key", other.ID, keystore.CAInput{Title: "x"}, "key", "can't be blank", nil},
		{"blank-title", other.ID, keystore.CAInput{Title: " ", Key: line2}, "title", "can't be blank", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.s.CreateCA(e.ctx, sys, c.group, c.in)
			switch {
			case c.field != "":
				wantOnlyField(t, err, c.field, c.reason)
			case c.wantErr != nil:
				wantIs(t, err, c.wantErr)
			case err != nil:
				t.Fatal(err)
			}
		})
	}
	if cas, n, _ := e.s.ListCAs(e.ctx, top.ID, keystore.Page{}); n != 2 || cas[0].ID != ca.ID {
		t.Fatalf("top CAs = %d", n)
	}
	if _, n, _ := e.s.ListCAs(e.ctx, sub.ID, keystore.Page{}); n != 0 {
		t.Fatalf("subgroup CAs = %d", n)
	}
	if _, n, _ := e.s.ListCAs(e.ctx, 0, keystore.Page{}); n != 4 {
		t.Fatalf("all CAs = %d, want 4", n)
	}
}

func TestDeleteCA(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.group(t, "a", nil, 0)
	b := e.group(t, "b", nil, 0)
	_, line := newEd25519(t, "")
	ca, err := e.s.CreateCA(e.ctx, sys, a.ID, keystore.CAInput{Title: "ca", Key: line})
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.s.CreateRevocation(e.ctx, sys, ca, keystore.RevocationInput{Kind: keystore.RevokeKeyID, Value: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	wantIs(t, e.s.DeleteCA(e.ctx, sys, b.ID, ca.ID), keystore.ErrNotFound)
	if _, err := e.s.CA(e.ctx, a.ID, ca.ID); err != nil {
		t.Fatalf("CA gone after a refused delete: %v", err)
	}
	if err := e.s.DeleteCA(e.ctx, sys, a.ID, ca.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.CA(e.ctx, 0, ca.ID)
	wantIs(t, err, keystore.ErrNotFound)
	// The revocation belongs to group a and the CA's key: it outlives the
	// row, and applies again when a registers the key again.
	if rs, n, _ := e.s.ListRevocations(e.ctx, 0, "", keystore.Page{}); n != 1 || rs[0].ID != r.ID {
		t.Fatalf("revocation %d did not outlive its CA row: %d listed", r.ID, n)
	}
	again, err := e.s.CreateCA(e.ctx, sys, a.ID, keystore.CAInput{Title: "same key", Key: line})
	if err != nil {
		t.Fatal(err)
	}
	if rs, n, _ := e.s.ListRevocations(e.ctx, a.ID, again.FingerprintSHA256, keystore.Page{}); n != 1 || rs[0].ID != r.ID {
		t.Fatalf("the re-added key lists %d revocations, want revocation %d", n, r.ID)
	}
	// Group b registering the same key sees none of a's revocations and
	// cannot lift them: to b they do not exist.
	inB, err := e.s.CreateCA(e.ctx, sys, b.ID, keystore.CAInput{Title: "same key", Key: line})
	if err != nil {
		t.Fatal(err)
	}
	if _, n, _ := e.s.ListRevocations(e.ctx, b.ID, inB.FingerprintSHA256, keystore.Page{}); n != 0 {
		t.Fatalf("group b lists %d of group a's revocations", n)
	}
	// b makes its own, with the same value, without touching a's.
	if _, err := e.s.CreateRevocation(e.ctx, sys, inB, keystore.RevocationInput{Kind: keystore.RevokeKeyID, Value: "alice"}); err != nil {
		t.Fatalf("group b revoking key id alice too: %v", err)
	}
	wantIs(t, e.s.DeleteRevocation(e.ctx, sys, inB, r.ID), keystore.ErrNotFound)
	if err := e.s.DeleteRevocation(e.ctx, sys, again, r.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.s.DeleteCA(e.ctx, sys, a.ID, again.ID); err != nil {
		t.Fatal(err)
	}
	wantIs(t, e.s.DeleteCA(e.ctx, sys, a.ID, ca.ID), keystore.ErrNotFound)
}

func TestRevocations(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.group(t, "g", nil, 0)
	_, l1 := newEd25519(t, "")
	_, l2 := newEd25519(t, "")
	ca, err := e.s.CreateCA(e.ctx, sys, g.ID, keystore.CAInput{Title: "ca1", Key: l1})
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := e.s.CreateCA(e.ctx, sys, g.ID, keystore.CAInput{Title: "ca2", Key: l2})
	if err != nil {
		t.Fatal(err)
	}
	certKey, _ := newEd25519(t, "")
	fp := gossh.FingerprintSHA256(certKey)

	unknown := &keystore.GroupCA{ID: 9999, GroupID: g.ID, FingerprintSHA256: fp}
	padded := fp + "="
	cases := []struct {
		name      string
		ca        *keystore.GroupCA
		in        keystore.RevocationInput
		field     string
		reason    string
		wantValue string
		wantErr   error
	}{
		{"serial", ca, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "42", Reason: "lost laptop"}, "", "", "42", nil},
		{"serial-max-uint64", ca, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "18446744073709551615"}, "", "", "18446744073709551615", nil},
		{"serial-zero-with-spaces", ca, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: " 0 "}, "", "", "0", nil},
		{"serial-leading-zeros-canonical", ca, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "07"}, "", "", "7", nil},
		{"serial-hex-canonical", ca, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "0x2B"}, "", "", "43", nil},
		{"serial-hex-max", ca2, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "0xffffffffffffffff"}, "", "", "18446744073709551615", nil},
		{"key-id", ca, keystore.RevocationInput{Kind: keystore.RevokeKeyID, Value: "alice@laptop"}, "", "", "alice@laptop", nil},
		{"fingerprint", ca, keystore.RevocationInput{Kind: keystore.RevokeFingerprint, Value: fp}, "", "", fp, nil},
		{"fingerprint-padded-is-unpadded", ca2, keystore.RevocationInput{Kind: keystore.RevokeFingerprint, Value: padded}, "", "", fp, nil},
		{"same-serial-other-ca", ca2, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "42"}, "", "", "42", nil},
		{"same-value-other-kind", ca, keystore.RevocationInput{Kind: keystore.RevokeKeyID, Value: "42"}, "", "", "42", nil},
		{"serial-negative", ca, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "-1"}, "serial", "unsigned 64-bit", "", nil},
		{"serial-plus", ca, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "+1"}, "serial", "unsigned 64-bit", "", nil},
		{"serial-overflow", ca, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "18446744073709551616"}, "serial", "unsigned 64-bit", "", nil},
		{"serial-hex-overflow", ca, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "0x10000000000000000"}, "serial", "unsigned 64-bit", "", nil},
		{"serial-not-a-number", ca, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "seven"}, "serial", "unsigned 64-bit", "", nil},
		{"serial-bare-0x", ca, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "0x"}, "serial", "unsigned 64-bit", "", nil},
		{"serial-empty", ca, keystore.RevocationInput{Kind: keystore.RevokeSerial}, "serial", "unsigned 64-bit", "", nil},
		{"key-id-empty", ca, keystore.RevocationInput{Kind: keystore.RevokeKeyID, Value: "  "}, "key_id", "1 to 1024", "", nil},
		{"key-id-too-long", ca, keystore.RevocationInput{Kind: keystore.RevokeKeyID, Value: strings.Repeat("k", 1025)}, "key_id", "1 to 1024", "", nil},
		{"fingerprint-md5", ca, keystore.RevocationInput{Kind: keystore.RevokeFingerprint, Value: gossh.FingerprintLegacyMD5(certKey)}, "fingerprint", "SHA256", "", nil},
		{"fingerprint-empty", ca, keystore.RevocationInput{Kind: keystore.RevokeFingerprint, Value: "SHA256:"}, "fingerprint", "SHA256", "", nil},
		{"fingerprint-garbage", ca, keystore.RevocationInput{Kind: keystore.RevokeFingerprint, Value: "SHA256:garbage"}, "fingerprint", "SHA256", "", nil},
		// Read as pasted (NormalizeFingerprint): a bare one is fp, which ca
		// has already revoked.
		{"fingerprint-bare-is-the-same", ca, keystore.RevocationInput{Kind: keystore.RevokeFingerprint, Value: strings.TrimPrefix(fp, "SHA256:")}, "value", "has already been taken", "", nil},
		{"fingerprint-keygen-line-is-the-same", ca, keystore.RevocationInput{Kind: keystore.RevokeFingerprint, Value: "256 " + fp + " c (ED25519)"}, "value", "has already been taken", "", nil},
		{"fingerprint-short", ca, keystore.RevocationInput{Kind: keystore.RevokeFingerprint, Value: fp[:len(fp)-4]}, "fingerprint", "SHA256", "", nil},
		{"unknown-kind", ca, keystore.RevocationInput{Kind: "principal", Value: "alice"}, "kind", "one of", "", nil},
		{"reason-too-long", ca, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "9", Reason: strings.Repeat("r", 1001)}, "reason", "too long", "", nil},
		{"unknown-ca", unknown, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "1"}, "", "", "", keystore.ErrNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := e.s.CreateRevocation(e.ctx, sys, c.ca, c.in)
			switch {
			case c.field != "":
				wantOnlyField(t, err, c.field, c.reason)
				return
			case c.wantErr != nil:
				wantIs(t, err, c.wantErr)
				return
			case err != nil:
				t.Fatal(err)
			}
			if r.CAFingerprint != c.ca.FingerprintSHA256 || r.GroupID != c.ca.GroupID || r.Kind != c.in.Kind || r.Value != c.wantValue || r.Reason != c.in.Reason || !r.CreatedAt.Equal(t0ms) {
				t.Fatalf("revocation = %+v", r)
			}
		})
	}
	rs, n, err := e.s.ListRevocations(e.ctx, g.ID, ca.FingerprintSHA256, keystore.Page{})
	if err != nil || n != 8 {
		t.Fatalf("ListRevocations(ca) = %d, %v; want 8", n, err)
	}
	wantIs(t, e.s.DeleteRevocation(e.ctx, sys, ca2, rs[0].ID), keystore.ErrNotFound)
	if err := e.s.DeleteRevocation(e.ctx, sys, ca, rs[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, n, _ := e.s.ListRevocations(e.ctx, g.ID, ca.FingerprintSHA256, keystore.Page{}); n != 7 {
		t.Fatalf("after delete: %d", n)
	}
}

func TestDuplicateRevocation(t *testing.T) {
	t.Parallel()
	certKey, _ := newEd25519(t, "")
	fp := gossh.FingerprintSHA256(certKey)
	cases := []struct {
		name          string
		first, second keystore.RevocationInput
	}{
		{"serial", keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "7"}, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "7", Reason: "again"}},
		{"key-id", keystore.RevocationInput{Kind: keystore.RevokeKeyID, Value: "alice"}, keystore.RevocationInput{Kind: keystore.RevokeKeyID, Value: " alice "}},
		{"fingerprint-unpadded-then-padded", keystore.RevocationInput{Kind: keystore.RevokeFingerprint, Value: fp},
			keystore.RevocationInput{Kind: keystore.RevokeFingerprint, Value: fp + "="}},
		{"serial-decimal-then-hex", keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "255"}, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "0xff"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			g := e.group(t, "g", nil, 0)
			_, line := newEd25519(t, "")
			ca, err := e.s.CreateCA(e.ctx, sys, g.ID, keystore.CAInput{Title: "ca", Key: line})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.s.CreateRevocation(e.ctx, sys, ca, c.first); err != nil {
				t.Fatal(err)
			}
			_, err = e.s.CreateRevocation(e.ctx, sys, ca, c.second)
			if !errors.Is(err, keystore.ErrInvalid) && !errors.Is(err, keystore.ErrConflict) {
				t.Fatalf("duplicate revocation: err = %v, want ErrInvalid or ErrConflict", err)
			}
			if _, n, _ := e.s.ListRevocations(e.ctx, g.ID, ca.FingerprintSHA256, keystore.Page{}); n != 1 {
				t.Fatalf("%d revocations, want 1", n)
			}
		})
	}
}

// TestDuplicateRevocationField pins the field name the API will show: a
// driver error must never leak into it.
func TestDuplicateRevocationField(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := e.group(t, "g", nil, 0)
	_, line := newEd25519(t, "")
	ca, err := e.s.CreateCA(e.ctx, sys, g.ID, keystore.CAInput{Title: "ca", Key: line})
	if err != nil {
		t.Fatal(err)
	}
	in := keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "7"}
	if _, err := e.s.CreateRevocation(e.ctx, sys, ca, in); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.CreateRevocation(e.ctx, sys, ca, in)
	wantOnlyField(t, err, "value", "has already been taken")
}
