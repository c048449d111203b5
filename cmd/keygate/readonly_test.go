package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
