package sshd

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testutil"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// limitsServer starts a server whose index holds one user with one key and
// returns its address and a client config for that key.
func limitsServer(t *testing.T, tune func(*Config)) (*Server, string, *gossh.ClientConfig) {
	t.Helper()
	ix := authindex.New(nil)
	ix.InsertUser(&keystore.User{ID: 1, Username: "alice", Email: "alice@example.com", State: keystore.StateActive, CreatedAt: time.Now()})
	_, upriv, _ := ed25519.GenerateKey(rand.Reader)
	userSigner, err := gossh.NewSignerFromKey(upriv)
	if err != nil {
		t.Fatal(err)
	}
	ix.InsertKey(1, 1, fingerprint(userSigner.PublicKey()), keystore.UsageAuthAndSigning, 0)
	_, hpriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, _ := gossh.NewSignerFromKey(hpriv)
	cfg := Config{HostKeys: []gossh.Signer{hostSigner}, Auth: ix, Projects: nopProjects{},
		RevalidateInterval: 20 * time.Millisecond}
	if tune != nil {
		tune(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	cc := &gossh.ClientConfig{User: "git", Auth: []gossh.AuthMethod{gossh.PublicKeys(userSigner)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second}
	userSigners.Store(cc, userSigner)
	return s, ln.Addr().String(), cc
}

// userSigners maps a limitsServer client config to its user's key.
var userSigners sync.Map

func dial(t *testing.T, addr string, cc *gossh.ClientConfig) *gossh.Client {
	t.Helper()
	c, err := gossh.Dial("tcp", addr, cc)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// greet runs a session with no command and returns its output.
func greet(c *gossh.Client) (string, error) {
	sess, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	out, err := sess.Output("")
	return string(out), err
}

func TestMaxSessionsPerConnection(t *testing.T) {
	t.Parallel()
	_, addr, cc := limitsServer(t, nil)
	c := dial(t, addr, cc)
	// Sessions that requested nothing yet stay open.
	var open []gossh.Channel
	for i := range defaultMaxSessions {
		ch, reqs, err := c.OpenChannel("session", nil)
		if err != nil {
			t.Fatalf("session %d: %v", i+1, err)
		}
		go gossh.DiscardRequests(reqs)
		open = append(open, ch)
	}
	_, _, err := c.OpenChannel("session", nil)
	var oc *gossh.OpenChannelError
	if !errors.As(err, &oc) || oc.Reason != gossh.ResourceShortage || oc.Message != "too many sessions" {
		t.Fatalf("11th session: err = %v, want ResourceShortage \"too many sessions\"", err)
	}
	// Another connection has its own budget.
	if out, err := greet(dial(t, addr, cc)); err != nil || !strings.Contains(out, "Welcome to keygate, @alice!") {
		t.Fatalf("second connection: %q, %v", out, err)
	}
	// Closing a session frees its slot.
	_ = open[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := greet(c)
		if err == nil && strings.Contains(out, "Welcome") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not freed: %q, %v", out, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPanicInHandlerClosesOnlyItsConnection(t *testing.T) {
	t.Parallel()
	logs := &testutil.SyncBuffer{}
	var panicOn atomic.Value // string: handler name that panics
	panicOn.Store("")
	_, addr, cc := limitsServer(t, func(c *Config) {
		c.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.testPanic = func(where string) {
			if where == panicOn.Load().(string) {
				panic("injected panic in " + where)
			}
		}
	})
	bystander := dial(t, addr, cc)
	if _, err := greet(bystander); err != nil {
		t.Fatal(err)
	}
	trigger := map[string]func(c *gossh.Client){
		"session": func(c *gossh.Client) { _, _ = greet(c) },
		"channel session": func(c *gossh.Client) {
			_, _, _ = c.OpenChannel("session", nil)
		},
		"channel direct-tcpip": func(c *gossh.Client) {
			_, _ = c.Dial("tcp", "127.0.0.1:1")
		},
		"request keygate-test@example.com": func(c *gossh.Client) {
			_, _, _ = c.SendRequest("keygate-test@example.com", true, nil)
		},
	}
	for where, do := range trigger {
		panicOn.Store(where)
		victim := dial(t, addr, cc)
		done := make(chan error, 1)
		go func() { done <- victim.Wait() }()
		do(victim)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: connection not closed after panic", where)
		}
		panicOn.Store("")
		if out, err := greet(bystander); err != nil || !strings.Contains(out, "Welcome") {
			t.Fatalf("%s: other connection broke: %q, %v", where, out, err)
		}
		if out, err := greet(dial(t, addr, cc)); err != nil || !strings.Contains(out, "Welcome") {
			t.Fatalf("%s: server stopped accepting: %q, %v", where, out, err)
		}
		requirePanicLogged(t, logs, where)
	}
	// A panic during authentication fails only that handshake.
	for _, where := range []string{"auth query", "auth"} {
		panicOn.Store(where)
		if c, err := gossh.Dial("tcp", addr, cc); err == nil {
			_ = c.Close()
			t.Fatalf("%s: handshake succeeded despite the panic", where)
		}
		panicOn.Store("")
		if out, err := greet(bystander); err != nil || !strings.Contains(out, "Welcome") {
			t.Fatalf("%s: other connection broke: %q, %v", where, out, err)
		}
		if out, err := greet(dial(t, addr, cc)); err != nil || !strings.Contains(out, "Welcome") {
			t.Fatalf("%s: server stopped accepting: %q, %v", where, out, err)
		}
		requirePanicLogged(t, logs, where)
	}
}

func requirePanicLogged(t *testing.T, logs *testutil.SyncBuffer, where string) {
	t.Helper()
	l := logs.String()
	if !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "injected panic in "+where+"\"") ||
		!strings.Contains(l, "runtime/debug.Stack") {
		t.Fatalf("%s: panic not logged with a stack:\n%s", where, l)
	}
}

// stallConn holds back everything it reads while stalled, like a client
// that stopped reading.
type stallConn struct {
	net.Conn
	mu      sync.Mutex
	stalled bool
	resume  chan struct{}
}

func (c *stallConn) stall() {
	c.mu.Lock()
	c.stalled = true
	c.mu.Unlock()
}

func (c *stallConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	stalled := c.stalled
	c.mu.Unlock()
	if stalled {
		<-c.resume
	}
	return n, err
}

func (s *Server) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func TestKeepAlives(t *testing.T) {
	t.Parallel()
	const interval = 50 * time.Millisecond
	s, addr, cc := limitsServer(t, func(c *Config) {
		c.KeepAliveInterval = interval
		c.KeepAliveCountMax = 3
	})

	// A live client answers the keepalives and stays connected.
	live := dial(t, addr, cc)
	time.Sleep(10 * interval)
	if out, err := greet(live); err != nil || !strings.Contains(out, "Welcome") {
		t.Fatalf("live client cut off: %q, %v", out, err)
	}

	// A client that stops reading is closed after CountMax intervals.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	sc := &stallConn{Conn: raw, resume: make(chan struct{})}
	conn, chans, reqs, err := gossh.NewClientConn(sc, addr, cc)
	if err != nil {
		t.Fatal(err)
	}
	stalled := gossh.NewClient(conn, chans, reqs)
	defer stalled.Close()
	if _, err := greet(stalled); err != nil {
		t.Fatal(err)
	}
	if got := s.openConns(); got != 2 {
		t.Fatalf("open connections = %d, want 2", got)
	}
	sc.stall()
	deadline := time.Now().Add(5 * time.Second)
	for s.openConns() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("stalled client still connected (%d open)", s.openConns())
		}
		time.Sleep(interval / 2)
	}
	close(sc.resume)
	done := make(chan error, 1)
	go func() { done <- stalled.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stalled client did not see its connection closed")
	}
	if out, err := greet(live); err != nil || !strings.Contains(out, "Welcome") {
		t.Fatalf("live client cut off: %q, %v", out, err)
	}
}
