package sshd

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	gossh "golang.org/x/crypto/ssh"

	ktest "github.com/keygate/keygate/internal/testutil"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// withBanner returns a copy of cc that records the banners it is sent.
func withBanner(cc *gossh.ClientConfig) (*gossh.ClientConfig, func() string) {
	var mu sync.Mutex
	var b strings.Builder
	c := *cc
	c.BannerCallback = func(msg string) error {
		mu.Lock()
		b.WriteString(msg)
		mu.Unlock()
		return nil
	}
	return &c, func() string {
		mu.Lock()
		defer mu.Unlock()
		return b.String()
	}
}

// TestPrincipalConnectionCap: a user holds at most MaxConnectionsPerPrincipal
// authenticated connections; one more is refused with a banner naming the
// limit (and it does not count as a failed login of its source), another
// user is unaffected, and closing connections gives the slots back.
func TestPrincipalConnectionCap(t *testing.T) {
	t.Parallel()
	const max = 3
	s, addr, cc := limitsServer(t, func(c *Config) {
		c.MaxConnectionsPerPrincipal = max
		c.PerSourceMaxAuthFailures = 2 // a refusal counted as a failure would lock the source out
	})
	// bob, a second user.
	ix := s.cfg.Auth.(*authindex.Index)
	ix.InsertUser(&keystore.User{ID: 2, Username: "bob", Email: "bob@example.com", State: keystore.StateActive, CreatedAt: time.Now()})
	_, bpriv, _ := ed25519.GenerateKey(rand.Reader)
	bobSigner, _ := gossh.NewSignerFromKey(bpriv)
	ix.InsertKey(2, 2, fingerprint(bobSigner.PublicKey()), keystore.UsageAuthAndSigning, 0)
	bob := *cc
	bob.Auth = []gossh.AuthMethod{gossh.PublicKeys(bobSigner)}

	var alice []*gossh.Client
	for i := range max {
		c, err := dialFrom("127.0.0.1", addr, cc)
		if err != nil {
			t.Fatalf("connection %d of %d: %v", i+1, max, err)
		}
		alice = append(alice, c)
	}
	// Refused again and again from a fresh source: each with the banner,
	// none before key exchange (the credential was good: no penalty).
	for i := range 5 {
		ccb, banner := withBanner(cc)
		c, err := dialFrom("127.0.0.31", addr, ccb)
		if err == nil {
			c.Close()
			t.Fatalf("connection %d over the cap of %d accepted", max+1+i, max)
		}
		if beforeKex(err) {
			t.Fatalf("attempt %d over the cap refused before key exchange: the source was penalised: %v", i+1, err)
		}
		want := "keygate: connection limit reached: @alice already has 3 SSH connections open, the most one account may have; close some and try again"
		if got := banner(); !strings.Contains(got, want) {
			t.Fatalf("banner = %q, want %q", got, want)
		}
	}
	if got := testutil.ToFloat64(s.metrics.principalRefusals.WithLabelValues(limitConnections)); got != 5 {
		t.Fatalf("keygate_ssh_principal_limit_refusals_total{limit=connections} = %v, want 5", got)
	}
	if got := testutil.ToFloat64(s.metrics.principalRefusals.WithLabelValues(limitGitProcesses)); got != 0 {
		t.Fatalf("git_processes refusals = %v, want 0", got)
	}
	// Another principal is unaffected.
	if err := loginFrom("127.0.0.1", addr, &bob); err != nil {
		t.Fatalf("bob refused while alice is at her cap: %v", err)
	}
	// A closed connection gives its slot back.
	alice[0].Close()
	if !ktest.Poll(5*time.Second, 20*time.Millisecond, func() bool { return loginFrom("127.0.0.1", addr, cc) == nil }) {
		t.Fatal("a slot was not given back when a connection closed")
	}
	// (the server closes the login's connection a moment after the client)
	if !ktest.Poll(5*time.Second, 20*time.Millisecond, func() bool { conns, _ := s.caps.inUse(principalKey{id: 1}); return conns == max-1 }) {
		conns, _ := s.caps.inUse(principalKey{id: 1})
		t.Fatalf("alice holds %d connection slots with %d connections open", conns, max-1)
	}
	// No leak: once every connection is closed, nothing is held.
	for _, c := range alice[1:] {
		c.Close()
	}
	if !ktest.Poll(5*time.Second, 20*time.Millisecond, func() bool { return s.caps.tracked() == 0 }) {
		conns, gits := s.caps.inUse(principalKey{id: 1})
		t.Fatalf("after every connection closed, %d principals are tracked (alice: %d connections, %d git)", s.caps.tracked(), conns, gits)
	}
}

// TestPrincipalCapsUnit: the counting on its own — deploy keys and users
// are distinct principals, a slot taken for a closed connection is never
// held, release is idempotent, a negative cap is no cap.
func TestPrincipalCapsUnit(t *testing.T) {
	t.Parallel()
	p := &principalCaps{maxConns: 1, maxGit: 1, use: map[principalKey]*principalUse{}}
	user, deploy := principalOf(&Identity{UserID: 7}), principalOf(&Identity{DeployKeyID: 7})
	if user == deploy {
		t.Fatal("user 7 and deploy key 7 are the same principal")
	}
	if principalOf(&Identity{UserID: 7, CAID: 3}) != user {
		t.Fatal("a certificate login of user 7 is another principal than their key logins")
	}
	a, b := &connection{}, &connection{}
	if !p.takeConn(a, user) || p.takeConn(b, user) || !p.takeConn(b, deploy) {
		t.Fatal("takeConn: want one slot per principal")
	}
	p.releaseConn(a)
	p.releaseConn(a)
	if conns, _ := p.inUse(user); conns != 0 {
		t.Fatalf("user holds %d after release", conns)
	}
	// Closed before its login finished: no slot is held for it.
	closed := &connection{}
	p.releaseConn(closed)
	if !p.takeConn(closed, user) {
		t.Fatal("a closed connection was refused")
	}
	if conns, _ := p.inUse(user); conns != 0 {
		t.Fatalf("a closed connection holds a slot (%d)", conns)
	}
	rel, ok := p.takeGit(user)
	if !ok {
		t.Fatal("first git refused")
	}
	if _, ok := p.takeGit(user); ok {
		t.Fatal("second git over a cap of 1 accepted")
	}
	rel()
	rel()
	if _, gits := p.inUse(user); gits != 0 {
		t.Fatalf("gits = %d after a double release", gits)
	}
	p.releaseConn(b)
	if p.tracked() != 0 {
		t.Fatalf("%d principals tracked with nothing held", p.tracked())
	}
	unlimited := &principalCaps{maxConns: -1, maxGit: -1, use: map[principalKey]*principalUse{}}
	for range 1000 {
		if !unlimited.takeConn(&connection{}, user) {
			t.Fatal("a negative cap refused")
		}
		if _, ok := unlimited.takeGit(user); !ok {
			t.Fatal("a negative git cap refused")
		}
	}
}
