package main

import (
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/pgtest"
)

// Issue 21 §1: the mistakes everybody makes once are refused, saying what
// to do, before anything is created.

// TestExplicitDBThatDoesNotExist: an explicit --db naming a file that does
// not exist (a typo) is refused naming the path and how to create one on
// purpose; nothing is created, parent directories least of all. keygate
// migrate --create makes one on purpose; the default first start still
// creates everything.
func TestExplicitDBThatDoesNotExist(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	dataDir := filepath.Join(base, "data")
	typo := filepath.Join(base, "keygate.dbb")
	for _, c := range []struct {
		name string
		args []string
		env  []string
		want []string
	}{
		{"typo", []string{"--db", typo}, nil, []string{"no database at " + typo, "keygate migrate --create --db " + typo}},
		{"sqlite-url-missing-dir", []string{"--db", "sqlite:" + base + "/nonexistent/dir/k.db"}, nil,
			[]string{"no database at " + base + "/nonexistent/dir/k.db", "create its directory " + base + "/nonexistent/dir first"}},
		{"env-file-url", nil, []string{"KEYGATE_DB=file:" + typo}, []string{"no database at " + typo}},
	} {
		code, _, stderr := runKeygate(t, append([]string{"KEYGATE_DATA_DIR=" + dataDir}, c.env...), append([]string{"serve"}, c.args...)...)
		if code != 2 {
			t.Errorf("%s: exit %d, want 2; stderr:\n%s", c.name, code, stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: stderr lacks %q:\n%s", c.name, w, stderr)
			}
		}
		for _, p := range []string{typo, filepath.Join(base, "nonexistent"), dataDir} {
			if _, err := os.Stat(p); err == nil {
				t.Fatalf("%s: %s was created", c.name, p)
			}
		}
	}
	// One-shot commands refuse it too.
	for _, cmd := range []string{"export", "reset-admin-token", "enterprise-users", "migrate", "backup"} {
		args := []string{cmd, "--db", typo}
		if cmd == "backup" {
			args = append(args, "--output", filepath.Join(base, "b.tgz"))
		}
		code, _, stderr := runKeygate(t, nil, args...)
		if code == 0 || !strings.Contains(stderr, "no database at "+typo) {
			t.Errorf("keygate %s --db %s: exit %d, stderr:\n%s", cmd, typo, code, stderr)
		}
		if _, err := os.Stat(typo); err == nil {
			t.Fatalf("keygate %s created %s", cmd, typo)
		}
	}
	// migrate --create never creates a directory either.
	if code, _, stderr := runKeygate(t, nil, "migrate", "--create", "--db", filepath.Join(base, "nonexistent", "k.db")); code == 0 || !strings.Contains(stderr, "does not exist") {
		t.Fatalf("migrate --create into a missing directory: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(base, "nonexistent")); err == nil {
		t.Fatal("migrate --create created the directory")
	}
	// On purpose: migrate --create, then serve opens it.
	if code, out, stderr := runKeygate(t, nil, "migrate", "--create", "--db", typo); code != 0 || !strings.Contains(out, "schema migrated from version 0 to") {
		t.Fatalf("migrate --create: exit %d\n%s%s", code, out, stderr)
	}
	p := startServe(t, serveOpts{DataDir: dataDir, Args: []string{"--db", typo}})
	p.stop()
}

// bumpSchema records a migration newer than this build knows, as a newer
// keygate would have.
func bumpSchema(t *testing.T, driver, dsn string, v int64) {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q := `INSERT INTO goose_db_version (version_id, is_applied) VALUES (?, true)`
	if driver == "pgx" {
		q = `INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, true)`
	}
	if _, err := db.Exec(q, v); err != nil {
		t.Fatal(err)
	}
}

// TestSchemaGuard: a database migrated by a newer keygate is refused,
// naming both schema versions and this keygate's release, on SQLite and
// PostgreSQL, by serve and by migrate; serve logs each migration it
// applies (from → to); --no-migrate on an empty database says what is
// missing instead of an SQL error.
func TestSchemaGuard(t *testing.T) {
	t.Parallel()
	latest := keystore.LatestSchema()
	newer := latest + 100
	wantNewer := fmt.Sprintf("the database schema is at version %d, newer than this keygate knows (version %d)", newer, latest)
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		p := startServe(t, serveOpts{DataDir: dir})
		p.stop()
		log := p.Stderr.String()
		if !strings.Contains(log, fmt.Sprintf("database schema migrated\" from=0 to=%d", latest)) &&
			!strings.Contains(log, fmt.Sprintf("msg=\"database schema migrated\" from=0 to=%d", latest)) {
			t.Errorf("the first start did not log the migration from 0 to %d:\n%s", latest, log)
		}
		files, err := filepath.Glob(filepath.Join("..", "..", "keystore", "migrations", "sqlite", "*.sql"))
		if err != nil || len(files) == 0 {
			t.Fatalf("migration files: %v", err)
		}
		if n := strings.Count(log, "schema migration applied"); n != len(files) {
			t.Errorf("%d migrations logged, want one per file (%d):\n%s", n, len(files), log)
		}
		q := startServe(t, serveOpts{DataDir: dir})
		q.stop()
		if strings.Contains(q.Stderr.String(), "schema migrat") {
			t.Errorf("a start with nothing to migrate logged a migration:\n%s", q.Stderr)
		}
		db := filepath.Join(dir, "keygate.db")
		bumpSchema(t, "sqlite", db, newer)
		before, _ := os.ReadFile(db)
		code, _, stderr := runKeygate(t, []string{"KEYGATE_DATA_DIR=" + dir}, "serve", "--ssh-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
		if code != 1 || !strings.Contains(stderr, wantNewer) || !strings.Contains(stderr, "keygate "+version) || !strings.Contains(stderr, "restore the backup") {
			t.Fatalf("serve on a newer schema: exit %d, stderr:\n%s", code, stderr)
		}
		code, _, stderr = runKeygate(t, nil, "migrate", "--data-dir", dir)
		if code == 0 || !strings.Contains(stderr, wantNewer) {
			t.Fatalf("migrate on a newer schema: exit %d, stderr:\n%s", code, stderr)
		}
		if after, _ := os.ReadFile(db); string(after) != string(before) {
			t.Error("the refused starts changed the database file")
		}

		// --no-migrate on a new, empty database.
		code, _, stderr = runKeygate(t, []string{"KEYGATE_DATA_DIR=" + t.TempDir()}, "serve", "--no-migrate", "--ssh-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
		if code != 1 || !strings.Contains(stderr, "has no keygate schema yet") || !strings.Contains(stderr, "keygate migrate") || strings.Contains(stderr, "SQL") {
			t.Fatalf("--no-migrate on an empty database: exit %d, stderr:\n%s", code, stderr)
		}
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		pgtest.Require(t)
		db := pgtest.NewDatabase(t)
		code, _, stderr := runKeygate(t, nil, "serve", "--no-migrate", "--db", db, "--ssh-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
		if code != 1 || !strings.Contains(stderr, "has no keygate schema yet") {
			t.Fatalf("--no-migrate on an empty PostgreSQL database: exit %d, stderr:\n%s", code, stderr)
		}
		if code, out, stderr := runKeygate(t, nil, "migrate", "--db", db); code != 0 || !strings.Contains(stderr, "schema migration applied") {
			t.Fatalf("migrate: exit %d\n%s%s", code, out, stderr)
		}
		bumpSchema(t, "pgx", db, newer)
		code, _, stderr = runKeygate(t, nil, "serve", "--db", db, "--ssh-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
		if code != 1 || !strings.Contains(stderr, wantNewer) || !strings.Contains(stderr, "keygate "+version) {
			t.Fatalf("serve on a newer PostgreSQL schema: exit %d, stderr:\n%s", code, stderr)
		}
		if strings.Contains(stderr, "secret") || regexp.MustCompile(`://[^@/]*:[^@/]*@`).MatchString(stderr) {
			t.Errorf("the refusal shows the database password:\n%s", stderr)
		}
	})
}

// TestNewcomerMistakes: each mistake on issue 21's newcomer's list gets a
// message that says what was meant, before anything is created.
func TestNewcomerMistakes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		args []string
		want string
		not  string
	}{
		{"ssh-addr-port-only", []string{"--ssh-addr", "2222"}, "write :2222", "missing port"},
		{"http-addr-port-only", []string{"--http-addr", "8080"}, "write :8080", ""},
		{"metrics-addr-ip-only", []string{"--metrics-addr", "127.0.0.1"}, "the port is missing", ""},
		{"bad-port", []string{"--ssh-addr", ":99999"}, "not a port number", ""},
		{"hostname-with-space", []string{"--hostname", "bad host"}, `--hostname "bad host": contains ' '`, ""},
		{"hostname-with-slash", []string{"--hostname", "git.example.com/x"}, "--hostname", ""},
		{"exempt-bad-cidr", []string{"--per-source-exempt", "10.0.0.0/33"}, `--per-source-exempt: "10.0.0.0/33" is not an IP address or CIDR`, "trusted proxy"},
		{"proxy-trusted-bad", []string{"--proxy-protocol-trusted", "nope"}, `--proxy-protocol-trusted: "nope"`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dataDir := filepath.Join(t.TempDir(), "data")
			code, _, stderr := runKeygate(t, []string{"KEYGATE_DATA_DIR=" + dataDir}, append([]string{"serve"}, c.args...)...)
			if code != 2 || !strings.Contains(stderr, c.want) || (c.not != "" && strings.Contains(stderr, c.not)) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 2 and %q", code, stderr, c.want)
			}
			if _, err := os.Stat(dataDir); err == nil {
				t.Fatal("the data dir was created before the refusal")
			}
		})
	}
	t.Run("accepted", func(t *testing.T) {
		t.Parallel()
		for _, h := range []string{"git.example.com", "localhost", "192.0.2.1", "::1", "build_host-01.example"} {
			if err := checkHostname(h); err != nil {
				t.Errorf("checkHostname(%q) = %v", h, err)
			}
		}
	})
}

