package keystore_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/keygate/keygate/keystore"
)

func TestCreateGPGKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.user(t, "alice")
	ent := newGPG(t, "Alice", "alice@example.com", true) // the default (RSA) entity
	armored := armorEntity(t, ent, false)

	k, err := e.s.CreateGPGKey(e.ctx, sys, alice.ID, "\n"+armored+"\n\n")
	if err != nil {
		t.Fatal(err)
	}
	wantFP := strings.ToUpper(hex.EncodeToString(ent.PrimaryKey.Fingerprint))
	wantID := fmt.Sprintf("%016X", ent.PrimaryKey.KeyId)
	if k.Fingerprint != wantFP || len(k.Fingerprint) != 40 || k.PrimaryKeyID != wantID || len(k.PrimaryKeyID) != 16 ||
		strings.Join(k.Emails, ",") != "alice@example.com" || k.Key != strings.TrimSpace(armored) || k.UserID != alice.ID ||
		k.RevokedAt != nil || !k.CreatedAt.Equal(t0ms) {
		t.Fatalf("gpg key = %+v\nwant fingerprint %s keyid %s", k, wantFP, wantID)
	}
	if strings.ToUpper(k.PrimaryKeyID) != k.PrimaryKeyID || !strings.HasSuffix(k.Fingerprint, k.PrimaryKeyID) {
		t.Fatalf("key id %s is not the upper-case tail of fingerprint %s", k.PrimaryKeyID, k.Fingerprint)
	}
	got, err := e.s.GPGKey(e.ctx, alice.ID, k.ID)
	if err != nil || got.Fingerprint != k.Fingerprint || got.Key != k.Key || strings.Join(got.Emails, ",") != "alice@example.com" {
		t.Fatalf("GPGKey = %+v, %v", got, err)
	}
}

func TestGPGKeyRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.user(t, "alice")
	bob := e.user(t, "bob")
	ent := newGPG(t, "Alice", "alice@example.com", false)
	if _, err := e.s.CreateGPGKey(e.ctx, sys, alice.ID, armorEntity(t, ent, false)); err != nil {
		t.Fatal(err)
	}
	private := armorEntity(t, newGPG(t, "P", "p@example.com", false), true)
	// A private key under a public-key armor header.
	var disguised bytes.Buffer
	w, _ := armor.Encode(&disguised, "PGP PUBLIC KEY BLOCK", nil)
	if err := newGPG(t, "Q", "q@example.com", false).SerializePrivate(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	// Two primary keys in one block.
	var two bytes.Buffer
	w, _ = armor.Encode(&two, "PGP PUBLIC KEY BLOCK", nil)
	newGPG(t, "A", "a@example.com", false).Serialize(w)
	newGPG(t, "B", "b@example.com", false).Serialize(w)
	w.Close()

	cases := []struct {
		name   string
		user   int64
		text   string
		field  string
		reason string
	}{
		{"empty", alice.ID, "  ", "key", "can't be blank"},
		{"garbage", alice.ID, "hello world", "key", "ASCII-armored"},
		{"ssh-key", alice.ID, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl", "key", "ASCII-armored"},
		{"armored-garbage", alice.ID, "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n-----END PGP PUBLIC KEY BLOCK-----", "key", "not a valid"},
		{"armored-private-key", alice.ID, private, "key", "private key"},
		{"private-key-under-public-header", alice.ID, disguised.String(), "key", "private key"},
		{"two-primary-keys", alice.ID, two.String(), "key", "exactly one"},
		{"too-long", alice.ID, "-----BEGIN PGP PUBLIC KEY BLOCK-----\n" + strings.Repeat("A", keystore.MaxGPGKeyLength), "key", "too long"},
		{"duplicate-same-user", alice.ID, armorEntity(t, ent, false), "fingerprint", "has already been taken"},
		{"duplicate-other-user", bob.ID, armorEntity(t, ent, false), "fingerprint", "has already been taken"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := e.s.CreateGPGKey(e.ctx, sys, c.user, c.text)
			wantOnlyField(t, err, c.field, c.reason)
			if c.reason == "private key" {
				body := strings.Split(strings.TrimSpace(c.text), "\n")
				for _, l := range body[2 : len(body)-2] {
					if len(l) > 16 && strings.Contains(err.Error(), l[:16]) {
						t.Fatalf("error echoes the private key")
					}
				}
			}
		})
	}
	t.Run("unknown-user", func(t *testing.T) {
		t.Parallel()
		_, err := e.s.CreateGPGKey(e.ctx, sys, 999, armorEntity(t, newGPG(t, "X", "x@example.com", false), false))
		wantIs(t, err, keystore.ErrNotFound)
	})
}

