package keystore_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
)

func TestCreateKey(t *testing.T) {
	t.Parallel()
	future := t0.Add(30 * 24 * time.Hour).Add(123456789 * time.Nanosecond)
	cases := []struct {
		name      string
		in        func(line string) keystore.KeyInput
		field     string // "" means accepted
		reason    string
		wantUsage string
		wantExp   *time.Time
	}{
		{"default-usage-is-auth-and-signing", func(l string) keystore.KeyInput { return keystore.KeyInput{Title: "laptop", Key: l} },
			"", "", keystore.UsageAuthAndSigning, nil},
		{"usage-auth", func(l string) keystore.KeyInput {
			return keystore.KeyInput{Title: "laptop", Key: l, UsageType: keystore.UsageAuth}
		}, "", "", keystore.UsageAuth, nil},
		{"usage-signing", func(l string) keystore.KeyInput {
			return keystore.KeyInput{Title: "laptop", Key: l, UsageType: keystore.UsageSigning}
		}, "", "", keystore.UsageSigning, nil},
		{"usage-auth-and-signing", func(l string) keystore.KeyInput {
			return keystore.KeyInput{Title: "laptop", Key: l, UsageType: keystore.UsageAuthAndSigning}
		}, "", "", keystore.UsageAuthAndSigning, nil},
		{"expires-in-future-kept-to-millisecond-utc", func(l string) keystore.KeyInput {
			return keystore.KeyInput{Title: "laptop", Key: l, ExpiresAt: ptr(future)}
		}, "", "", keystore.UsageAuthAndSigning, ptr(future.UTC().Truncate(time.Millisecond))},
		{"expires-in-past", func(l string) keystore.KeyInput {
			return keystore.KeyInput{Title: "laptop", Key: l, ExpiresAt: ptr(t0.Add(-time.Second))}
		}, "expires_at", "has expired", "", nil},
		{"expires-now", func(l string) keystore.KeyInput {
			return keystore.KeyInput{Title: "laptop", Key: l, ExpiresAt: ptr(t0)}
		}, "expires_at", "has expired", "", nil},
		{"unknown-usage", func(l string) keystore.KeyInput {
			return keystore.KeyInput{Title: "laptop", Key: l, UsageType: "login"}
		}, "usage_type", "valid value", "", nil},
		{"usage-wrong-case", func(l string) keystore.KeyInput {
			return keystore.KeyInput{Title: "laptop", Key: l, UsageType: "AUTH"}
		}, "usage_type", "valid value", "", nil},
		{"blank-title", func(l string) keystore.KeyInput { return keystore.KeyInput{Title: "  ", Key: l} },
			"title", "can't be blank", "", nil},
		{"title-256-runes", func(l string) keystore.KeyInput {
			return keystore.KeyInput{Title: strings.Repeat("ü", 256), Key: l}
		}, "title", "too long", "", nil},
		{"bad-key", func(string) keystore.KeyInput { return keystore.KeyInput{Title: "x", Key: "ssh-ed25519 AAAA"} },
			"key", "is invalid", "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			u := e.user(t, "alice")
			pub, line := newEd25519(t, "alice@laptop")
			k, err := e.s.CreateKey(e.ctx, sys, u.ID, c.in(line))
			if c.field != "" {
				wantOnlyField(t, err, c.field, c.reason)
				if _, n, _ := e.s.ListKeys(e.ctx, keystore.KeyFilter{}, keystore.Page{}); n != 0 {
					t.Fatalf("%d keys stored after refusal", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.ID == 0 || k.UserID != u.ID || k.Title != "laptop" || k.Key != line || k.Type != gossh.KeyAlgoED25519 || k.Bits != 256 ||
				k.FingerprintSHA256 != gossh.FingerprintSHA256(pub) || k.FingerprintMD5 != gossh.FingerprintLegacyMD5(pub) ||
				k.UsageType != c.wantUsage || !k.CreatedAt.Equal(t0ms) || k.LastUsedAt != nil {
				t.Fatalf("key = %+v", k)
			}
			if (k.ExpiresAt == nil) != (c.wantExp == nil) || (k.ExpiresAt != nil && !k.ExpiresAt.Equal(*c.wantExp)) {
				t.Fatalf("ExpiresAt = %v, want %v", k.ExpiresAt, c.wantExp)
			}
			got, err := e.s.Key(e.ctx, k.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !sameKey(got, k) {
				t.Fatalf("Key(%d) = %+v\nwant %+v", k.ID, got, k)
			}
		})
	}
}

func sameKey(a, b *keystore.Key) bool {
	eq := func(x, y *time.Time) bool {
		return (x == nil) == (y == nil) && (x == nil || (x.Equal(*y) && x.Location() == time.UTC && y.Location() == time.UTC))
	}
	return a.ID == b.ID && a.UserID == b.UserID && a.Title == b.Title && a.Key == b.Key && a.Type == b.Type && a.Bits == b.Bits &&
		a.FingerprintSHA256 == b.FingerprintSHA256 && a.FingerprintMD5 == b.FingerprintMD5 && a.UsageType == b.UsageType &&
		eq(a.ExpiresAt, b.ExpiresAt) && eq(&a.CreatedAt, &b.CreatedAt) && eq(a.LastUsedAt, b.LastUsedAt)
}

func TestCreateKeyMultipleProblems(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.user(t, "alice")
	_, err := e.s.CreateKey(e.ctx, sys, u.ID, keystore.KeyInput{Title: "", Key: "", UsageType: "x", ExpiresAt: ptr(t0.Add(-time.Hour))})
	for _, f := range []string{"title", "key", "usage_type", "expires_at"} {
		wantField(t, err, f, "")
	}
}

func TestCreateKeyUnknownUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, line := newEd25519(t, "")
	_, err := e.s.CreateKey(e.ctx, sys, 4242, keystore.KeyInput{Title: "x", Key: line})
	wantIs(t, err, keystore.ErrNotFound)
}

func TestDuplicateFingerprint(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		sameUser  bool
		transform func(line string) string
	}{
		{"same-line-other-user", false, func(l string) string { return l }},
		{"same-line-same-user", true, func(l string) string { return l }},
		{"other-comment-other-user", false, func(l string) string { return strings.Fields(l)[0] + " " + strings.Fields(l)[1] + " other" }},
		{"padded-other-user", false, func(l string) string { return "  " + l + "\n" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			alice := e.user(t, "alice")
			bob := e.user(t, "bob")
			_, line := newEd25519(t, "alice")
			e.key(t, alice.ID, line, "")
			owner := bob.ID
			if c.sameUser {
				owner = alice.ID
			}
			_, err := e.s.CreateKey(e.ctx, sys, owner, keystore.KeyInput{Title: "dup", Key: c.transform(line), UsageType: keystore.UsageAuth})
			wantOnlyField(t, err, "fingerprint_sha256", "has already been taken")
			if _, n, _ := e.s.ListKeys(e.ctx, keystore.KeyFilter{}, keystore.Page{}); n != 1 {
				t.Fatalf("%d keys, want 1", n)
			}
		})
	}
}

func TestKeyByFingerprint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.user(t, "alice")
	pub, line := newEd25519(t, "")
	other, otherLine := newEd25519(t, "")
	k := e.key(t, u.ID, line, "")
	k2 := e.key(t, u.ID, otherLine, "")
	sha := gossh.FingerprintSHA256(pub)
	md5 := gossh.FingerprintLegacyMD5(pub)
	unknown, _ := newEd25519(t, "")
	cases := []struct {
		name   string
		fp     string
		wantID int64 // 0: not found
	}{
		{"sha256-prefixed", sha, k.ID},
		{"sha256-bare", strings.TrimPrefix(sha, "SHA256:"), k.ID},
		{"md5-lower", md5, k.ID},
		{"md5-upper", strings.ToUpper(md5), k.ID},
		{"md5-prefixed", "MD5:" + md5, k.ID},
		{"other-key-sha256", gossh.FingerprintSHA256(other), k2.ID},
		{"other-key-md5", gossh.FingerprintLegacyMD5(other), k2.ID},
		{"unknown-sha256", gossh.FingerprintSHA256(unknown), 0},
		{"unknown-md5", gossh.FingerprintLegacyMD5(unknown), 0},
		{"sha256-wrong-case", "SHA256:" + strings.ToLower(strings.TrimPrefix(sha, "SHA256:")), 0},
		{"garbage", "hello", 0},
		{"empty", "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := e.s.KeyByFingerprint(e.ctx, c.fp)
			if c.wantID == 0 {
				wantIs(t, err, keystore.ErrNotFound)
				return
			}
			if err != nil || got.ID != c.wantID {
				t.Fatalf("KeyByFingerprint(%q) = %+v, %v; want id %d", c.fp, got, err, c.wantID)
			}
		})
	}
}

func TestListKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.user(t, "alice")
	bob := e.user(t, "bob")
	usages := []string{keystore.UsageAuth, keystore.UsageSigning, keystore.UsageAuthAndSigning, keystore.UsageAuth, keystore.UsageSigning}
	var aliceIDs []int64
	for i, usage := range usages {
		_, line := newEd25519(t, "a")
		aliceIDs = append(aliceIDs, e.key(t, alice.ID, line, usage).ID)
		if i < 2 {
			_, line := newEd25519(t, "b")
			e.key(t, bob.ID, line, keystore.UsageAuth)
		}
	}
	cases := []struct {
		name      string
		f         keystore.KeyFilter
		pg        keystore.Page
		wantIDs   []int64
		wantTotal int
	}{
		{"alice-page-1", keystore.KeyFilter{UserID: alice.ID}, keystore.Page{Page: 1, PerPage: 2}, aliceIDs[:2], 5},
		{"alice-page-2", keystore.KeyFilter{UserID: alice.ID}, keystore.Page{Page: 2, PerPage: 2}, aliceIDs[2:4], 5},
		{"alice-page-3", keystore.KeyFilter{UserID: alice.ID}, keystore.Page{Page: 3, PerPage: 2}, aliceIDs[4:], 5},
		{"alice-page-4-empty", keystore.KeyFilter{UserID: alice.ID}, keystore.Page{Page: 4, PerPage: 2}, nil, 5},
		{"alice-defaults", keystore.KeyFilter{UserID: alice.ID}, keystore.Page{}, aliceIDs, 5},
		{"alice-all-pages", keystore.KeyFilter{UserID: alice.ID}, keystore.Page{PerPage: -1}, aliceIDs, 5},
		{"alice-signing-capable", keystore.KeyFilter{UserID: alice.ID, Usages: []string{keystore.UsageSigning, keystore.UsageAuthAndSigning}},
			keystore.Page{}, []int64{aliceIDs[1], aliceIDs[2], aliceIDs[4]}, 3},
		{"alice-auth-only", keystore.KeyFilter{UserID: alice.ID, Usages: []string{keystore.UsageAuth}}, keystore.Page{}, []int64{aliceIDs[0], aliceIDs[3]}, 2},
		{"everyone-total", keystore.KeyFilter{}, keystore.Page{Page: 1, PerPage: 1}, []int64{aliceIDs[0]}, 7},
		{"unknown-user", keystore.KeyFilter{UserID: 999}, keystore.Page{}, nil, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ks, total, err := e.s.ListKeys(e.ctx, c.f, c.pg)
			if err != nil {
				t.Fatal(err)
			}
			var ids []int64
			for _, k := range ks {
				ids = append(ids, k.ID)
			}
			if !equalIDs(ids, c.wantIDs) || total != c.wantTotal {
				t.Fatalf("got %v (total %d), want %v (total %d)", ids, total, c.wantIDs, c.wantTotal)
			}
		})
	}
}

func equalIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDeleteKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.user(t, "alice")
	bob := e.user(t, "bob")
	_, line := newEd25519(t, "")
	k := e.key(t, alice.ID, line, "")
	_, line2 := newEd25519(t, "")
	k2 := e.key(t, alice.ID, line2, "")

	wantIs(t, e.s.DeleteKey(e.ctx, sys, bob.ID, k.ID), keystore.ErrNotFound)
	if _, err := e.s.Key(e.ctx, k.ID); err != nil {
		t.Fatalf("key gone after a refused delete: %v", err)
	}
	wantIs(t, e.s.DeleteKey(e.ctx, sys, alice.ID, 9999), keystore.ErrNotFound)
	if err := e.s.DeleteKey(e.ctx, sys, alice.ID, k.ID); err != nil {
		t.Fatal(err)
	}
	wantIs(t, e.s.DeleteKey(e.ctx, sys, alice.ID, k.ID), keystore.ErrNotFound)
	_, err := e.s.Key(e.ctx, k.ID)
	wantIs(t, err, keystore.ErrNotFound)
	// userID 0 is the admin form: any owner.
	if err := e.s.DeleteKey(e.ctx, sys, 0, k2.ID); err != nil {
		t.Fatal(err)
	}
	if _, n, _ := e.s.ListKeys(e.ctx, keystore.KeyFilter{}, keystore.Page{}); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}

