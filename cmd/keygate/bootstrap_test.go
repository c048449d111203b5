package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore/pgtest"
)

// generatedToken matches a token keygate generates (SPEC §3: kgpat- and 20+
// URL-safe characters).
var generatedToken = regexp.MustCompile(`kgpat-[A-Za-z0-9_-]{20,}`)

// requireRoot checks that token authenticates as the admin root and returns
// root's id.
func requireRoot(t *testing.T, p *proc, token string) int64 {
	t.Helper()
	u := p.must("GET", "/api/v4/user", token, nil, 200).Object(t)
	if u["username"] != "root" || u["is_admin"] != true {
		t.Fatalf("GET /api/v4/user = %v, want username root with is_admin true", u)
	}
	return id(t, u)
}

// requireOneRoot checks that exactly one user is called root.
func requireOneRoot(t *testing.T, p *proc, token string) {
	t.Helper()
	r := p.must("GET", "/api/v4/users?username=root", token, nil, 200)
	var users []map[string]any
	r.JSON(t, &users)
	if got := r.Header.Get("X-Total"); got != "1" || len(users) != 1 {
		t.Fatalf("GET /api/v4/users?username=root: X-Total %q and %d users, want 1 and 1: %s", got, len(users), r.Body)
	}
}

func TestBootstrapWithAdminTokenEnv(t *testing.T) {
	t.Parallel()
	token := randomToken("given-admin-token-") // 50 characters
	dir := t.TempDir()
	opts := serveOpts{DataDir: dir, Env: []string{"KEYGATE_ADMIN_TOKEN=" + token}}

	p := startServe(t, opts)
	rootID := requireRoot(t, p, token)
	requireOneRoot(t, p, token)
	// Every documented way of passing the token works.
	for _, h := range []struct{ name, value string }{
		{"Authorization", "Bearer " + token},
		{"PRIVATE-TOKEN", token},
	} {
		req := mustRequest(t, "GET", p.URL("/api/v4/user"), nil)
		req.Header.Set(h.name, h.value)
		if r, err := p.send(req); err != nil || r.Status != 200 {
			t.Errorf("GET /api/v4/user with %s: %v %v", h.name, r, err)
		}
	}
	p.must("GET", "/api/v4/user?private_token="+token, "", nil, 200)
	p.must("GET", "/api/v4/user", "kgpat-not-the-right-token-0000000000", nil, 401)
	p.stop()
	if _, err := os.Stat(filepath.Join(dir, "admin-token")); !os.IsNotExist(err) {
		t.Errorf("with KEYGATE_ADMIN_TOKEN set, DATA_DIR/admin-token should not be written (stat: %v)", err)
	}
	if strings.Contains(p.Stderr.String(), token) {
		t.Errorf("stderr repeats KEYGATE_ADMIN_TOKEN:\n%s", p.Stderr)
	}

	// Idempotent across restarts: same root, still one root, token valid.
	for i := 0; i < 2; i++ {
		p = startServe(t, opts)
		if got := requireRoot(t, p, token); got != rootID {
			t.Errorf("restart %d: root has id %d, want %d", i+1, got, rootID)
		}
		requireOneRoot(t, p, token)
		p.stop()
	}

	// Started without the variable, keygate finds an admin: it creates
	// nothing, prints no token, and the earlier token still works.
	p = startServe(t, serveOpts{DataDir: dir})
	requireRoot(t, p, token)
	requireOneRoot(t, p, token)
	p.stop()
	if got := generatedToken.FindAllString(p.Stderr.String(), -1); len(got) != 0 {
		t.Errorf("start without KEYGATE_ADMIN_TOKEN after one with it printed tokens %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "admin-token")); !os.IsNotExist(err) {
		t.Errorf("start without KEYGATE_ADMIN_TOKEN after one with it wrote admin-token (stat: %v)", err)
	}
}

func TestBootstrapGeneratesAdminToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin-token")

	p := startServe(t, serveOpts{DataDir: dir})
	fi, err := os.Stat(tokenFile)
	if err != nil {
		t.Fatalf("DATA_DIR/admin-token after the first start: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("DATA_DIR/admin-token has mode %v, want 0600", fi.Mode().Perm())
	}
	content, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(content))
	if !generatedToken.MatchString(token) || generatedToken.FindString(token) != token {
		t.Fatalf("DATA_DIR/admin-token holds %q, want a kgpat- token", content)
	}
	rootID := requireRoot(t, p, token)
	requireOneRoot(t, p, token)
	p.stop() // all of stderr has been read once the process has exited

	// The token is in the file only; the log says where (issue 21 §3).
	if printed := generatedToken.FindAllString(p.Stderr.String(), -1); len(printed) != 0 || strings.Contains(p.Stderr.String(), token) {
		t.Errorf("first start printed tokens %q on stderr; the token belongs in admin-token only; stderr:\n%s", printed, p.Stderr)
	}
	if !strings.Contains(p.Stderr.String(), "admin_token_file="+tokenFile) {
		t.Errorf("first start did not say where the token is (admin_token_file=%s); stderr:\n%s", tokenFile, p.Stderr)
	}

	// A second start creates nothing and prints no token; the file's token
	// still works.
	p = startServe(t, serveOpts{DataDir: dir})
	if got := requireRoot(t, p, token); got != rootID {
		t.Errorf("after restart root has id %d, want %d", got, rootID)
	}
	requireOneRoot(t, p, token)
	p.stop()
	if got := generatedToken.FindAllString(p.Stderr.String(), -1); len(got) != 0 {
		t.Errorf("second start printed tokens %q; stderr:\n%s", got, p.Stderr)
	}
	again, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(content) {
		t.Errorf("second start rewrote admin-token: %q, was %q", again, content)
	}
}

