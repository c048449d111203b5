package keystore_test

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// TestPersistence writes one of everything, closes the store, reopens the
// same file (running migrations again) and finds everything as it was,
// with every timestamp at millisecond precision in UTC.
func TestPersistence(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.user(t, "alice")
	e.clock.Advance(1500 * time.Microsecond) // 1.5 ms: the half is dropped
	// An expiry with nanoseconds, in a non-UTC zone.
	exp := time.Date(2027, 1, 2, 3, 4, 5, 678901234, time.FixedZone("PST", -8*3600))
	_, line := newEd25519(t, "alice@laptop")
	key, err := e.s.CreateKey(e.ctx, sys, alice.ID, keystore.KeyInput{Title: "laptop", Key: line, UsageType: keystore.UsageSigning, ExpiresAt: &exp})
	mustOK(t, err)
	tok, secret, err := e.s.CreateToken(e.ctx, sys, alice.ID, keystore.TokenInput{Name: "ci", Scopes: []string{"read_api"}, ExpiresAt: &exp})
	mustOK(t, err)
	mustOK(t, e.s.TouchToken(e.ctx, tok))
	grp := e.group(t, "acme", nil, alice.ID)
	sub := e.group(t, "infra", &grp.ID, 0)
	_, caLine := newEd25519(t, "ca")
	ca, err := e.s.CreateCA(e.ctx, sys, grp.ID, keystore.CAInput{Title: "ca", Key: caLine})
	mustOK(t, err)
	rev, err := e.s.CreateRevocation(e.ctx, sys, ca, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "12", Reason: "lost"})
	mustOK(t, err)
	gk, err := e.s.CreateGPGKey(e.ctx, sys, alice.ID, armorEntity(t, newGPG(t, "Alice", "alice@example.com", false), false))
	mustOK(t, err)
	e.clock.Advance(time.Second)
	mustOK(t, e.s.RevokeGPGKey(e.ctx, sys, alice.ID, gk.ID))
	lastSeq, err := e.s.LastChange(e.ctx)
	mustOK(t, err)
	auditN, _, err := countAudit(e)
	mustOK(t, err)

	// Read everything back through the first handle.
	type snapshot struct {
		User    *keystore.User
		Key     *keystore.Key
		Token   *keystore.Token
		Group   *keystore.Group
		Sub     *keystore.Group
		Member  *keystore.Member
		CA      *keystore.GroupCA
		Revs    []*keystore.Revocation
		GPG     *keystore.GPGKey
		Changes []keystore.Change
		Signers []keystore.SignerEntry
	}
	read := func(s *keystore.Store) snapshot {
		t.Helper()
		var sn snapshot
		var err error
		ctx := e.ctx
		sn.User, err = s.User(ctx, alice.ID)
		mustOK(t, err)
		sn.Key, err = s.Key(ctx, key.ID)
		mustOK(t, err)
		sn.Token, err = s.Token(ctx, tok.ID)
		mustOK(t, err)
		sn.Group, err = s.GroupByPath(ctx, "acme")
		mustOK(t, err)
		sn.Sub, err = s.GroupByPath(ctx, "acme/infra")
		mustOK(t, err)
		sn.Member, err = s.Member(ctx, grp.ID, alice.ID)
		mustOK(t, err)
		sn.CA, err = s.CA(ctx, grp.ID, ca.ID)
		mustOK(t, err)
		sn.Revs, _, err = s.ListRevocations(ctx, grp.ID, ca.FingerprintSHA256, keystore.Page{})
		mustOK(t, err)
		sn.GPG, err = s.GPGKey(ctx, alice.ID, gk.ID)
		mustOK(t, err)
		sn.Changes, err = s.ChangesSince(ctx, 0, 1000)
		mustOK(t, err)
		sn.Signers, err = s.AllowedSigners(ctx, 0)
		mustOK(t, err)
		return sn
	}
	before := read(e.s)

	// What was returned at creation is what is stored.
	if !sameKey(before.Key, key) {
		t.Errorf("stored key %+v\nreturned %+v", before.Key, key)
	}
	if !reflect.DeepEqual(before.CA, ca) || !reflect.DeepEqual(before.Revs, []*keystore.Revocation{rev}) || !reflect.DeepEqual(before.Sub, sub) {
		t.Errorf("stored CA/revocation/subgroup differ from what was returned")
	}
	if !reflect.DeepEqual(before.Group, grp) {
		t.Errorf("stored group %+v, returned %+v", before.Group, grp)
	}
	created := t0.Add(1500 * time.Microsecond).UTC().Truncate(time.Millisecond)
	wantExp := exp.UTC().Truncate(time.Millisecond)
	for name, tm := range map[string]time.Time{
		"key.CreatedAt": before.Key.CreatedAt, "key.ExpiresAt": *before.Key.ExpiresAt,
		"token.ExpiresAt": *before.Token.ExpiresAt, "token.LastUsedAt": *before.Token.LastUsedAt,
		"group.CreatedAt": before.Group.CreatedAt, "ca.CreatedAt": before.CA.CreatedAt,
		"gpg.RevokedAt": *before.GPG.RevokedAt, "user.CreatedAt": before.User.CreatedAt,
	} {
		if tm.Location() != time.UTC || tm.Nanosecond()%int(time.Millisecond) != 0 {
			t.Errorf("%s = %v: not UTC milliseconds", name, tm)
		}
	}
	if !before.Key.CreatedAt.Equal(created) || !before.Key.ExpiresAt.Equal(wantExp) || !before.Token.ExpiresAt.Equal(wantExp) ||
		!before.User.CreatedAt.Equal(t0ms) || !before.GPG.RevokedAt.Equal(created.Add(time.Second)) {
		t.Errorf("timestamps: key created %v (want %v), key expires %v, token expires %v (want %v), user %v, gpg revoked %v",
			before.Key.CreatedAt, created, before.Key.ExpiresAt, before.Token.ExpiresAt, wantExp, before.User.CreatedAt, before.GPG.RevokedAt)
	}

	mustOK(t, e.s.Close())
	s2 := e.open(t)
	after := read(s2)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("after reopen:\n%+v\nbefore:\n%+v", after, before)
	}
	if _, u, err := s2.Authenticate(e.ctx, secret); err != nil || u.ID != alice.ID {
		t.Fatalf("token after reopen: %v", err)
	}
	if n, err := s2.LastChange(e.ctx); err != nil || n != lastSeq {
		t.Fatalf("LastChange after reopen = %d, %v; want %d", n, err, lastSeq)
	}
	if _, n, _ := s2.ListAuditEvents(e.ctx, keystore.AuditFilter{}, keystore.Page{}); n != auditN {
		t.Fatalf("audit events after reopen = %d, want %d", n, auditN)
	}
	// The sequence keeps growing after a reopen.
	e.s = s2
	e.user(t, "bob")
	chs, err := s2.ChangesSince(e.ctx, lastSeq, 10)
	if err != nil || len(chs) != 1 || chs[0].Seq <= lastSeq || chs[0].Entity != "user" {
		t.Fatalf("change after reopen = %+v, %v", chs, err)
	}
	// Uniqueness survives a reopen too.
	_, err = s2.CreateKey(e.ctx, sys, alice.ID, keystore.KeyInput{Title: "again", Key: line})
	wantOnlyField(t, err, "fingerprint_sha256", "has already been taken")
}

func TestOpenConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name string
		dsn  func(dir string) string
		ok   bool
	}{
		{"plain-path", func(d string) string { return filepath.Join(d, "keygate.db") }, true},
		// A database's directory is never created (issue 21 §1): a typo in
		// a path must not become a new tree with an empty keystore in it.
		{"refuses-missing-directories", func(d string) string { return filepath.Join(d, "a", "b", "keygate.db") }, false},
		{"file-uri", func(d string) string { return "file:" + filepath.Join(d, "k.db") }, true},
		{"empty", func(string) string { return "" }, false},
		{"postgres-unreachable", func(string) string { return "postgres://u:pw-secret-1@127.0.0.1:1/keygate?connect_timeout=5" }, false},
		{"postgresql-unreachable", func(string) string { return "postgresql://u:pw-secret-1@127.0.0.1:1/keygate?connect_timeout=5" }, false},
		{"postgres-bad-url", func(string) string { return "postgres://u:pw-secret-1@127.0.0.1:1/keygate?sslmode=bogus" }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, err := keystore.Open(ctx, keystore.Config{DSN: c.dsn(t.TempDir())})
			if !c.ok {
				if err == nil {
					s.Close()
					t.Fatal("Open succeeded")
				}
				if strings.Contains(err.Error(), "pw-secret-1") {
					t.Fatalf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			mustOK(t, s.Ping(ctx))
			// A nil clock is the real one.
			if d := time.Since(s.Now()); d < 0 || d > time.Minute {
				t.Fatalf("Now() = %v", s.Now())
			}
		})
	}
}
