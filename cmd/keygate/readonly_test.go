package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore/pgtest"
)

// pgExec runs one statement on the database at dsn and returns the rows it
// affected.
func pgExec(t *testing.T, dsn, stmt string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	tag, err := conn.Exec(ctx, stmt, args...)
	if err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
	return tag.RowsAffected()
}

// setReadOnly sets default_transaction_read_only on the database at dsn
// (through the server's admin URL) and terminates the sessions open on it,
// so every new session of keygate's starts with the setting, as on a
// standby or a database an operator fenced.
func setReadOnly(t *testing.T, admin, dsn string, on bool) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	value := "off"
	if on {
		value = "on"
	}
	pgExec(t, admin, fmt.Sprintf("ALTER DATABASE %s SET default_transaction_read_only = %s", pgx.Identifier{name}.Sanitize(), value))
	if n := pgQuery(t, admin, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, name); n == 0 {
		t.Fatalf("no session of keygate's on %s to terminate", name)
	}
	var got string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SHOW default_transaction_read_only`).Scan(&got); err != nil || got != value {
		t.Fatalf("a new session on %s: default_transaction_read_only = %q, %v; want %s", name, got, err, value)
	}
}

// TestReadOnlyPostgresWritesAnswer503: keygate's PostgreSQL database turns
// read-only under it (default_transaction_read_only, as on a failed-over
// standby), every session renewed. Writes answer 503 with a clear message
// (SQLSTATE 25006, never 500), REST reads answer 200, SSH keeps
// authenticating the existing key, /-/readiness stays ready with the
// database reachable. Once the database takes writes again, so does
// keygate.
func TestReadOnlyPostgresWritesAnswer503(t *testing.T) {
	t.Parallel()
	admin := pgtest.Require(t)
	db := pgtest.NewDatabase(t)
	token := randomToken("readonly-admin-")
	n := &node{startServe(t, serveOpts{Args: []string{"--db", db}, Env: []string{"KEYGATE_ADMIN_TOKEN=" + token}}), token}

	uid := id(t, n.must("POST", "/api/v4/users", token, map[string]any{"username": "alice", "email": "alice@example.com", "name": "Alice"}, 201).Object(t))
	signer, line := newSigner(t)
	n.must("POST", fmt.Sprintf("/api/v4/users/%d/keys", uid), token, map[string]any{"title": "laptop", "key": line}, 201)
	if out, err := sshGreeting(n.SSHAddr, signer); err != nil || !strings.Contains(out, "Welcome to keygate, @alice!") {
		t.Fatalf("ssh before read-only: %q, %v", out, err)
	}

	setReadOnly(t, admin, db, true)
	// The first requests may meet pooled sessions that were just
	// terminated (also 503, the database "restarting" for them); from then
	// on every write meets a read-only session.
	writes := []struct {
		path string
		body map[string]any
	}{
		{"/api/v4/users", map[string]any{"username": "bob", "email": "bob@example.com", "name": "Bob"}},
		{fmt.Sprintf("/api/v4/users/%d/keys", uid), map[string]any{"title": "second", "key": sshKeyLine("")}},
		{fmt.Sprintf("/api/v4/users/%d/personal_access_tokens", uid), map[string]any{"name": "ci", "scopes": []string{"api"}}},
	}
	for i := range 20 {
		w := writes[i%len(writes)]
		r, err := n.do(t.Context(), "POST", w.path, token, w.body)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != 503 {
			t.Fatalf("POST %s on a read-only database: %d %s\nstderr:\n%s", w.path, r.Status, r.Body, n.Stderr)
		}
		if msg, _ := r.Object(t)["message"].(string); !strings.Contains(msg, "cannot accept writes") {
			t.Fatalf("503 without a clear message: %s", r.Body)
		}
		if r.Header.Get("Retry-After") == "" {
			t.Fatalf("503 without Retry-After")
		}
	}
	r := n.must("DELETE", fmt.Sprintf("/api/v4/users/%d", uid), token, nil, 503)
	if !strings.Contains(string(r.Body), "cannot accept writes") {
		t.Fatalf("DELETE on a read-only database: %s", r.Body)
	}
	// The refusals were the database's read-only answer, not only dead
	// sessions.
	if !strings.Contains(n.Stderr.String(), "read-only transaction") || !strings.Contains(n.Stderr.String(), "25006") {
		t.Fatalf("keygate's log has no read-only refusal (SQLSTATE 25006):\n%s", n.Stderr)
	}
	if strings.Contains(n.Stderr.String(), "status=500") {
		t.Fatalf("a request answered 500:\n%s", n.Stderr)
	}

	// Reads and SSH keep working; alice still has exactly one key.
	var keys []map[string]any
	n.must("GET", fmt.Sprintf("/api/v4/users/%d/keys", uid), token, nil, 200).JSON(t, &keys)
	if len(keys) != 1 {
		t.Fatalf("alice has %d keys after refused writes, want 1", len(keys))
	}
	n.must("GET", "/api/v4/users", token, nil, 200)
	n.must("GET", "/api/v4/user", token, nil, 200)
	for i := range 5 {
		if out, err := sshGreeting(n.SSHAddr, signer); err != nil || !strings.Contains(out, "Welcome to keygate, @alice!") {
			t.Fatalf("ssh %d on a read-only database: %q, %v", i, out, err)
		}
	}
	other, _ := newSigner(t)
	if _, err := sshGreeting(n.SSHAddr, other); err == nil {
		t.Fatal("an unknown key authenticated on a read-only database")
	}
	// The index follows the read-only database: ready, reachable, no lag.
	waitFor(t, "readiness: ready with the read-only database reachable", func() bool {
		rd := n.readiness()
		return rd.code == 200 && rd.Status == "ok" && rd.Checks["database"] == "ok" && rd.Index.Database == "reachable"
	})

	setReadOnly(t, admin, db, false)
	// Writes work again (the first may meet a session just terminated).
	waitFor(t, "writes succeed once the database takes writes again", func() bool {
		r, err := n.do(t.Context(), "POST", "/api/v4/users", token, map[string]any{"username": "bob", "email": "bob@example.com", "name": "Bob"})
		if err != nil {
			t.Fatal(err)
		}
		switch r.Status {
		case 201:
			return true
		case 503:
			time.Sleep(50 * time.Millisecond)
			return false
		}
		t.Fatalf("POST /api/v4/users after read-only: %d %s", r.Status, r.Body)
		return false
	})
	second, line2 := newSigner(t)
	n.must("POST", fmt.Sprintf("/api/v4/users/%d/keys", uid), token, map[string]any{"title": "second", "key": line2}, 201)
	if out, err := sshGreeting(n.SSHAddr, second); err != nil || !strings.Contains(out, "Welcome to keygate, @alice!") {
		t.Fatalf("ssh with a key added after read-only ended: %q, %v", out, err)
	}
	n.must("GET", "/-/readiness", "", nil, 200)
	n.stop()
}

// readOnlyBindMount bind-mounts src read-only on a new directory, or skips
// the test saying why it cannot.
func readOnlyBindMount(t *testing.T, src string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a read-only bind mount needs root")
	}
	dst := t.TempDir()
	if out, err := exec.Command("mount", "--bind", src, dst).CombinedOutput(); err != nil {
		t.Skipf("cannot bind-mount here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dst).Run() })
	if out, err := exec.Command("mount", "-o", "remount,ro,bind", dst).CombinedOutput(); err != nil {
		t.Skipf("cannot remount a bind mount read-only here: %v: %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dst, "probe"), nil, 0o600); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("writing on the read-only mount: %v, want EROFS", err)
	}
	return dst
}

// seedKeystore runs keygate on a new SQLite data directory, adds alice
// with a key, adds a second key (the last write), and ends keygate with
// SIGTERM, or SIGKILL when kill is set (SQLite then leaves the last writes
// in its write-ahead log).
func seedKeystore(t *testing.T, token string, kill bool) (dir string, uid int64, first, last gossh.Signer) {
	t.Helper()
	dir = t.TempDir()
	p := startServe(t, serveOpts{DataDir: dir, Env: []string{"KEYGATE_ADMIN_TOKEN=" + token}})
	uid = id(t, p.must("POST", "/api/v4/users", token, map[string]any{"username": "alice", "email": "alice@example.com", "name": "Alice"}, 201).Object(t))
	first, line := newSigner(t)
	p.must("POST", fmt.Sprintf("/api/v4/users/%d/keys", uid), token, map[string]any{"title": "laptop", "key": line}, 201)
	last, line = newSigner(t)
	p.must("POST", fmt.Sprintf("/api/v4/users/%d/keys", uid), token, map[string]any{"title": "desktop", "key": line}, 201)
	if kill {
		p.kill()
	} else {
		p.stop()
	}
	return dir, uid, first, last
}

// TestReadOnlySQLiteAtStart: keygate starts on a SQLite keystore whose data
// directory is a read-only mount (copied from a node, or a disk the kernel
// remounted read-only): it says so, serves SSH authentication and REST
// reads, and answers writes 503 with a clear message, never 500. A
// keystore whose write-ahead log holds the last writes (the node was
// killed) is read with them; one whose -shm file is missing cannot be read
// without write access, and keygate refuses to start, saying why, rather
// than serve a view without those writes.
func TestReadOnlySQLiteAtStart(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("a read-only bind mount needs root")
	}
	for _, c := range []struct {
		name string
		kill bool
	}{{"clean-stop", false}, {"killed-wal-holds-last-writes", true}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			token := randomToken("ro-sqlite-admin-")
			src, uid, first, last := seedKeystore(t, token, c.kill)
			if c.kill {
				fi, err := os.Stat(filepath.Join(src, "keygate.db-wal"))
				if err != nil || fi.Size() == 0 {
					t.Fatalf("after SIGKILL the write-ahead log is %v, %v; the test needs writes in it", fi, err)
				}
			}
			mnt := readOnlyBindMount(t, src)

			p := startServe(t, serveOpts{DataDir: mnt, Env: []string{"KEYGATE_ADMIN_TOKEN=" + token}})
			if !strings.Contains(p.Stderr.String(), "opened read-only") {
				t.Errorf("keygate did not say the database is read-only:\n%s", p.Stderr)
			}
			var keys []map[string]any
			p.must("GET", fmt.Sprintf("/api/v4/users/%d/keys", uid), token, nil, 200).JSON(t, &keys)
			if len(keys) != 2 {
				t.Fatalf("alice has %d keys on the read-only keystore, want 2", len(keys))
			}
			p.must("GET", "/api/v4/users", token, nil, 200)
			for i := range 3 {
				for _, s := range []gossh.Signer{first, last} {
					if out, err := sshGreeting(p.SSHAddr, s); err != nil || !strings.Contains(out, "Welcome to keygate, @alice!") {
						t.Fatalf("ssh %d on the read-only keystore: %q, %v", i, out, err)
					}
				}
			}
			other, _ := newSigner(t)
			if _, err := sshGreeting(p.SSHAddr, other); err == nil {
				t.Fatal("an unknown key authenticated on the read-only keystore")
			}
			for _, w := range []struct{ method, path string }{
				{"POST", "/api/v4/users"},
				{"POST", fmt.Sprintf("/api/v4/users/%d/keys", uid)},
				{"DELETE", fmt.Sprintf("/api/v4/users/%d", uid)},
			} {
				var body map[string]any
				if w.method == "POST" && strings.HasSuffix(w.path, "/keys") {
					body = map[string]any{"title": "third", "key": sshKeyLine("")}
				} else if w.method == "POST" {
					body = map[string]any{"username": "bob", "email": "bob@example.com", "name": "Bob"}
				}
				r := p.must(w.method, w.path, token, body, 503)
				if msg, _ := r.Object(t)["message"].(string); !strings.Contains(msg, "cannot accept writes") {
					t.Fatalf("%s %s: 503 without a clear message: %s", w.method, w.path, r.Body)
				}
			}
			p.must("GET", "/-/readiness", "", nil, 200)
			if strings.Contains(p.Stderr.String(), "status=500") {
				t.Fatalf("a request answered 500:\n%s", p.Stderr)
			}
			p.stop()

			// Without KEYGATE_ADMIN_TOKEN: root exists, nothing to write;
			// keygate starts and writes no token file (it could not).
			q := startServe(t, serveOpts{DataDir: mnt})
			if got := generatedToken.FindAllString(q.Stderr.String(), -1); len(got) != 0 {
				t.Fatalf("a start on the read-only keystore printed tokens %q", got)
			}
			requireRoot(t, q, token)
			q.stop()
		})
	}

	t.Run("wal-without-shm-refuses-to-start", func(t *testing.T) {
		t.Parallel()
		token := randomToken("ro-sqlite-admin-")
		src, _, _, _ := seedKeystore(t, token, true)
		if err := os.Remove(filepath.Join(src, "keygate.db-shm")); err != nil {
			t.Fatal(err)
		}
		mnt := readOnlyBindMount(t, src)
		p := launchServe(t, serveOpts{DataDir: mnt, Env: []string{"KEYGATE_ADMIN_TOKEN=" + token}})
		if code := p.wait(startDeadline); code != 1 {
			t.Fatalf("keygate on a read-only keystore it cannot read exited with %d, want 1; stderr:\n%s", code, p.Stderr)
		}
		if !strings.Contains(p.Stderr.String(), "cannot be read without write access") {
			t.Fatalf("the start error does not say why:\n%s", p.Stderr)
		}
	})
}
