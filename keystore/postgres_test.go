package keystore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/pgtest"
)

// Cross-node behaviour: several Stores (as several keygate nodes would)
// on one PostgreSQL database. These run whenever a PostgreSQL test server
// is configured, whatever KEYGATE_TEST_BACKEND says.

// twoNodes opens two Stores on one fresh PostgreSQL database.
func twoNodes(t *testing.T) (dsn string, a, b *keystore.Store) {
	t.Helper()
	dsn = pgtest.NewDatabase(t)
	ctx := context.Background()
	open := func() *keystore.Store {
		s, err := keystore.Open(ctx, keystore.Config{DSN: dsn})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		if s.Backend() != "postgres" {
			t.Fatalf("Backend() = %q", s.Backend())
		}
		return s
	}
	return dsn, open(), open()
}

// TestPostgresSameKeyOnTwoNodes: two nodes adding the same key at the same
// moment: exactly one succeeds, the other is told the fingerprint is taken.
func TestPostgresSameKeyOnTwoNodes(t *testing.T) {
	t.Parallel()
	_, a, b := twoNodes(t)
	ctx := context.Background()
	alice, err := a.CreateUser(ctx, sys, keystore.UserInput{Username: ptr("alice"), Email: ptr("alice@example.com")})
	mustOK(t, err)
	bob, err := b.CreateUser(ctx, sys, keystore.UserInput{Username: ptr("bob"), Email: ptr("bob@example.com")})
	mustOK(t, err)
	const rounds = 40
	for i := range rounds {
		_, line := newEd25519(t, fmt.Sprint("round-", i))
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for j, s := range []*keystore.Store{a, b} {
			user := alice.ID
			if i%2 == 1 && j == 1 {
				user = bob.ID // a different user must not get it either
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[j] = s.CreateKey(ctx, sys, user, keystore.KeyInput{Title: "k", Key: line})
			}()
		}
		close(start)
		wg.Wait()
		var ok, taken int
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			default:
				wantOnlyField(t, err, "fingerprint_sha256", "has already been taken")
				taken++
			}
		}
		if ok != 1 || taken != 1 {
			t.Fatalf("round %d: %d created, %d refused, want 1 and 1 (%v)", i, ok, taken, errs)
		}
	}
	ks, total, err := a.ListKeys(ctx, keystore.KeyFilter{}, keystore.Page{PerPage: -1})
	mustOK(t, err)
	if total != rounds || len(ks) != rounds {
		t.Fatalf("%d keys stored, want %d", total, rounds)
	}
}

// TestPostgresChangeLogGaplessInCommitOrder: writers on two nodes, some of
// them failing and rolling back, while a follower reads the log as a
// remote index would. The follower must never see a number before every
// smaller one is visible, and at the end the log is exactly 1..N.
func TestPostgresChangeLogGaplessInCommitOrder(t *testing.T) {
	t.Parallel()
	dsn, a, b := twoNodes(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	followerErr := make(chan error, 1)
	go func() {
		var last int64
		for {
			cs, err := a.ChangesSince(ctx, last, 1000)
			if err != nil {
				if ctx.Err() != nil {
					followerErr <- nil
				} else {
					followerErr <- err
				}
				return
			}
			for _, c := range cs {
				if c.Seq != last+1 {
					followerErr <- fmt.Errorf("follower saw change %d right after %d", c.Seq, last)
					return
				}
				last = c.Seq
			}
		}
	}()

	const writers, perWriter = 6, 12
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := map[int64]bool{}
	for w := range writers {
		s := []*keystore.Store{a, b}[w%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				name := fmt.Sprintf("u%d-%d", w, i)
				u, err := s.CreateUser(ctx, sys, keystore.UserInput{Username: ptr(name), Email: ptr(name + "@example.com")})
				if err != nil {
					t.Errorf("CreateUser(%s): %v", name, err)
					return
				}
				mu.Lock()
				if created[u.ID] {
					t.Errorf("user id %d handed out twice", u.ID)
				}
				created[u.ID] = true
				mu.Unlock()
				// A write that fails after its first statements: it
				// must leave no number behind.
				_, err = s.CreateUser(ctx, sys, keystore.UserInput{Username: ptr(name + "-dup"), Email: ptr(name + "@example.com")})
				wantField(t, err, "email", "has already been taken")
			}
		}()
	}
	wg.Wait()
	time.Sleep(50 * time.Millisecond) // let the follower read the tail
	cancel()
	if err := <-followerErr; err != nil {
		t.Fatal(err)
	}

	db, err := sql.Open("pgx", dsn)
	mustOK(t, err)
	defer db.Close()
	var n, lo, hi int64
	mustOK(t, db.QueryRow(`SELECT COUNT(*), MIN(seq), MAX(seq) FROM changes`).Scan(&n, &lo, &hi))
	if want := int64(writers * perWriter); n != want || lo != 1 || hi != want {
		t.Fatalf("changes: %d rows, seq %d..%d; want %d rows, 1..%d", n, lo, hi, want, want)
	}
	// The ids are the database's: every user row is one the writers got.
	var users int
	mustOK(t, db.QueryRow(`SELECT COUNT(*) FROM users`).Scan(&users))
	if users != len(created) {
		t.Fatalf("%d users in the database, writers got %d ids", users, len(created))
	}
	last, err := b.LastChange(context.Background())
	mustOK(t, err)
	if last != hi {
		t.Fatalf("LastChange = %d, want %d", last, hi)
	}
}

