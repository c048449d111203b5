package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/internal/testutil"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/pgtest"
)

// rowsByKey indexes an export's rows per table by their first column(s)
// (id, or group_id+user_id for members, or seq), dropping columns that
// change on reads (a token's last_used_at).
func rowsByKey(doc *keystore.Export) map[string]map[string][]any {
	out := map[string]map[string][]any{}
	for _, tbl := range doc.Tables {
		rows := map[string][]any{}
		keyCols := 1
		if tbl.Name == "members" || strings.HasPrefix(tbl.Name, "deploy_key_") {
			keyCols = 2
		}
		for _, r := range tbl.Rows {
			row := append([]any(nil), r...)
			for i, c := range tbl.Columns {
				if c == "last_used_at" {
					row[i] = nil
				}
			}
			rows[fmt.Sprint(row[:keyCols])] = row
		}
		out[tbl.Name] = rows
	}
	return out
}

// TestBackupRestoreUnderLoad (issue 21 §2): a backup taken while keygate
// takes a steady stream of writes and a push, restored into a new data
// dir, holds every user, key, token digest, CA, revocation, deploy key,
// bastion target and allowance and audit event that existed when it began
// (and nothing that never existed); keygate started on it presents the
// same host keys, an existing key logs in, and a clone matches a state the
// repository really had. A restore refuses a non-empty target.
func TestBackupRestoreUnderLoad(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("ssh not installed (.ci/run installs it)")
	}
	token := randomToken("backup-admin-token-")
	dir := t.TempDir()
	p := startServe(t, serveOpts{DataDir: dir, Env: []string{"KEYGATE_ADMIN_TOKEN=" + token}})

	// A row in every table, through the API.
	uid := id(t, p.must("POST", "/api/v4/users", token, map[string]any{
		"username": "alice", "email": "alice@example.com", "name": "Alice Liddell"}, 201).Object(t))
	aliceToken := p.must("POST", fmt.Sprintf("/api/v4/users/%d/personal_access_tokens", uid), token, map[string]any{
		"name": "laptop", "scopes": []string{"api"}}, 201).Object(t)["token"].(string)
	signer := testutil.NewSigner(t)
	p.must("POST", fmt.Sprintf("/api/v4/users/%d/keys", uid), token, map[string]any{
		"title": "laptop", "key": strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey()))), "expires_at": "2099-12-31"}, 201)
	p.must("POST", fmt.Sprintf("/api/v4/users/%d/gpg_keys", uid), token, map[string]any{
		"key": newGPGKey(t, "Alice Liddell", "alice@example.com")}, 201)
	gid := id(t, p.must("POST", "/api/v4/groups", token, map[string]any{"name": "Eng", "path": "eng"}, 201).Object(t))
	p.must("POST", fmt.Sprintf("/api/v4/groups/%d/members", gid), token, map[string]any{"user_id": uid, "access_level": 40}, 201)
	ca := id(t, p.must("POST", fmt.Sprintf("/api/v4/groups/%d/ssh_certificates", gid), token, map[string]any{
		"title": "Eng CA", "key": sshKeyLine("eng-ca")}, 201).Object(t))
	p.must("POST", fmt.Sprintf("/api/v4/groups/%d/ssh_certificates/%d/revocations", gid, ca), token, map[string]any{
		"serial": "42", "reason": "lost laptop"}, 201)
	pid := id(t, p.must("POST", "/api/v4/projects", token, map[string]any{"name": "API", "path": "api", "namespace_id": gid}, 201).Object(t))
	p.must("POST", "/api/v4/projects", token, map[string]any{"name": "Empty", "path": "empty", "namespace_id": gid}, 201)
	p.must("POST", fmt.Sprintf("/api/v4/projects/%d/deploy_keys", pid), token, map[string]any{"title": "ci", "key": sshKeyLine("ci"), "can_push": true}, 201)
	p.must("POST", fmt.Sprintf("/api/v4/groups/%d/deploy_keys", gid), token, map[string]any{"title": "argo", "key": sshKeyLine("argo")}, 201)
	p.must("POST", fmt.Sprintf("/api/v4/groups/%d/bastion_allowances", gid), token, map[string]any{"pattern": "10.20.0.0/16:22", "description": "lab"}, 201)
	p.must("POST", fmt.Sprintf("/api/v4/groups/%d/bastion_targets", gid), token, map[string]any{"pattern": "10.20.1.5:22", "description": "a host"}, 201)
	p.must("PUT", fmt.Sprintf("/api/v4/users/%d", uid), token, map[string]any{"enterprise_group_id": gid}, 200)

	// A first commit on eng/api.
	work, gitEnv := p.gitKey(t, aliceToken, "git key")
	gitEnv = append(gitEnv, "GIT_CONFIG_NOSYSTEM=1", "HOME="+work)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	url := "ssh://git@" + p.SSHAddr + "/eng/api.git"
	clone := filepath.Join(work, "api")
	git := func(dir string, args ...string) string {
		t.Helper()
		out, err := gitRun(ctx, dir, gitEnv, args...)
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(out)
	}
	git(work, "clone", "-q", url, clone)
	commit := func(msg string) string {
		git(clone, "-c", "user.name=A", "-c", "user.email=a@example.com", "commit", "-q", "--allow-empty", "-m", msg)
		return git(clone, "rev-parse", "HEAD")
	}
	first := commit("first")
	git(clone, "push", "-q", "origin", "HEAD:main")

	// What exists before the backup begins.
	pre := filepath.Join(t.TempDir(), "pre.json")
	if code, _, stderr := runKeygate(t, nil, "export", "--data-dir", dir, "--out", pre); code != 0 {
		t.Fatalf("export: %s", stderr)
	}

	// A steady write load and a push while the backup runs.
	var acked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r, err := p.do(ctx, "POST", "/api/v4/users", token, map[string]any{
				"username": fmt.Sprintf("load%d", i), "email": fmt.Sprintf("load%d@example.com", i), "name": "Load"})
			if err != nil || r.Status != 201 {
				t.Errorf("a write under load: %v %v", r, err)
				return
			}
			acked.Add(1)
		}
	}()
	second := commit("second")
	pushed := make(chan error, 1)
	go func() {
		_, err := gitRun(ctx, clone, gitEnv, "push", "-q", "origin", "HEAD:main")
		pushed <- err
	}()
	backup := filepath.Join(t.TempDir(), "keygate.backup")
	code, out, stderr := runKeygate(t, nil, "backup", "--data-dir", dir, "--output", backup, "--with-repositories")
	if err := <-pushed; err != nil {
		t.Fatalf("the push during the backup: %v", err)
	}
	for acked.Load() < 20 {
		time.Sleep(10 * time.Millisecond) // the load ran through the backup
	}
	close(stop)
	wg.Wait()
	if code != 0 || !strings.Contains(out, "2 repositories") {
		t.Fatalf("backup: exit %d\n%s%s", code, out, stderr)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the backup file: %v %v, want mode 0600", fi, err)
	}
	liveHostKeys := hostKeys(t, p.SSHAddr, []string{gossh.KeyAlgoED25519, gossh.KeyAlgoECDSA256, gossh.KeyAlgoRSASHA256})
	p.stop()
	final := filepath.Join(t.TempDir(), "final.json")
	if code, _, stderr := runKeygate(t, nil, "export", "--data-dir", dir, "--out", final); code != 0 {
		t.Fatalf("export: %s", stderr)
	}

	// Restore into a new data dir; a non-empty one is refused.
	restored := filepath.Join(t.TempDir(), "restored")
	if code, out, stderr := runKeygate(t, nil, "restore", "--input", backup, "--data-dir", restored); code != 0 {
		t.Fatalf("restore: exit %d\n%s%s", code, out, stderr)
	}
	if code, _, stderr := runKeygate(t, nil, "restore", "--input", backup, "--data-dir", dir); code == 0 || !strings.Contains(stderr, "is not empty") {
		t.Fatalf("restore into a non-empty data dir: exit %d\n%s", code, stderr)
	}
	got := filepath.Join(t.TempDir(), "restored.json")
	if code, _, stderr := runKeygate(t, nil, "export", "--data-dir", restored, "--out", got); code != 0 {
		t.Fatalf("export of the restore: %s", stderr)
	}
	before, after, now := rowsByKey(readExport(t, pre)), rowsByKey(readExport(t, got)), rowsByKey(readExport(t, final))
	for _, tbl := range []string{"users", "keys", "gpg_keys", "personal_access_tokens", "groups", "members", "group_cas", "cert_revocations",
		"projects", "deploy_keys", "deploy_key_projects", "deploy_key_groups", "bastion_targets", "bastion_allowances", "audit_events"} {
		if _, ok := before[tbl]; !ok {
			t.Errorf("no table %s in the export (tables: %v)", tbl, reflect.ValueOf(before).MapKeys())
			continue
		}
		if len(before[tbl]) == 0 {
			t.Errorf("the seed left %s empty", tbl)
		}
		for k, row := range before[tbl] {
			if !reflect.DeepEqual(after[tbl][k], row) {
				t.Errorf("%s %s: restored %v, want %v", tbl, k, after[tbl][k], row)
			}
		}
		for k, row := range after[tbl] {
			if !reflect.DeepEqual(now[tbl][k], row) {
				t.Errorf("%s %s: the restore holds %v, which never existed (now %v)", tbl, k, row, now[tbl][k])
			}
		}
	}
	if n := len(after["users"]); n <= len(before["users"]) || n > len(now["users"]) {
		t.Errorf("the restore holds %d users; before the backup %d, at the end %d", n, len(before["users"]), len(now["users"]))
	}

	// keygate on the restored data dir.
	q := startServe(t, serveOpts{DataDir: restored})
	if got := hostKeys(t, q.SSHAddr, []string{gossh.KeyAlgoED25519, gossh.KeyAlgoECDSA256, gossh.KeyAlgoRSASHA256}); !reflect.DeepEqual(fingerprints(got), fingerprints(liveHostKeys)) {
		t.Errorf("host keys after the restore %v, want %v", fingerprints(got), fingerprints(liveHostKeys))
	}
	if err := sshLogin(t, q.SSHAddr, signer); err != nil {
		t.Fatalf("alice's key on the restored keygate: %v", err)
	}
	q.must("GET", "/api/v4/user", aliceToken, nil, 200) // a token digest restored
	again := filepath.Join(t.TempDir(), "again")
	if out, err := gitRun(ctx, t.TempDir(), gitEnv, "clone", "-q", "ssh://git@"+q.SSHAddr+"/eng/api.git", again); err != nil {
		t.Fatalf("clone from the restored keygate: %v\n%s", err, out)
	}
	head := git(again, "rev-parse", "HEAD")
	if head != first && head != second {
		t.Fatalf("the restored main is %s, neither %s (before the push) nor %s (after)", head, first, second)
	}
	git(again, "fsck", "--strict", "--no-progress")
	if out, err := gitRun(ctx, t.TempDir(), gitEnv, "clone", "-q", "ssh://git@"+q.SSHAddr+"/eng/empty.git", filepath.Join(t.TempDir(), "e")); err != nil {
		t.Fatalf("clone of the empty repository from the restored keygate: %v\n%s", err, out)
	}
	q.stop()
}