// otherUser is the unprivileged account (nobody) the root-only tests run
// keygate as, with a copy of the binary it may execute.
func otherUser(t *testing.T) (bin string, cred *syscall.Credential) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running keygate as another user needs root (CI runs as root)")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "keygate-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "keygate")
	src, err := os.Open(keygateBin)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	return bin, &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// sharedTempDir is a directory another user may enter (t.TempDir's
// parents are private to root).
func sharedTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "keygate-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func chownTree(t *testing.T, root string, uid, gid int) {
	t.Helper()
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReadOnlyDatabaseFileNamedWithFix: a keystore file left root's by a
// restore done as root, under a keygate that runs as its own user. keygate
// serves authentication and reads; /-/readiness says "database":
// "read-only" and that writes are refused; every write answers 503 with
// that reason (not "try again later"); the log names the file, its owner
// and mode and the fix. An unreadable data dir is named as such, not as a
// --db error.
func TestReadOnlyDatabaseFileNamedWithFix(t *testing.T) {
	t.Parallel()
	bin, cred := otherUser(t)
	dir := filepath.Join(sharedTempDir(t), "data")
	token := randomToken("ro-file-admin-")
	seed := startServe(t, serveOpts{DataDir: dir, Env: []string{"KEYGATE_ADMIN_TOKEN=" + token}})
	seed.must("POST", "/api/v4/users", token, map[string]any{"username": "alice", "email": "alice@example.com", "name": "Alice"}, 201)
	seed.stop()
	// keygate's user owns the data dir; the restore left the database root's.
	chownTree(t, dir, int(cred.Uid), int(cred.Gid))
	db := filepath.Join(dir, "keygate.db")
	for _, f := range []string{db, db + "-wal", db + "-shm"} {
		if err := os.Lchown(f, 0, 0); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		os.Chmod(f, 0o644)
	}
	p := startServe(t, serveOpts{DataDir: dir, Bin: bin, Credential: cred, Env: []string{"KEYGATE_ADMIN_TOKEN=" + token}})
	r := p.must("GET", "/-/readiness", "", nil, 200).Object(t)
	if checks, _ := r["checks"].(map[string]any); checks["database"] != "read-only" || !strings.Contains(fmt.Sprint(r["writes"]), "read-only") {
		t.Fatalf("readiness on a read-only database file: %v", r)
	}
	p.must("GET", "/api/v4/users?username=alice", token, nil, 200)
	w := p.must("POST", "/api/v4/users", token, map[string]any{"username": "bob", "email": "bob@example.com", "name": "Bob"}, 503)
	msg := fmt.Sprint(w.Object(t)["message"])
	if !strings.Contains(msg, "read-only") || strings.Contains(msg, "try again later") || w.Header.Get("Retry-After") != "" {
		t.Fatalf("a write on the read-only file: %s (Retry-After %q)", w.Body, w.Header.Get("Retry-After"))
	}
	p.stop()
	log := p.Stderr.String()
	for _, want := range []string{"file=" + db, "owner=\"root (uid 0)\"", "mode=0644", "chown " + strconv.Itoa(int(cred.Uid)) + " " + db} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}

	// A data dir keygate's user cannot read: named as the data dir, with
	// its owner and mode.
	locked := filepath.Join(sharedTempDir(t), "locked")
	if err := os.Mkdir(locked, 0o700); err != nil {
		t.Fatal(err)
	}
	q := launchServe(t, serveOpts{DataDir: locked, Bin: bin, Credential: cred})
	if code := q.wait(startDeadline); code != 2 {
		t.Fatalf("keygate on an unreadable data dir exited %d, want 2:\n%s", code, q.Stderr)
	}
	if s := q.Stderr.String(); !strings.Contains(s, "--data-dir "+locked+" cannot be read by keygate") || !strings.Contains(s, "owner root (uid 0), mode 0700") || strings.Contains(s, "--db") {
		t.Fatalf("unreadable data dir:\n%s", s)
	}
}
