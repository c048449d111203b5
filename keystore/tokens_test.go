package keystore_test

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

var tokenRE = regexp.MustCompile(`^kgpat-[A-Za-z0-9_-]{20,}$`)

func TestCreateTokenValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		in         keystore.TokenInput
		field      string
		reason     string
		wantScopes []string
	}{
		{"api", keystore.TokenInput{Name: "ci", Scopes: []string{"api"}}, "", "", []string{"api"}},
		{"both-scopes-deduplicated", keystore.TokenInput{Name: "ci", Scopes: []string{"read_api", "api", "read_api"}}, "", "", []string{"read_api", "api"}},
		{"future-expiry", keystore.TokenInput{Name: "ci", Scopes: []string{"api"}, ExpiresAt: ptr(t0.Add(time.Hour))}, "", "", []string{"api"}},
		{"blank-name", keystore.TokenInput{Name: " ", Scopes: []string{"api"}}, "name", "can't be blank", nil},
		{"no-scopes", keystore.TokenInput{Name: "ci"}, "scopes", "can't be blank", nil},
		{"unknown-scope", keystore.TokenInput{Name: "ci", Scopes: []string{"api", "write_repository"}}, "scopes", "only api, read_api and sudo", nil},
		{"sudo-for-a-non-admin", keystore.TokenInput{Name: "ci", Scopes: []string{"api", "sudo"}}, "scopes", "only for an administrator", nil},
		{"past-expiry", keystore.TokenInput{Name: "ci", Scopes: []string{"api"}, ExpiresAt: ptr(t0.Add(-time.Minute))}, "expires_at", "future", nil},
		{"expiry-now", keystore.TokenInput{Name: "ci", Scopes: []string{"api"}, ExpiresAt: ptr(t0)}, "expires_at", "future", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			u := e.user(t, "alice")
			tk, secret, err := e.s.CreateToken(e.ctx, sys, u.ID, c.in)
			if c.field != "" {
				wantOnlyField(t, err, c.field, c.reason)
				if secret != "" || tk != nil {
					t.Fatalf("refused create returned %+v, %q", tk, secret)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tokenRE.MatchString(secret) {
				t.Fatalf("secret %q does not look like kgpat-<20+ url-safe chars>", secret)
			}
			if strings.Join(tk.Scopes, ",") != strings.Join(c.wantScopes, ",") || tk.Revoked || tk.UserID != u.ID || !tk.CreatedAt.Equal(t0ms) {
				t.Fatalf("token = %+v", tk)
			}
			got, gotUser, err := e.s.Authenticate(e.ctx, secret)
			if err != nil || got.ID != tk.ID || gotUser.ID != u.ID {
				t.Fatalf("Authenticate = %+v, %+v, %v", got, gotUser, err)
			}
			if strings.Join(got.Scopes, ",") != strings.Join(c.wantScopes, ",") {
				t.Fatalf("authenticated scopes = %v", got.Scopes)
			}
		})
	}
	t.Run("unknown-user", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		_, _, err := e.s.CreateToken(e.ctx, sys, 77, keystore.TokenInput{Name: "x", Scopes: []string{"api"}})
		wantIs(t, err, keystore.ErrNotFound)
	})
}

func TestTokenSecretsAreUnique(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 200 {
		s := keystore.NewTokenSecret()
		if !tokenRE.MatchString(s) || seen[s] {
			t.Fatalf("secret %q malformed or repeated", s)
		}
		seen[s] = true
	}
}