// fingerprints maps a host key set to its fingerprints.
func fingerprints(keys map[string]gossh.PublicKey) map[string]string {
	out := map[string]string{}
	for algo, k := range keys {
		out[algo] = gossh.FingerprintSHA256(k)
	}
	return out
}

// TestBackupRestoreAcrossBackends: a SQLite backup restores into an empty
// PostgreSQL database (--db), and a PostgreSQL backup (the logical export)
// into a new SQLite data dir; the users, keys and tokens are there, and a
// restore into a database that holds data is refused.
func TestBackupRestoreAcrossBackends(t *testing.T) {
	t.Parallel()
	pgURL := pgtest.NewDatabase(t)
	token := randomToken("cross-admin-token-")
	dir := t.TempDir()
	p := startServe(t, serveOpts{DataDir: dir, Env: []string{"KEYGATE_ADMIN_TOKEN=" + token}})
	uid := id(t, p.must("POST", "/api/v4/users", token, map[string]any{"username": "alice", "email": "alice@example.com", "name": "Alice"}, 201).Object(t))
	signer := testutil.NewSigner(t)
	p.must("POST", fmt.Sprintf("/api/v4/users/%d/keys", uid), token, map[string]any{
		"title": "laptop", "key": strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey())))}, 201)
	p.stop()
	sqliteBackup := filepath.Join(t.TempDir(), "sqlite.kgb")
	if code, out, stderr := runKeygate(t, nil, "backup", "--data-dir", dir, "--output", sqliteBackup); code != 0 {
		t.Fatalf("backup: %s%s", out, stderr)
	}

	// SQLite → PostgreSQL.
	pgDir := t.TempDir()
	if code, out, stderr := runKeygate(t, nil, "restore", "--input", sqliteBackup, "--data-dir", pgDir, "--db", pgURL); code != 0 {
		t.Fatalf("restore into PostgreSQL: exit %d\n%s%s", code, out, stderr)
	}
	q := startServe(t, serveOpts{DataDir: pgDir, Args: []string{"--db", pgURL}})
	requireRoot(t, q, token)
	if err := sshLogin(t, q.SSHAddr, signer); err != nil {
		t.Fatalf("alice's key on PostgreSQL: %v", err)
	}
	q.stop()
	if code, _, stderr := runKeygate(t, nil, "restore", "--input", sqliteBackup, "--data-dir", t.TempDir()+"/x", "--db", pgURL); code == 0 || !strings.Contains(stderr, "not empty") {
		t.Fatalf("restore into a PostgreSQL database that holds data: exit %d\n%s", code, stderr)
	}

	// PostgreSQL → SQLite.
	pgBackup := filepath.Join(t.TempDir(), "pg.kgb")
	if code, out, stderr := runKeygate(t, nil, "backup", "--data-dir", pgDir, "--db", pgURL, "--output", pgBackup); code != 0 || !strings.Contains(out, "postgres") {
		t.Fatalf("backup of PostgreSQL: exit %d\n%s%s", code, out, stderr)
	}
	back := filepath.Join(t.TempDir(), "back")
	if code, out, stderr := runKeygate(t, nil, "restore", "--input", pgBackup, "--data-dir", back); code != 0 {
		t.Fatalf("restore of a PostgreSQL backup into SQLite: exit %d\n%s%s", code, out, stderr)
	}
	r := startServe(t, serveOpts{DataDir: back})
	requireRoot(t, r, token)
	if err := sshLogin(t, r.SSHAddr, signer); err != nil {
		t.Fatalf("alice's key back on SQLite: %v", err)
	}
	r.stop()
}
