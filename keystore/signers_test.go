package keystore_test

import (
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// signers returns AllowedSigners as "email key valid-before" strings.
func signers(t *testing.T, e *env, userID int64) []keystore.SignerEntry {
	t.Helper()
	got, err := e.s.AllowedSigners(e.ctx, userID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func wantSigners(t *testing.T, got, want []keystore.SignerEntry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("AllowedSigners = %+v,\nwant %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Email != w.Email || g.Key != w.Key || (g.ValidBefore == nil) != (w.ValidBefore == nil) ||
			(g.ValidBefore != nil && !g.ValidBefore.Equal(*w.ValidBefore)) {
			t.Errorf("entry %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestAllowedSigners(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.user(t, "alice")
	bob := e.user(t, "bob")
	carol := e.user(t, "carol")
	mk := func(u *keystore.User, usage string, exp *time.Time) *keystore.Key {
		_, line := newEd25519(t, u.Username)
		k, err := e.s.CreateKey(e.ctx, sys, u.ID, keystore.KeyInput{Title: "k", Key: line, UsageType: usage, ExpiresAt: exp})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	signing := mk(alice, keystore.UsageSigning, nil)
	both := mk(alice, keystore.UsageAuthAndSigning, ptr(t0.Add(48*time.Hour)))
	mk(alice, keystore.UsageAuth, nil)                                   // auth-only: excluded
	expiring := mk(alice, keystore.UsageSigning, ptr(t0.Add(time.Hour))) // expires below: kept, valid before its expiry
	mk(bob, keystore.UsageSigning, nil)                                  // blocked user: excluded
	carolKey := mk(carol, keystore.UsageSigning, nil)
	if _, err := e.s.SetUserState(e.ctx, sys, bob.ID, keystore.StateBlocked); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour) // the one-hour key is now exactly expired

	wantSigners(t, signers(t, e, 0), []keystore.SignerEntry{
		{Email: "alice@example.com", Key: signing.Key},
		{Email: "alice@example.com", Key: both.Key, ValidBefore: both.ExpiresAt},
		{Email: "alice@example.com", Key: expiring.Key, ValidBefore: expiring.ExpiresAt},
		{Email: "carol@example.com", Key: carolKey.Key},
	})
	wantSigners(t, signers(t, e, carol.ID), []keystore.SignerEntry{{Email: "carol@example.com", Key: carolKey.Key}})
}

// TestSigningHistory: deleting a key (rotation) keeps its signatures
// valid before the deletion (or its expiry, if earlier); dropping the
// signing usage likewise; revoking (compromise) removes every line of the
// key, lists it as revoked, and refuses it ever after — also as a deploy
// key, and also for a key that was deleted first.
func TestSigningHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.user(t, "alice")
	bob := e.user(t, "bob")
	add := func(u *keystore.User, usage string, exp *time.Time) (*keystore.Key, string) {
		_, line := newEd25519(t, u.Username)
		k, err := e.s.CreateKey(e.ctx, sys, u.ID, keystore.KeyInput{Title: "k", Key: line, UsageType: usage, ExpiresAt: exp})
		if err != nil {
			t.Fatal(err)
		}
		return k, line
	}
	rotated, _ := add(alice, keystore.UsageSigning, nil)
	expiredFirst, _ := add(alice, keystore.UsageSigning, ptr(t0.Add(time.Hour)))
	both, _ := add(alice, keystore.UsageAuthAndSigning, nil)
	authOnly, _ := add(alice, keystore.UsageAuth, nil)
	compromised, compromisedLine := add(alice, keystore.UsageSigning, nil)
	deletedThenRevoked, _ := add(alice, keystore.UsageSigning, nil)
	bobs, _ := add(bob, keystore.UsageSigning, nil)

	e.clock.Advance(2 * time.Hour)
	deletedAt := e.clock.Now().UTC().Truncate(time.Millisecond)
	for _, k := range []*keystore.Key{rotated, expiredFirst, authOnly, deletedThenRevoked} {
		mustOK(t, e.s.DeleteKey(e.ctx, sys, alice.ID, k.ID))
	}
	// GitHub's DELETE ssh_signing_keys/:id on an auth-and-signing key: it
	// stays for logins, its signing ends now.
	mustOK(t, e.s.DropKeyUsage(e.ctx, sys, alice.ID, both.ID, keystore.UsageSigning))

	e.clock.Advance(time.Hour)
	// Another user's key is not found; then alice revokes hers (a live
	// one, and one she had deleted, by the id it had).
	wantIs(t, e.s.RevokeKey(e.ctx, sys, bob.ID, compromised.ID), keystore.ErrNotFound)
	mustOK(t, e.s.RevokeKey(e.ctx, sys, alice.ID, compromised.ID))
	mustOK(t, e.s.RevokeKey(e.ctx, sys, alice.ID, deletedThenRevoked.ID))
	wantIs(t, e.s.RevokeKey(e.ctx, sys, alice.ID, compromised.ID), keystore.ErrNotFound)
	wantIs(t, e.s.RevokeKey(e.ctx, sys, alice.ID, 999999), keystore.ErrNotFound)
	if _, err := e.s.Key(e.ctx, compromised.ID); err == nil {
		t.Fatal("a revoked key is still a key")
	}

	wantSigners(t, signers(t, e, 0), []keystore.SignerEntry{
		{Email: "bob@example.com", Key: bobs.Key},
		{Email: "alice@example.com", Key: rotated.Key, ValidBefore: &deletedAt},
		{Email: "alice@example.com", Key: expiredFirst.Key, ValidBefore: expiredFirst.ExpiresAt},
		{Email: "alice@example.com", Key: both.Key, ValidBefore: &deletedAt},
	})
	revoked, err := e.s.RevokedKeys(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(revoked) != 2 || revoked[0].Key != compromised.Key || revoked[1].Key != deletedThenRevoked.Key ||
		revoked[0].FingerprintSHA256 != compromised.FingerprintSHA256 {
		t.Fatalf("RevokedKeys = %+v, want the compromised key, then the deleted one", revoked)
	}

	// A revoked key is never registered again: by anyone, in any role.
	_, err = e.s.CreateKey(e.ctx, sys, bob.ID, keystore.KeyInput{Title: "again", Key: compromisedLine})
	wantOnlyField(t, err, "key", "has been revoked (its private key is compromised) and cannot be used again; generate a new key")
	_, _, err = e.s.MergeKeyUsage(e.ctx, sys, alice.ID, keystore.KeyInput{Title: "again", Key: compromisedLine, UsageType: keystore.UsageSigning})
	wantField(t, err, "key", "has been revoked (its private key is compromised) and cannot be used again; generate a new key")
	_, err = e.s.CreateDeployKey(e.ctx, sys, keystore.DeployScope{}, keystore.DeployKeyInput{Title: "again", Key: compromisedLine})
	wantField(t, err, "key", "has been revoked (its private key is compromised) and cannot be used again; generate a new key")

	// A revocation outlives its user; a deleted user's history goes.
	mustOK(t, e.s.DeleteUser(e.ctx, sys, alice.ID))
	wantSigners(t, signers(t, e, 0), []keystore.SignerEntry{{Email: "bob@example.com", Key: bobs.Key}})
	if revoked, err := e.s.RevokedKeys(e.ctx); err != nil || len(revoked) != 2 {
		t.Fatalf("RevokedKeys after the user's deletion = %+v, %v", revoked, err)
	}
}