// TestPostgresListenChanges: a node listening is woken by another node's
// commit, stops with its context, and reports a broken connection.
func TestPostgresListenChanges(t *testing.T) {
	t.Parallel()
	dsn, a, b := twoNodes(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wakes := make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() { done <- a.ListenChanges(ctx, func() { wakes <- struct{}{} }) }()
	waitWake := func(what string) {
		t.Helper()
		select {
		case <-wakes:
		case err := <-done:
			t.Fatalf("%s: ListenChanges returned %v", what, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no wake-up", what)
		}
	}
	waitWake("listening") // one as soon as it listens
	if _, err := b.CreateUser(context.Background(), sys, keystore.UserInput{Username: ptr("alice"), Email: ptr("alice@example.com")}); err != nil {
		t.Fatal(err)
	}
	waitWake("after a commit on the other node")
	// A rolled-back write notifies nobody.
	_, err := b.CreateUser(context.Background(), sys, keystore.UserInput{Username: ptr("alice"), Email: ptr("x@example.com")})
	wantField(t, err, "username", "has already been taken")
	select {
	case <-wakes:
		t.Fatal("woken by a rolled-back write")
	case <-time.After(300 * time.Millisecond):
	}

	// Killing the listening connection ends ListenChanges with an error.
	db, err := sql.Open("pgx", dsn)
	mustOK(t, err)
	defer db.Close()
	var killed int
	mustOK(t, db.QueryRow(`SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'keygate' AND query LIKE 'LISTEN%'`).Scan(&killed))
	if killed != 1 {
		t.Fatalf("terminated %d listening connections, want 1", killed)
	}
	select {
	case err := <-done:
		if err == nil || errors.Is(err, context.Canceled) {
			t.Fatalf("ListenChanges after its connection died = %v, want the connection error", err)
		}
		wantIs(t, err, keystore.ErrUnavailable)
	case <-time.After(10 * time.Second):
		t.Fatal("ListenChanges did not notice its connection died")
	}

	// Listening again works; cancelling returns ctx.Err().
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { done <- a.ListenChanges(ctx2, func() { wakes <- struct{}{} }) }()
	waitWake("listening again")
	cancel2()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("ListenChanges after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ListenChanges did not stop with its context")
	}
}

// TestPostgresApplicationName: connections say they are keygate unless the
// DSN names them otherwise.
func TestPostgresApplicationName(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	named := dsn + "&application_name=keygate-node-b"
	s, err := keystore.Open(ctx, keystore.Config{DSN: named})
	mustOK(t, err)
	defer s.Close()
	mustOK(t, s.Ping(ctx))
	db, err := sql.Open("pgx", dsn)
	mustOK(t, err)
	defer db.Close()
	var n int
	mustOK(t, db.QueryRow(`SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'keygate-node-b'`).Scan(&n))
	if n == 0 {
		t.Fatal("no connection with the DSN's application_name")
	}
	s2, err := keystore.Open(ctx, keystore.Config{DSN: dsn})
	mustOK(t, err)
	defer s2.Close()
	mustOK(t, db.QueryRow(`SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'keygate'`).Scan(&n))
	if n == 0 {
		t.Fatal("no connection named keygate")
	}
}

func TestListenChangesSQLite(t *testing.T) {
	t.Parallel()
	sqliteOnly(t, "the SQLite store has no change notifications")
	e := newEnv(t)
	called := false
	err := e.s.ListenChanges(context.Background(), func() { called = true })
	wantIs(t, err, keystore.ErrListenUnsupported)
	if called {
		t.Fatal("wake called")
	}
}

// tcpProxy forwards a loopback port to the PostgreSQL test server and can
// cut the line, as a network partition would.
type tcpProxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	p := &tcpProxy{t: t, target: target}
	p.up()
	t.Cleanup(p.down)
	return p
}