// TestTokenDigestOnly: the secret appears nowhere in the database, neither
// in any column of any table nor anywhere in the files on disk.
func TestTokenDigestOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.user(t, "alice")
	var secrets []string
	// The names are a positive control: the scans below must find them.
	const canary = "canary-token-name-"
	for i := range 3 {
		_, secret, err := e.s.CreateToken(e.ctx, sys, u.ID, keystore.TokenInput{Name: fmt.Sprint(canary, i), Scopes: []string{"api"}})
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, secret)
	}
	boot, err := e.s.EnsureAdmin(e.ctx, "")
	if err != nil || boot == "" {
		t.Fatalf("EnsureAdmin = %q, %v", boot, err)
	}
	secrets = append(secrets, boot)
	// An admin-chosen token (keygate reset-admin-token with
	// KEYGATE_ADMIN_TOKEN) is stored as a digest too.
	const given = "kgpat-given-by-the-environment-0123456789"
	if _, err := e.s.ResetAdminToken(e.ctx, sys, given); err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, given)
	for _, sec := range secrets {
		if _, _, err := e.s.Authenticate(e.ctx, sec); err != nil {
			t.Fatalf("Authenticate(%q): %v", sec, err)
		}
	}

	// Every value of every table, through a second connection.
	db := e.rawDB(t)
	var digests []string
	for _, table := range tables(t, db) {
		rows, err := db.Query(`SELECT * FROM "` + table + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				s := fmt.Sprint(v)
				if b, ok := v.([]byte); ok {
					s = string(b)
				}
				for _, sec := range secrets {
					if strings.Contains(s, sec) || strings.Contains(s, strings.TrimPrefix(sec, keystore.TokenPrefix)) {
						t.Fatalf("%s.%s holds a token secret", table, cols[i])
					}
				}
				if table == "personal_access_tokens" && cols[i] == "digest" {
					digests = append(digests, s)
				}
			}
		}
		rows.Close()
	}
	for _, sec := range secrets {
		found := false
		for _, d := range digests {
			found = found || d == keystore.TokenDigest(sec)
		}
		if !found {
			t.Errorf("no stored digest for a created token")
		}
	}
	scanFiles := func(when string) {
		entries, err := os.ReadDir(e.dir)
		if err != nil {
			t.Fatal(err)
		}
		sawCanary := false
		for _, ent := range entries {
			b, err := os.ReadFile(filepath.Join(e.dir, ent.Name()))
			if err != nil {
				t.Fatal(err)
			}
			sawCanary = sawCanary || bytes.Contains(b, []byte(canary+"2"))
			for _, sec := range secrets {
				if bytes.Contains(b, []byte(strings.TrimPrefix(sec, keystore.TokenPrefix))) {
					t.Fatalf("%s: file %s contains a token secret", when, ent.Name())
				}
			}
		}
		if !sawCanary {
			t.Fatalf("%s: the files do not even hold the token names; the scan sees nothing", when)
		}
	}
	if onPostgres() {
		// PostgreSQL's files belong to the server, not to keygate; the
		// column scan above covers what keygate stores.
		return
	}
	scanFiles("open")
	db.Close()
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	scanFiles("closed")
}

