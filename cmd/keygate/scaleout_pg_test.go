package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore/pgtest"
)

// withAppName returns dsn with application_name set, so a node's
// connections can be told apart in pg_stat_activity.
func withAppName(t *testing.T, dsn, name string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// pgQuery runs a query returning one int64 on the database at dsn.
func pgQuery(t *testing.T, dsn, query string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestTwoNodesOnePostgres: a change made through node A is enforced by node
// B (which learns of it by LISTEN/NOTIFY) within a second, p99 over 50+
// changes of every kind.
func TestTwoNodesOnePostgres(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	a, b := startCluster(t, []string{"--db", db}, []string{"--db", db})
	propagation(t, a, b, 50)
	if max := pgQuery(t, db, `SELECT max(seq) FROM changes`); b.readiness().Index.Applied != max {
		t.Errorf("B applied %d, the database's newest change is %d", b.readiness().Index.Applied, max)
	}
}

// TestPostgresOutage: PostgreSQL stops for a few seconds. Node B keeps
// authenticating the keys it knows and says the database is unreachable;
// once PostgreSQL is back, changes made through A reach B, none lost.
func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	// A server of the test's own: stopping the shared one would break
	// other packages' tests running meanwhile. PrivateServer destroys it
	// when the test ends, also if it fails half-way through the outage.
	srv := pgtest.PrivateServer(t)
	pgtest.Exec(t, srv.URL, "CREATE DATABASE keygate")
	db := pgtest.WithDatabase(t, srv.URL, "keygate")
	a, b := startCluster(t, []string{"--db", db}, []string{"--db", db})
	uid := id(t, a.api("POST", "/users", map[string]any{"username": "olga", "email": "olga@example.com", "name": "olga"}, 201))
	k1, line1 := newSigner(t)
	kid1 := id(t, a.api("POST", fmt.Sprintf("/users/%d/keys", uid), map[string]any{"title": "k1", "key": line1}, 201))
	waitFor(t, "k1 authenticates on B", func() bool { return canLogin(b.SSHAddr, k1) })
	before := b.readiness().Index.Applied

	srv.Stop(t)
	stopped := time.Now()
	sawUnreachable := false
	for time.Since(stopped) < 3*time.Second {
		if !canLogin(b.SSHAddr, k1) {
			t.Fatal("B refused a known key while PostgreSQL was down")
		}
		rd := b.readiness()
		if rd.code != 200 {
			t.Fatalf("B's readiness during a short outage = %d %+v, want 200 (the index still serves)", rd.code, rd)
		}
		if rd.Checks["database"] == "unreachable" && rd.Index.Database == "unreachable" && rd.Index.Lag > 0 && rd.Index.Applied == before {
			sawUnreachable = true
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !sawUnreachable {
		t.Error("B's readiness never reported the database unreachable (with a growing lag) during the outage")
	}
	m := string(b.must("GET", "/metrics", "", nil, 200).Body)
	if !strings.Contains(m, "keygate_index_database_reachable 0\n") {
		t.Error("B's metrics do not say the database is unreachable")
	}
	srv.Start(t)
	t.Logf("PostgreSQL was down for %v", time.Since(stopped).Round(time.Millisecond))

	for _, n := range []*node{a, b} {
		waitFor(t, "the database is reachable again", func() bool {
			rd := n.readiness()
			return rd.Checks["database"] == "ok" && rd.Index.Database == "reachable"
		})
	}
	k2, line2 := newSigner(t)
	a.api("POST", fmt.Sprintf("/users/%d/keys", uid), map[string]any{"title": "k2", "key": line2}, 201)
	a.api("DELETE", fmt.Sprintf("/users/%d/keys/%d", uid, kid1), nil, 204)
	waitFor(t, "a key added after the outage authenticates on B", func() bool { return canLogin(b.SSHAddr, k2) })
	waitFor(t, "a key deleted after the outage is refused by B", func() bool { return !canLogin(b.SSHAddr, k1) })
	a.api("POST", fmt.Sprintf("/users/%d/block", uid), nil, 201)
	waitFor(t, "a user blocked after the outage is refused by B", func() bool { return !canLogin(b.SSHAddr, k2) })
	max := pgQuery(t, db, `SELECT max(seq) FROM changes`)
	waitFor(t, "B applied every change", func() bool { return b.readiness().Index.Applied == max })
	if rd := b.readiness(); rd.code != 200 || rd.Index.Lag != 0 || rd.Checks["index"] != "ok" {
		t.Errorf("B's readiness after the outage = %d %+v", rd.code, rd)
	}
}

// TestPostgresNodeConnectionsKilled: node B's database connections (its
// pool and its LISTEN connection) are terminated again and again while A
// keeps writing; B converges with every change applied.
func TestPostgresNodeConnectionsKilled(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	var rb [4]byte
	rand.Read(rb[:])
	appB := "keygate-b-" + hex.EncodeToString(rb[:])
	a, b := startCluster(t, []string{"--db", db}, []string{"--db", withAppName(t, db, appB)})
	uid := id(t, a.api("POST", "/users", map[string]any{"username": "pavel", "email": "pavel@example.com", "name": "pavel"}, 201))

	type key struct {
		signer  gossh.Signer
		deleted bool
	}
	// The killer terminates B's connections every 150 ms while A writes.
	stop := make(chan struct{})
	var killed int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, db)
		if err != nil {
			t.Errorf("connect: %v", err)
			return
		}
		defer conn.Close(ctx)
		for {
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
			var n int64
			if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, appB).Scan(&n); err != nil {
				t.Errorf("pg_terminate_backend: %v", err)
				return
			}
			killed += n
		}
	}()
	var keys []key
	for i := range 40 {
		s, line := newSigner(t)
		kid := id(t, a.api("POST", fmt.Sprintf("/users/%d/keys", uid), map[string]any{"title": fmt.Sprint("k", i), "key": line}, 201))
		k := key{signer: s}
		if i%4 == 3 {
			a.api("DELETE", fmt.Sprintf("/users/%d/keys/%d", uid, kid), nil, 204)
			k.deleted = true
		}
		keys = append(keys, k)
		time.Sleep(25 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if killed == 0 {
		t.Fatal("no connection of B was terminated: the test proves nothing")
	}
	t.Logf("terminated %d of B's connections while A wrote", killed)

	max := pgQuery(t, db, `SELECT max(seq) FROM changes`)
	waitFor(t, "B applied every change", func() bool { return b.readiness().Index.Applied == max })
	for i, k := range keys {
		if got := canLogin(b.SSHAddr, k.signer); got == k.deleted {
			t.Errorf("key %d (deleted: %v): B says authenticates=%v", i, k.deleted, got)
		}
	}
	if m := string(b.must("GET", "/metrics", "", nil, 200).Body); !strings.Contains(m, "keygate_index_feed_errors_total") {
		t.Error("B's metrics lack keygate_index_feed_errors_total")
	}
}