func TestGPGKeyEmails(t *testing.T) {
	t.Parallel()
	ent := newGPG(t, "Alice", "alice@example.com", false)
	for _, id := range []struct{ name, email string }{
		{"Alice Work", "alice@work.example"},
		{"Alice Again", "ALICE@example.com"}, // same address, other case: listed once
	} {
		if err := ent.AddUserId(id.name, "", id.email, nil); err != nil {
			t.Fatal(err)
		}
	}
	pk, err := keystore.ParseGPGKey(armorEntity(t, ent, false))
	if err != nil {
		t.Fatal(err)
	}
	if len(pk.Emails) != 2 {
		t.Fatalf("Emails = %v, want alice@example.com and alice@work.example once each", pk.Emails)
	}
	seen := map[string]bool{}
	for _, m := range pk.Emails {
		seen[strings.ToLower(m)] = true
	}
	if !seen["alice@example.com"] || !seen["alice@work.example"] {
		t.Fatalf("Emails = %v", pk.Emails)
	}
}

func TestRevokeAndDeleteGPGKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.user(t, "alice")
	bob := e.user(t, "bob")
	k, err := e.s.CreateGPGKey(e.ctx, sys, alice.ID, armorEntity(t, newGPG(t, "Alice", "alice@example.com", false), false))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := e.s.CreateGPGKey(e.ctx, sys, alice.ID, armorEntity(t, newGPG(t, "Alice2", "alice@example.com", false), false))
	if err != nil {
		t.Fatal(err)
	}

	wantIs(t, e.s.RevokeGPGKey(e.ctx, sys, bob.ID, k.ID), keystore.ErrNotFound)
	e.clock.Advance(time.Minute)
	if err := e.s.RevokeGPGKey(e.ctx, sys, alice.ID, k.ID); err != nil {
		t.Fatal(err)
	}
	got, _ := e.s.GPGKey(e.ctx, alice.ID, k.ID)
	if got.RevokedAt == nil || !got.RevokedAt.Equal(t0ms.Add(time.Minute)) {
		t.Fatalf("RevokedAt = %v, want %v", got.RevokedAt, t0ms.Add(time.Minute))
	}
	e.clock.Advance(time.Minute)
	if err := e.s.RevokeGPGKey(e.ctx, sys, alice.ID, k.ID); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	if again, _ := e.s.GPGKey(e.ctx, alice.ID, k.ID); !again.RevokedAt.Equal(*got.RevokedAt) {
		t.Fatalf("second revoke moved RevokedAt to %v", again.RevokedAt)
	}
	if other, _ := e.s.GPGKey(e.ctx, alice.ID, k2.ID); other.RevokedAt != nil {
		t.Fatal("revoking one key revoked another")
	}
	wantIs(t, e.s.RevokeGPGKey(e.ctx, sys, alice.ID, 999), keystore.ErrNotFound)

	_, err = e.s.GPGKey(e.ctx, bob.ID, k.ID)
	wantIs(t, err, keystore.ErrNotFound)
	wantIs(t, e.s.DeleteGPGKey(e.ctx, sys, bob.ID, k.ID), keystore.ErrNotFound)
	if err := e.s.DeleteGPGKey(e.ctx, sys, alice.ID, k.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.GPGKey(e.ctx, alice.ID, k.ID)
	wantIs(t, err, keystore.ErrNotFound)
	wantIs(t, e.s.DeleteGPGKey(e.ctx, sys, alice.ID, k.ID), keystore.ErrNotFound)
	ks, n, err := e.s.ListGPGKeys(e.ctx, alice.ID, keystore.Page{})
	if err != nil || n != 1 || ks[0].ID != k2.ID {
		t.Fatalf("ListGPGKeys = %v (%d), %v", ks, n, err)
	}
}

// FuzzParseGPGKey: hostile armor never panics and only yields "key" errors.
func FuzzParseGPGKey(f *testing.F) {
	f.Add(armorEntity(f, newGPG(f, "A", "a@example.com", false), false))
	f.Add("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxsBNBF\n-----END PGP PUBLIC KEY BLOCK-----")
	f.Add("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n\n-----END PGP PUBLIC KEY BLOCK-----")
	f.Fuzz(func(t *testing.T, text string) {
		pk, err := keystore.ParseGPGKey(text)
		if err != nil {
			var ve *keystore.ValidationError
			if !errors.As(err, &ve) || len(ve.Fields["key"]) == 0 {
				t.Fatalf("err = %v", err)
			}
			return
		}
		if len(pk.Fingerprint) < 40 || len(pk.PrimaryKeyID) != 16 {
			t.Fatalf("parsed = %+v", pk)
		}
	})
}