func tables(t *testing.T, db *sql.DB) []string {
	t.Helper()
	q := `SELECT name FROM sqlite_master WHERE type = 'table'`
	if onPostgres() {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`
	}
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	if len(out) < 8 {
		t.Fatalf("only %d tables: %v", len(out), out)
	}
	return out
}

func TestAuthenticateRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.user(t, "alice")
	mk := func(name string, exp *time.Time) (*keystore.Token, string) {
		tk, secret, err := e.s.CreateToken(e.ctx, sys, u.ID, keystore.TokenInput{Name: name, Scopes: []string{"read_api"}, ExpiresAt: exp})
		if err != nil {
			t.Fatal(err)
		}
		return tk, secret
	}
	_, live := mk("live", nil)
	revoked, revokedSecret := mk("revoked", nil)
	_, expiring := mk("expiring", ptr(t0.Add(time.Hour)))
	_, later := mk("later", ptr(t0.Add(2*time.Hour)))

	if _, _, err := e.s.Authenticate(e.ctx, revokedSecret); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	if _, _, err := e.s.Authenticate(e.ctx, expiring); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	if err := e.s.RevokeToken(e.ctx, sys, revoked.ID); err != nil {
		t.Fatal(err)
	}
	wantIs(t, e.s.RevokeToken(e.ctx, sys, revoked.ID), keystore.ErrNotFound)
	wantIs(t, e.s.RevokeToken(e.ctx, sys, 999), keystore.ErrNotFound)
	if got, _ := e.s.Token(e.ctx, revoked.ID); !got.Revoked || got.Active(e.clock.Now()) {
		t.Fatalf("revoked token = %+v", got)
	}
	e.clock.Advance(time.Hour) // "expiring" now exactly at its expiry

	flipped := []byte(live)
	flipped[len(flipped)-1] ^= 1
	cases := []struct {
		name   string
		secret string
		ok     bool
	}{
		{"live", live, true},
		{"not-yet-expired", later, true},
		{"revoked", revokedSecret, false},
		{"expired-at-expiry-instant", expiring, false},
		{"one-character-changed", string(flipped), false},
		{"unknown", keystore.NewTokenSecret(), false},
		{"prefix-only", keystore.TokenPrefix, false},
		{"empty", "", false},
		{"digest-instead-of-secret", keystore.TokenDigest(live), false},
		{"huge", strings.Repeat("a", 10000), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tk, user, err := e.s.Authenticate(e.ctx, c.secret)
			if c.ok {
				if err != nil || tk == nil || user == nil || user.ID != u.ID {
					t.Fatalf("Authenticate = %+v, %+v, %v", tk, user, err)
				}
				return
			}
			wantIs(t, err, keystore.ErrNotFound)
			if tk != nil || user != nil {
				t.Fatalf("refusal returned %+v, %+v", tk, user)
			}
		})
	}
}

func TestTouchToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.user(t, "alice")
	_, secret, err := e.s.CreateToken(e.ctx, sys, u.ID, keystore.TokenInput{Name: "t", Scopes: []string{"api"}})
	if err != nil {
		t.Fatal(err)
	}
	touch := func() *time.Time {
		tk, _, err := e.s.Authenticate(e.ctx, secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.s.TouchToken(e.ctx, tk); err != nil {
			t.Fatal(err)
		}
		got, _ := e.s.Token(e.ctx, tk.ID)
		return got.LastUsedAt
	}
	first := touch()
	if first == nil || !first.Equal(t0ms) {
		t.Fatalf("LastUsedAt = %v, want %v", first, t0ms)
	}
	e.clock.Advance(30 * time.Second)
	if got := touch(); !got.Equal(*first) {
		t.Fatalf("touched again within a minute: %v", got)
	}
	e.clock.Advance(31 * time.Second)
	if got := touch(); !got.Equal(t0ms.Add(61 * time.Second)) {
		t.Fatalf("LastUsedAt = %v, want %v", got, t0ms.Add(61*time.Second))
	}
}

func TestListTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.user(t, "alice")
	bob := e.user(t, "bob")
	for i := range 3 {
		for _, u := range []*keystore.User{alice, bob} {
			if _, _, err := e.s.CreateToken(e.ctx, sys, u.ID, keystore.TokenInput{Name: fmt.Sprint(u.Username, i), Scopes: []string{"api"}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ts, n, err := e.s.ListTokens(e.ctx, alice.ID, keystore.Page{Page: 2, PerPage: 2})
	if err != nil || n != 3 || len(ts) != 1 || ts[0].Name != "alice2" {
		t.Fatalf("alice page 2 = %+v (%d), %v", ts, n, err)
	}
	if _, n, _ := e.s.ListTokens(e.ctx, 0, keystore.Page{}); n != 6 {
		t.Fatalf("all tokens = %d, want 6", n)
	}
}

func rootTokens(t *testing.T, e *env, s *keystore.Store) (*keystore.User, int) {
	t.Helper()
	root, err := s.UserByUsername(e.ctx, "root")
	if err != nil {
		t.Fatalf("root: %v", err)
	}
	_, n, err := s.ListTokens(e.ctx, root.ID, keystore.Page{})
	if err != nil {
		t.Fatal(err)
	}
	return root, n
}

func TestEnsureAdminWithSecret(t *testing.T) {
	t.Parallel()
	const secret = "kgpat-bootstrap-secret-from-env-0001"
	e := newEnv(t)
	check := func(s *keystore.Store, when string) {
		t.Helper()
		got, err := s.EnsureAdmin(e.ctx, secret)
		if err != nil {
			t.Fatalf("%s: EnsureAdmin: %v", when, err)
		}
		if got != "" && got != secret {
			t.Fatalf("%s: EnsureAdmin returned a different secret %q", when, got)
		}
		tk, u, err := s.Authenticate(e.ctx, secret)
		if err != nil {
			t.Fatalf("%s: Authenticate: %v", when, err)
		}
		if u.Username != "root" || !u.IsAdmin || !u.Active() || !tk.HasScope(keystore.ScopeAPI) {
			t.Fatalf("%s: authenticated as %+v with %+v", when, u, tk)
		}
		if _, n := rootTokens(t, e, s); n != 1 {
			t.Fatalf("%s: root has %d tokens, want 1", when, n)
		}
		if _, n, _ := s.ListUsers(e.ctx, keystore.UserFilter{}, keystore.Page{}); n != 1 {
			t.Fatalf("%s: %d users, want 1", when, n)
		}
	}
	check(e.s, "first call")
	check(e.s, "second call")
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	check(e.open(t), "after reopen")
}

func TestEnsureAdminGenerated(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	secret, err := e.s.EnsureAdmin(e.ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !tokenRE.MatchString(secret) {
		t.Fatalf("generated secret %q", secret)
	}
	_, u, err := e.s.Authenticate(e.ctx, secret)
	if err != nil || u.Username != "root" || !u.IsAdmin {
		t.Fatalf("Authenticate(generated) = %+v, %v", u, err)
	}
	again, err := e.s.EnsureAdmin(e.ctx, "")
	if err != nil || again != "" {
		t.Fatalf("second EnsureAdmin(\"\") = %q, %v; want \"\"", again, err)
	}
	if _, n := rootTokens(t, e, e.s); n != 1 {
		t.Fatalf("root has %d tokens, want 1", n)
	}
	e.s.Close()
	s2 := e.open(t)
	if again, err := s2.EnsureAdmin(e.ctx, ""); err != nil || again != "" {
		t.Fatalf("EnsureAdmin(\"\") after reopen = %q, %v", again, err)
	}
	if _, _, err := s2.Authenticate(e.ctx, secret); err != nil {
		t.Fatalf("generated token after reopen: %v", err)
	}
}

func TestEnsureAdminCases(t *testing.T) {
	t.Parallel()
	t.Run("existing-other-admin-means-nothing-to-do", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		if _, err := e.s.CreateUser(e.ctx, sys, keystore.UserInput{Username: ptr("boss"), Email: ptr("boss@example.com"), IsAdmin: ptr(true)}); err != nil {
			t.Fatal(err)
		}
		if got, err := e.s.EnsureAdmin(e.ctx, ""); err != nil || got != "" {
			t.Fatalf("EnsureAdmin(\"\") = %q, %v", got, err)
		}
		_, err := e.s.UserByUsername(e.ctx, "root")
		wantIs(t, err, keystore.ErrNotFound)
	})
	t.Run("secret-too-short", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		if _, err := e.s.EnsureAdmin(e.ctx, "short"); err == nil {
			t.Fatal("EnsureAdmin(short) succeeded")
		}
		if _, n, _ := e.s.ListUsers(e.ctx, keystore.UserFilter{}, keystore.Page{}); n != 0 {
			t.Fatalf("%d users created", n)
		}
	})
	t.Run("blocked-demoted-root-stays-so-until-reset", func(t *testing.T) {
		t.Parallel()
		const secret = "kgpat-bootstrap-secret-from-env-0002"
		e := newEnv(t)
		if _, err := e.s.EnsureAdmin(e.ctx, secret); err != nil {
			t.Fatal(err)
		}
		// Another admin blocks and demotes root.
		if _, err := e.s.CreateUser(e.ctx, sys, keystore.UserInput{Username: ptr("boss"), Email: ptr("boss@example.com"), IsAdmin: ptr(true)}); err != nil {
			t.Fatal(err)
		}
		root, _ := e.s.UserByUsername(e.ctx, "root")
		if _, err := e.s.UpdateUser(e.ctx, sys, root.ID, keystore.UserInput{IsAdmin: ptr(false)}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.s.SetUserState(e.ctx, sys, root.ID, keystore.StateBlocked); err != nil {
			t.Fatal(err)
		}
		// A restart with the same KEYGATE_ADMIN_TOKEN undoes nothing.
		if got, err := e.s.ApplyAdminToken(e.ctx, secret); err != nil || got != keystore.AdminTokenNotApplied {
			t.Fatalf("ApplyAdminToken = %v, %v; want AdminTokenNotApplied", got, err)
		}
		if u, err := e.s.User(e.ctx, root.ID); err != nil || u.IsAdmin || u.Active() {
			t.Fatalf("root after a restart = %+v, %v; want blocked and not an admin", u, err)
		}
		// The explicit reset does.
		if changed, err := e.s.ResetAdminToken(e.ctx, sys, secret); err != nil || !changed {
			t.Fatalf("ResetAdminToken = %v, %v", changed, err)
		}
		_, u, err := e.s.Authenticate(e.ctx, secret)
		if err != nil || !u.IsAdmin || !u.Active() {
			t.Fatalf("root after ResetAdminToken = %+v, %v", u, err)
		}
	})
	t.Run("revoked-bootstrap-token-stays-revoked-until-reset", func(t *testing.T) {
		t.Parallel()
		const secret = "kgpat-bootstrap-secret-from-env-0003"
		e := newEnv(t)
		if got, err := e.s.ApplyAdminToken(e.ctx, secret); err != nil || got != keystore.AdminTokenCreated {
			t.Fatalf("first ApplyAdminToken = %v, %v; want AdminTokenCreated", got, err)
		}
		if got, err := e.s.ApplyAdminToken(e.ctx, secret); err != nil || got != keystore.AdminTokenValid {
			t.Fatalf("second ApplyAdminToken = %v, %v; want AdminTokenValid", got, err)
		}
		tk, _, err := e.s.Authenticate(e.ctx, secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.s.RevokeToken(e.ctx, sys, tk.ID); err != nil {
			t.Fatal(err)
		}
		if got, err := e.s.ApplyAdminToken(e.ctx, secret); err != nil || got != keystore.AdminTokenNotApplied {
			t.Fatalf("ApplyAdminToken after revocation = %v, %v; want AdminTokenNotApplied", got, err)
		}
		if _, _, err := e.s.Authenticate(e.ctx, secret); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("revoked bootstrap token after a restart: %v, want it still refused", err)
		}
		// Another string on a keystore with an admin is not applied either.
		if got, err := e.s.ApplyAdminToken(e.ctx, "kgpat-some-other-configured-token-0004"); err != nil || got != keystore.AdminTokenNotApplied {
			t.Fatalf("ApplyAdminToken(other) = %v, %v; want AdminTokenNotApplied", got, err)
		}
		if _, n := rootTokens(t, e, e.s); n != 1 {
			t.Fatalf("root has %d tokens, want the revoked one only", n)
		}
		if _, err := e.s.ResetAdminToken(e.ctx, sys, secret); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.s.Authenticate(e.ctx, secret); err != nil {
			t.Fatalf("bootstrap token after ResetAdminToken: %v", err)
		}
	})
}

// TestBootstrapAdminOnce: stores opened on one empty database (as nodes
// starting together) all try to bootstrap root with their own secret at
// once: exactly one creates it, its keep runs once, and only its secret
// authenticates. A failing keep creates nothing.
func TestBootstrapAdminOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.s.BootstrapAdmin(e.ctx, "short", nil); err == nil {
		t.Fatal("BootstrapAdmin with a short secret succeeded")
	}
	boom := errors.New("disk full")
	if created, err := e.s.BootstrapAdmin(e.ctx, keystore.NewTokenSecret(), func() error { return boom }); !errors.Is(err, boom) || created {
		t.Fatalf("BootstrapAdmin with a failing keep = %v, %v", created, err)
	}
	if has, err := e.s.HasAdmin(e.ctx); err != nil || has {
		t.Fatalf("after a failing keep: HasAdmin = %v, %v", has, err)
	}

	const nodes = 6
	stores := make([]*keystore.Store, nodes)
	secrets := make([]string, nodes)
	for i := range stores {
		stores[i], secrets[i] = e.open(t), keystore.NewTokenSecret()
	}
	var kept sync.WaitGroup
	var mu sync.Mutex
	keeps := 0
	created := make([]bool, nodes)
	errs := make([]error, nodes)
	start := make(chan struct{})
	for i := range stores {
		kept.Add(1)
		go func() {
			defer kept.Done()
			<-start
			created[i], errs[i] = stores[i].BootstrapAdmin(e.ctx, secrets[i], func() error {
				mu.Lock()
				keeps++
				mu.Unlock()
				return nil
			})
		}()
	}
	close(start)
	kept.Wait()
	winners := 0
	for i := range stores {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		_, _, err := e.s.Authenticate(e.ctx, secrets[i])
		if created[i] {
			winners++
			if err != nil {
				t.Fatalf("the winner's secret does not authenticate: %v", err)
			}
		} else if !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("node %d created nothing but its secret authenticates (%v)", i, err)
		}
	}
	if winners != 1 || keeps != 1 {
		t.Fatalf("%d nodes created root and keep ran %d times, want 1 and 1", winners, keeps)
	}
	if _, n := rootTokens(t, e, e.s); n != 1 {
		t.Fatalf("root has %d tokens, want 1", n)
	}
}