func TestMergeKeyUsage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		existing    string // usage of alice's existing key; "" for none
		existingBob bool   // the existing key belongs to bob
		add         string
		wantCreated bool
		wantUsage   string
		wantField   string
	}{
		{"signing-onto-auth", keystore.UsageAuth, false, keystore.UsageSigning, false, keystore.UsageAuthAndSigning, ""},
		{"auth-onto-signing", keystore.UsageSigning, false, keystore.UsageAuth, false, keystore.UsageAuthAndSigning, ""},
		{"signing-new-key", "", false, keystore.UsageSigning, true, keystore.UsageSigning, ""},
		{"auth-new-key", "", false, keystore.UsageAuth, true, keystore.UsageAuth, ""},
		{"signing-onto-signing", keystore.UsageSigning, false, keystore.UsageSigning, false, "", "key"},
		{"signing-onto-auth-and-signing", keystore.UsageAuthAndSigning, false, keystore.UsageSigning, false, "", "key"},
		{"signing-onto-someone-elses-key", keystore.UsageAuth, true, keystore.UsageSigning, false, "", "key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			alice := e.user(t, "alice")
			bob := e.user(t, "bob")
			_, line := newEd25519(t, "k")
			var existing *keystore.Key
			if c.existing != "" {
				owner := alice.ID
				if c.existingBob {
					owner = bob.ID
				}
				existing = e.key(t, owner, line, c.existing)
			}
			k, created, err := e.s.MergeKeyUsage(e.ctx, sys, alice.ID, keystore.KeyInput{Title: "gh", Key: line, UsageType: c.add})
			_, total, _ := e.s.ListKeys(e.ctx, keystore.KeyFilter{}, keystore.Page{})
			if c.wantField != "" {
				wantOnlyField(t, err, c.wantField, "already")
				if existing != nil {
					got, _ := e.s.Key(e.ctx, existing.ID)
					if got.UsageType != c.existing || got.UserID != existing.UserID {
						t.Fatalf("refused merge changed key to %+v", got)
					}
				}
				if total != 1 {
					t.Fatalf("%d keys, want 1", total)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if created != c.wantCreated || k.UsageType != c.wantUsage || k.UserID != alice.ID {
				t.Fatalf("merge = %+v, created %v", k, created)
			}
			if total != 1 {
				t.Fatalf("%d keys, want exactly one row", total)
			}
			if existing != nil && k.ID != existing.ID {
				t.Fatalf("merged into id %d, want %d", k.ID, existing.ID)
			}
			got, _ := e.s.Key(e.ctx, k.ID)
			if got.UsageType != c.wantUsage {
				t.Fatalf("stored usage = %q, want %q", got.UsageType, c.wantUsage)
			}
		})
	}
}

func TestDropKeyUsage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		have        string
		drop        string
		otherUser   bool
		wantUsage   string // "" means the key is deleted
		wantErr     error
		skipBecause string
	}{
		{"signing-from-auth-and-signing", keystore.UsageAuthAndSigning, keystore.UsageSigning, false, keystore.UsageAuth, nil, ""},
		{"auth-from-auth-and-signing", keystore.UsageAuthAndSigning, keystore.UsageAuth, false, keystore.UsageSigning, nil, ""},
		{"signing-from-signing-deletes", keystore.UsageSigning, keystore.UsageSigning, false, "", nil, ""},
		{"auth-from-auth-deletes", keystore.UsageAuth, keystore.UsageAuth, false, "", nil, ""},
		{"signing-from-auth-not-found", keystore.UsageAuth, keystore.UsageSigning, false, keystore.UsageAuth, keystore.ErrNotFound, ""},
		{"auth-from-signing-not-found", keystore.UsageSigning, keystore.UsageAuth, false, keystore.UsageSigning, keystore.ErrNotFound, ""},
		{"other-users-key-not-found", keystore.UsageAuthAndSigning, keystore.UsageSigning, true, keystore.UsageAuthAndSigning, keystore.ErrNotFound, ""},
		{"unknown-usage-changes-nothing", keystore.UsageAuthAndSigning, "bogus", false, keystore.UsageAuthAndSigning, errRefused, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if c.skipBecause != "" {
				t.Skip(c.skipBecause)
			}
			e := newEnv(t)
			alice := e.user(t, "alice")
			bob := e.user(t, "bob")
			_, line := newEd25519(t, "k")
			k := e.key(t, alice.ID, line, c.have)
			as := alice.ID
			if c.otherUser {
				as = bob.ID
			}
			err := e.s.DropKeyUsage(e.ctx, sys, as, k.ID, c.drop)
			switch {
			case c.wantErr == errRefused:
				if !errors.Is(err, keystore.ErrInvalid) && !errors.Is(err, keystore.ErrNotFound) {
					t.Fatalf("err = %v, want ErrInvalid or ErrNotFound", err)
				}
			case c.wantErr != nil:
				wantIs(t, err, c.wantErr)
			case err != nil:
				t.Fatal(err)
			}
			got, err := e.s.Key(e.ctx, k.ID)
			if c.wantUsage == "" {
				wantIs(t, err, keystore.ErrNotFound)
				return
			}
			if err != nil || got.UsageType != c.wantUsage {
				t.Fatalf("after drop: %+v, %v; want usage %q", got, err, c.wantUsage)
			}
		})
	}
}

// errRefused stands for "ErrInvalid or ErrNotFound".
var errRefused = errors.New("refused")