// TestBootstrapTwoNodesAtOnceOnPostgres: two nodes start at the same time
// on one empty PostgreSQL database without KEYGATE_ADMIN_TOKEN, each with
// its own data directory. Exactly one of them creates root's token and
// writes it to its admin-token file (printing only where); the other prints no token,
// writes no file and says an admin already exists. The token works on both
// nodes. Some rounds let the nodes migrate the new database themselves
// (their migrations queue on a lock, which spreads them apart); the others
// migrate first and start both with --no-migrate, so they reach the
// bootstrap together.
func TestBootstrapTwoNodesAtOnceOnPostgres(t *testing.T) {
	t.Parallel()
	pgtest.Require(t)
	for round := range 6 {
		premigrated := round%3 != 0
		db := pgtest.NewDatabase(t)
		var args []string
		if premigrated {
			if code, out, errOut := runKeygate(t, nil, "migrate", "--db", db); code != 0 {
				t.Fatalf("round %d: migrate: exit %d\n%s%s", round, code, out, errOut)
			}
			args = []string{"--no-migrate"}
		}
		var nodes [2]*proc
		for i := range nodes {
			nodes[i] = launchServe(t, serveOpts{Args: append([]string{"--db", db}, args...)})
		}
		for _, p := range nodes {
			p.waitReady() // the token is printed before the listeners open
		}
		var token string
		creators := 0
		for i, p := range nodes {
			printed := generatedToken.FindAllString(p.Stderr.String(), -1)
			file, err := os.ReadFile(filepath.Join(p.DataDir, "admin-token"))
			switch {
			case len(printed) == 0 && err == nil:
				creators++
				token = strings.TrimSpace(string(file))
				if !strings.Contains(p.Stderr.String(), "admin_token_file=") {
					t.Fatalf("round %d: node %d wrote admin-token but did not say where; stderr:\n%s", round, i, p.Stderr)
				}
			case len(printed) == 0 && os.IsNotExist(err):
				if !strings.Contains(p.Stderr.String(), "an admin user already exists") {
					t.Errorf("round %d: node %d created no token and did not say an admin exists; stderr:\n%s", round, i, p.Stderr)
				}
			default:
				t.Fatalf("round %d: node %d printed tokens %q, admin-token: %q %v; stderr:\n%s", round, i, printed, file, err, p.Stderr)
			}
		}
		if creators != 1 {
			t.Fatalf("round %d: %d nodes created an admin token, want exactly 1;\nnode 0:\n%s\nnode 1:\n%s",
				round, creators, nodes[0].Stderr, nodes[1].Stderr)
		}
		if n := pgQuery(t, db, `SELECT count(*) FROM personal_access_tokens`); n != 1 {
			t.Fatalf("round %d: %d tokens in the database, want 1", round, n)
		}
		for _, p := range nodes {
			requireRoot(t, p, token)
			requireOneRoot(t, p, token)
		}
		for _, p := range nodes {
			p.stop()
		}
	}
}
