package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testutil"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/pgtest"
)

// readExport decodes an export file.
func readExport(t *testing.T, path string) *keystore.Export {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc keystore.Export
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &doc
}

// sshLogin reports whether signer authenticates as git on addr.
func sshLogin(t *testing.T, addr string, signer gossh.Signer) error {
	t.Helper()
	c, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
		User: "git", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 20 * time.Second,
	})
	if err == nil {
		c.Close()
	}
	return err
}

// TestMoveSQLiteToPostgres: a SQLite keystore with a row in every table is
// exported, imported into a fresh PostgreSQL database and exported again:
// every row is equal. keygate serve on that database then authenticates
// the imported key over SSH and the imported tokens over REST.
func TestMoveSQLiteToPostgres(t *testing.T) {
	t.Parallel()
	pgURL := pgtest.NewDatabase(t)
	token := randomToken("move-admin-token-")
	dir := t.TempDir()
	p := startServe(t, serveOpts{DataDir: dir, Env: []string{"KEYGATE_ADMIN_TOKEN=" + token},
		Args: []string{"--audit-stream-file", filepath.Join(dir, "audit.jsonl")}})

	// A row in every table, through the API.
	uid := id(t, p.must("POST", "/api/v4/users", token, map[string]any{
		"username": "alice", "email": "alice@example.com", "name": "Alice Liddell"}, 201).Object(t))
	aliceToken := p.must("POST", fmt.Sprintf("/api/v4/users/%d/personal_access_tokens", uid), token, map[string]any{
		"name": "laptop", "scopes": []string{"api"}}, 201).Object(t)["token"].(string)
	signer := testutil.NewSigner(t)
	keyLine := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey()))) + " alice@laptop"
	key := p.must("POST", fmt.Sprintf("/api/v4/users/%d/keys", uid), token, map[string]any{
		"title": "laptop", "key": keyLine, "expires_at": "2099-12-31"}, 201).Object(t)
	gone := p.must("POST", fmt.Sprintf("/api/v4/users/%d/keys", uid), token, map[string]any{
		"title": "old", "key": sshKeyLine("")}, 201).Object(t)
	p.must("DELETE", fmt.Sprintf("/api/v4/users/%d/keys/%d", uid, id(t, gone)), token, nil, 204)
	stolen := p.must("POST", fmt.Sprintf("/api/v4/users/%d/keys", uid), token, map[string]any{
		"title": "stolen", "key": sshKeyLine("")}, 201).Object(t)
	p.must("POST", fmt.Sprintf("/api/v4/users/%d/keys/%d/revoke", uid, id(t, stolen)), token, nil, 202)
	p.must("POST", fmt.Sprintf("/api/v4/users/%d/gpg_keys", uid), token, map[string]any{
		"key": newGPGKey(t, "Alice Liddell", "alice@example.com")}, 201)
	gid := id(t, p.must("POST", "/api/v4/groups", token, map[string]any{"name": "Platform", "path": "platform"}, 201).Object(t))
	sub := id(t, p.must("POST", "/api/v4/groups", token, map[string]any{"name": "Infra", "path": "infra", "parent_id": gid}, 201).Object(t))
	p.must("POST", fmt.Sprintf("/api/v4/groups/%d/members", gid), token, map[string]any{"user_id": uid, "access_level": 30}, 201)
	ca := id(t, p.must("POST", fmt.Sprintf("/api/v4/groups/%d/ssh_certificates", gid), token, map[string]any{
		"title": "Platform CA", "key": sshKeyLine("platform-ca")}, 201).Object(t))
	p.must("POST", fmt.Sprintf("/api/v4/groups/%d/ssh_certificates/%d/revocations", gid, ca), token, map[string]any{
		"serial": "42", "reason": "lost laptop"}, 201)
	pid := id(t, p.must("POST", "/api/v4/projects", token, map[string]any{"name": "Repo", "path": "repo", "namespace_id": sub}, 201).Object(t))
	p.must("POST", fmt.Sprintf("/api/v4/projects/%d/deploy_keys", pid), token, map[string]any{"title": "ci", "key": sshKeyLine("ci"), "can_push": true}, 201)
	p.must("POST", fmt.Sprintf("/api/v4/groups/%d/deploy_keys", gid), token, map[string]any{"title": "argo", "key": sshKeyLine("argo")}, 201)
	p.must("POST", fmt.Sprintf("/api/v4/groups/%d/bastion_targets", gid), token, map[string]any{
		"pattern": "*.internal:22", "description": "hosts"}, 201)
	p.must("POST", fmt.Sprintf("/api/v4/groups/%d/bastion_allowances", gid), token, map[string]any{
		"pattern": "10.20.0.0/16:22", "description": "lab"}, 201)
	p.must("PUT", fmt.Sprintf("/api/v4/users/%d", uid), token, map[string]any{"enterprise_group_id": gid}, 200)
	// A managed CA and a certificate it issued to alice; a trusted issuer
	// and a CI trust rule.
	p.must("POST", fmt.Sprintf("/api/v4/groups/%d/ssh_certificates", gid), token, map[string]any{
		"title": "Managed", "generate": true}, 201)
	p.must("POST", "/api/v4/user/ssh_certificates", aliceToken, map[string]any{"key": keyLine, "group_id": gid}, 201)
	iss := id(t, p.must("POST", "/api/v4/admin/oidc_issuers", token, map[string]any{
		"issuer": "https://token.actions.githubusercontent.com"}, 201).Object(t))
	p.must("POST", fmt.Sprintf("/api/v4/projects/%d/ssh_certificate_trust", pid), token, map[string]any{
		"issuer": "https://token.actions.githubusercontent.com", "audience": "keygate",
		"claims": map[string]any{"repository": "acme/repo"}, "access": "read"}, 201)
	_ = iss
	// Key policy, a host CA and a fleet host certificate, and an audit
	// streaming destination (down: its events wait in the outbox).
	p.must("POST", "/api/v4/admin/ssh_host_certificate_authorities", token, map[string]any{"title": "hosts"}, 201)
	p.must("POST", "/api/v4/admin/ssh_host_certificates", token, map[string]any{
		"key": sshKeyLine("web1"), "principals": []string{"web1.example.com"}}, 201)
	p.must("POST", "/api/v4/admin/audit_events/streaming/destinations", token, map[string]any{
		"destination_url": "http://127.0.0.1:9/audit", "verification_token": "a-verification-token-0123456789"}, 201)
	p.must("PUT", "/api/v4/application/settings", token, map[string]any{"rsa_key_restriction": 3072}, 200)
	if err := sshLogin(t, p.SSHAddr, signer); err != nil {
		t.Fatalf("SSH on the SQLite node: %v", err)
	}
	p.stop()
	// An LFS lock is taken over git-lfs's SSH protocol (sshd/e2e tests
	// that); here the row is written directly so that the table is moved.
	seedSQL(t, filepath.Join(dir, "keygate.db"), fmt.Sprintf(
		`INSERT INTO lfs_locks (project_id, user_id, path, ref_name, created_at) VALUES (%d, %d, 'assets/logo.psd', 'refs/heads/main', 1700000000000)`, pid, uid))

	first := filepath.Join(t.TempDir(), "export.json")
	if code, _, stderr := runKeygate(t, nil, "export", "--data-dir", dir, "--out", first); code != 0 {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}
	if fi, err := os.Stat(first); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v, %v; want mode 0600", fi, err)
	}
	src := readExport(t, first)
	if src.Backend != "sqlite" {
		t.Fatalf("export backend %q", src.Backend)
	}
	for _, tbl := range src.Tables {
		if len(tbl.Rows) == 0 {
			t.Errorf("the seed left table %s empty", tbl.Name)
		}
	}

	if code, stdout, stderr := runKeygate(t, []string{"KEYGATE_DB=" + pgURL}, "import", "--in", first); code != 0 {
		t.Fatalf("import: exit %d: %s%s", code, stdout, stderr)
	}
	second := filepath.Join(t.TempDir(), "again.json")
	if code, _, stderr := runKeygate(t, nil, "export", "--db", pgURL, "--out", second); code != 0 {
		t.Fatalf("export from PostgreSQL: exit %d: %s", code, stderr)
	}
	dst := readExport(t, second)
	if dst.Backend != "postgres" || dst.SchemaVersion != src.SchemaVersion {
		t.Fatalf("second export: backend %q, schema %d", dst.Backend, dst.SchemaVersion)
	}
	if len(dst.Tables) != len(src.Tables) {
		t.Fatalf("%d tables, then %d", len(src.Tables), len(dst.Tables))
	}
	rows := 0
	for i := range src.Tables {
		if !reflect.DeepEqual(src.Tables[i], dst.Tables[i]) {
			t.Errorf("table %s differs after SQLite -> PostgreSQL:\nsqlite   %v\npostgres %v", src.Tables[i].Name, src.Tables[i], dst.Tables[i])
		}
		rows += len(src.Tables[i].Rows)
	}
	t.Logf("%d rows in %d tables round-tripped", rows, len(src.Tables))

	// The target is no longer empty: a second import is refused.
	code, _, stderr := runKeygate(t, nil, "import", "--db", pgURL, "--in", first)
	if code == 0 || !strings.Contains(stderr, "not empty") {
		t.Fatalf("second import: exit %d, stderr %q; want a refusal saying the target is not empty", code, stderr)
	}
	if strings.Contains(stderr, pgURL) {
		t.Fatalf("stderr shows the database URL: %s", stderr)
	}

	// Serve from PostgreSQL, with a new data directory: no token in the
	// environment, the imported root token still works.
	q := startServe(t, serveOpts{Args: []string{"--db", pgURL}})
	if _, err := os.Stat(filepath.Join(q.DataDir, "admin-token")); err == nil {
		t.Fatal("a new admin token was generated although root was imported")
	}
	fp := signer.PublicKey()
	r := q.must("GET", "/api/v4/keys?fingerprint="+url.QueryEscape(gossh.FingerprintSHA256(fp)), token, nil, 200).Object(t)
	if id(t, r) != id(t, key) || r["created_at"] != key["created_at"] {
		t.Fatalf("key lookup on PostgreSQL: %v, want %v", r, key)
	}
	me := q.must("GET", "/api/v4/user", aliceToken, nil, 200).Object(t)
	if id(t, me) != uid {
		t.Fatalf("alice's imported token authenticates as %v", me)
	}
	if err := sshLogin(t, q.SSHAddr, signer); err != nil {
		t.Fatalf("SSH with the imported key on the PostgreSQL node: %v", err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherSigner, _ := gossh.NewSignerFromKey(other)
	if err := sshLogin(t, q.SSHAddr, otherSigner); err == nil {
		t.Fatal("an unknown key authenticated")
	}
	// New writes continue after the imported ids.
	bob := q.must("POST", "/api/v4/users", token, map[string]any{"username": "bob", "email": "bob@example.com"}, 201).Object(t)
	if id(t, bob) <= uid {
		t.Fatalf("new user id %d, imported ids go up to at least %d", id(t, bob), uid)
	}
	q.stop()
}

// TestMigrateCommand: keygate migrate brings a new keystore to the newest
// schema and exits; a second run has nothing to do.
func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	code, stdout, stderr := runKeygate(t, []string{"KEYGATE_DATA_DIR=" + dir}, "migrate")
	if code != 0 || !strings.Contains(stdout, "migrated from version 0 to") {
		t.Fatalf("migrate: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = runKeygate(t, nil, "migrate", "--data-dir", dir)
	if code != 0 || !strings.Contains(stdout, "nothing to do") {
		t.Fatalf("second migrate: exit %d: %s", code, stdout)
	}
	// serve --no-migrate then starts on the migrated keystore.
	p := startServe(t, serveOpts{DataDir: dir, Args: []string{"--no-migrate"}})
	p.stop()
	if pgtest.AdminURL() == "" {
		return
	}
	pgURL := pgtest.NewDatabase(t)
	code, stdout, stderr = runKeygate(t, nil, "migrate", "--db", pgURL)
	if code != 0 || !strings.Contains(stdout, "(postgres)") || strings.Contains(stdout+stderr, pgURL) {
		t.Fatalf("migrate on PostgreSQL: exit %d\n%s%s", code, stdout, stderr)
	}
	q := startServe(t, serveOpts{Args: []string{"--db", pgURL, "--no-migrate"}})
	q.stop()
}

// TestExportImportRefusals: the commands fail clearly on bad input.
func TestExportImportRefusals(t *testing.T) {
	t.Parallel()
	code, _, stderr := runKeygate(t, nil, "export", "--data-dir", filepath.Join(t.TempDir(), "none"))
	if code == 0 || !strings.Contains(stderr, "no keystore") {
		t.Fatalf("export of a missing keystore: exit %d: %s", code, stderr)
	}
	code, _, stderr = runKeygate(t, nil, "import", "--data-dir", t.TempDir())
	if code != 2 || !strings.Contains(stderr, "--in") {
		t.Fatalf("import without --in: exit %d: %s", code, stderr)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"format":"something-else"}`), 0o600)
	code, _, stderr = runKeygate(t, nil, "import", "--data-dir", t.TempDir(), "--in", bad)
	if code != 1 || !strings.Contains(stderr, "not a keygate export") {
		t.Fatalf("import of a foreign file: exit %d: %s", code, stderr)
	}
}

// TestImportFromStdin: `keygate export` piped into `keygate import --in -`
// (a real OS pipe between two processes) moves a keystore: exporting the
// target gives the same rows, and the target serves the source's token and
// key. A truncated document on standard input is refused and leaves the
// target empty.
func TestImportFromStdin(t *testing.T) {
	t.Parallel()
	token := randomToken("stdin-admin-token-")
	src := t.TempDir()
	p := startServe(t, serveOpts{DataDir: src, Env: []string{"KEYGATE_ADMIN_TOKEN=" + token}})
	uid := id(t, p.must("POST", "/api/v4/users", token, map[string]any{
		"username": "alice", "email": "alice@example.com", "name": "Alice"}, 201).Object(t))
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := gossh.NewSignerFromKey(priv)
	line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey())))
	p.must("POST", fmt.Sprintf("/api/v4/users/%d/keys", uid), token, map[string]any{"title": "laptop", "key": line}, 201)
	p.stop()

	// export | import --in -
	dst := t.TempDir()
	exp := exec.Command(keygateBin, "export", "--data-dir", src)
	imp := exec.Command(keygateBin, "import", "--data-dir", dst, "--in", "-")
	exp.Env, imp.Env = childEnv(), childEnv()
	pipe, err := exp.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	imp.Stdin = pipe
	var expErr, impOut, impErr bytes.Buffer
	exp.Stderr, imp.Stdout, imp.Stderr = &expErr, &impOut, &impErr
	if err := exp.Start(); err != nil {
		t.Fatal(err)
	}
	if err := imp.Run(); err != nil {
		exp.Wait()
		t.Fatalf("import --in -: %v\n%s%s", err, impOut.String(), impErr.String())
	}
	if err := exp.Wait(); err != nil {
		t.Fatalf("export: %v: %s", err, expErr.String())
	}
	if !strings.Contains(impOut.String(), "imported into") {
		t.Fatalf("import --in - said %q", impOut.String())
	}

	// Same rows on both sides.
	files := [2]string{filepath.Join(t.TempDir(), "src.json"), filepath.Join(t.TempDir(), "dst.json")}
	for i, dir := range []string{src, dst} {
		if code, _, stderr := runKeygate(t, nil, "export", "--data-dir", dir, "--out", files[i]); code != 0 {
			t.Fatalf("export %s: exit %d: %s", dir, code, stderr)
		}
	}
	a, b := readExport(t, files[0]), readExport(t, files[1])
	if len(a.Tables) == 0 || len(a.Tables) != len(b.Tables) {
		t.Fatalf("%d tables exported, %d after import", len(a.Tables), len(b.Tables))
	}
	for i := range a.Tables {
		if !reflect.DeepEqual(a.Tables[i], b.Tables[i]) {
			t.Errorf("table %s differs after import from stdin:\nsource %v\ntarget %v", a.Tables[i].Name, a.Tables[i], b.Tables[i])
		}
	}

	// The target serves the source's token and key.
	q := startServe(t, serveOpts{DataDir: dst})
	if _, err := os.Stat(filepath.Join(dst, "admin-token")); err == nil {
		t.Fatal("a new admin token was generated although root was imported")
	}
	requireRoot(t, q, token)
	if err := sshLogin(t, q.SSHAddr, signer); err != nil {
		t.Fatalf("SSH with the imported key: %v", err)
	}
	q.stop()

	// Half a document on stdin: refused, nothing imported.
	whole, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	cut := exec.Command(keygateBin, "import", "--data-dir", empty, "--in", "-")
	cut.Env = childEnv()
	cut.Stdin = bytes.NewReader(whole[:len(whole)/2])
	out, err := cut.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("import of a truncated stdin: %v: %s", err, out)
	}
	t.Logf("truncated stdin: %s", bytes.TrimSpace(out))
	if code, stdout, stderr := runKeygate(t, nil, "export", "--data-dir", empty); code != 0 {
		t.Fatalf("export after the refused import: exit %d: %s", code, stderr)
	} else {
		var doc keystore.Export
		if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
			t.Fatal(err)
		}
		for _, tbl := range doc.Tables {
			if len(tbl.Rows) != 0 {
				t.Errorf("the refused import left %d rows in %s", len(tbl.Rows), tbl.Name)
			}
		}
	}
}

// seedSQL runs statements on a stopped node's SQLite database.
func seedSQL(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}