func (p *tcpProxy) up() {
	addr := p.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
}

// down refuses new connections and breaks the open ones.
func (p *tcpProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestPostgresUnreachable: a store cut off from PostgreSQL reports reads
// and writes as ErrUnavailable (a 503, not a 500), and works again once the
// database is back.
func TestPostgresUnreachable(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	u, err := url.Parse(dsn)
	mustOK(t, err)
	proxy := newTCPProxy(t, u.Host)
	u.Host = proxy.addr
	q := u.Query()
	q.Set("connect_timeout", "5")
	u.RawQuery = q.Encode()
	ctx := context.Background()
	s, err := keystore.Open(ctx, keystore.Config{DSN: u.String()})
	mustOK(t, err)
	defer s.Close()
	alice, err := s.CreateUser(ctx, sys, keystore.UserInput{Username: ptr("alice"), Email: ptr("alice@example.com")})
	mustOK(t, err)

	proxy.down()
	_, err = s.CreateUser(ctx, sys, keystore.UserInput{Username: ptr("bob"), Email: ptr("bob@example.com")})
	wantIs(t, err, keystore.ErrUnavailable)
	_, err = s.User(ctx, alice.ID)
	wantIs(t, err, keystore.ErrUnavailable)
	_, _, err = s.ListUsers(ctx, keystore.UserFilter{}, keystore.Page{})
	wantIs(t, err, keystore.ErrUnavailable)
	done := make(chan error, 1)
	go func() { done <- s.ListenChanges(ctx, func() {}) }()
	select {
	case err := <-done:
		wantIs(t, err, keystore.ErrUnavailable)
	case <-time.After(20 * time.Second):
		t.Fatal("ListenChanges did not give up on an unreachable server")
	}

	proxy.up()
	_, err = s.CreateUser(ctx, sys, keystore.UserInput{Username: ptr("bob"), Email: ptr("bob@example.com")})
	mustOK(t, err)
	got, err := s.User(ctx, alice.ID)
	mustOK(t, err)
	if got.Username != "alice" {
		t.Fatalf("User = %+v", got)
	}
}

// TestPostgresConcurrentMigrations: nodes starting together on a new
// database all come up; the schema is created once.
func TestPostgresConcurrentMigrations(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	const nodes = 6
	errs := make(chan error, nodes)
	start := make(chan struct{})
	for range nodes {
		go func() {
			<-start
			s, err := keystore.Open(context.Background(), keystore.Config{DSN: dsn})
			if err == nil {
				_, err = s.EnsureAdmin(context.Background(), "kgpat-concurrent-start-0123456789")
				s.Close()
			}
			errs <- err
		}()
	}
	close(start)
	for range nodes {
		mustOK(t, <-errs)
	}
	s, err := keystore.Open(context.Background(), keystore.Config{DSN: dsn})
	mustOK(t, err)
	defer s.Close()
	current, latest, err := s.SchemaVersion(context.Background())
	mustOK(t, err)
	if current != latest || current < 3 {
		t.Fatalf("schema version %d, latest %d", current, latest)
	}
	_, total, err := s.ListUsers(context.Background(), keystore.UserFilter{}, keystore.Page{})
	mustOK(t, err)
	if total != 1 {
		t.Fatalf("%d users after 6 nodes bootstrapped root, want 1", total)
	}
}
