package sshd

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ktest "github.com/keygate/keygate/internal/testutil"

	"github.com/prometheus/client_golang/prometheus/testutil"
	gossh "golang.org/x/crypto/ssh"
)

// dialFrom dials addr from a local loopback address such as 127.0.0.2, so a
// test can play several source IPs.
func dialFrom(local, addr string, cc *gossh.ClientConfig) (*gossh.Client, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	conn, chans, reqs, err := gossh.NewClientConn(raw, addr, cc)
	if err != nil {
		raw.Close()
		return nil, err
	}
	_ = raw.SetDeadline(time.Time{})
	return gossh.NewClient(conn, chans, reqs), nil
}

// loginFrom authenticates from local and runs one greeting session.
func loginFrom(local, addr string, cc *gossh.ClientConfig) error {
	c, err := dialFrom(local, addr, cc)
	if err != nil {
		return err
	}
	defer c.Close()
	out, err := greet(c)
	if err != nil {
		return err
	}
	if !strings.Contains(out, "Welcome to keygate") {
		return errors.New("no greeting: " + out)
	}
	return nil
}

// wrongKey is a client config for a key the server does not know.
func wrongKey(cc *gossh.ClientConfig) *gossh.ClientConfig {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, _ := gossh.NewSignerFromKey(priv)
	bad := *cc
	bad.Auth = []gossh.AuthMethod{gossh.PublicKeys(s)}
	return &bad
}

func refusals(s *Server, reason string) float64 {
	return testutil.ToFloat64(s.metrics.preauthRefusals.WithLabelValues(reason))
}

// TestLoginGraceHardDeadline is the slowloris acceptance test: 200
// unauthenticated connections trickle bytes (never completing a version
// line); none outlives the login grace time by more than a small slack, and
// a legitimate client authenticates while all 200 are open. The revalidate
// tick is set to an hour, so only the connection deadline can cut them off.
func TestLoginGraceHardDeadline(t *testing.T) {
	t.Parallel()
	const grace = 2 * time.Second
	const slack = 1500 * time.Millisecond
	const n = 200
	_, addr, cc := limitsServer(t, func(c *Config) {
		c.LoginGraceTime = grace
		c.RevalidateInterval = time.Hour
		c.MaxStartups = MaxStartups{Start: 400, Rate: 100, Full: 400}
		c.PerSourceMaxStartups = -1
		c.PerSourceMaxAuthFailures = -1
	})
	var (
		opened sync.WaitGroup
		ended  sync.WaitGroup
		mu     sync.Mutex
		worst  time.Duration
		errs   []string
	)
	stop := make(chan struct{})
	defer close(stop)
	for range n {
		opened.Add(1)
		ended.Add(1)
		go func() {
			defer ended.Done()
			c, err := net.Dial("tcp", addr)
			start := time.Now()
			opened.Done()
			if err != nil {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
				return
			}
			defer c.Close()
			// Read the server's banner and then wait for the close.
			closed := make(chan struct{})
			go func() {
				_, _ = io.Copy(io.Discard, c)
				close(closed)
			}()
			line := []byte("SSH-2.0-slowloris" + strings.Repeat("x", 200))
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for j := 0; ; j++ {
				select {
				case <-closed:
					held := time.Since(start)
					mu.Lock()
					if held > worst {
						worst = held
					}
					mu.Unlock()
					return
				case <-stop:
					return
				case <-t.C:
					_, _ = c.Write(line[j%len(line) : j%len(line)+1])
				}
			}
		}()
	}
	opened.Wait()
	time.Sleep(200 * time.Millisecond) // all 200 are trickling
	if err := loginFrom("127.0.0.1", addr, cc); err != nil {
		t.Fatalf("legitimate client while %d slow connections are open: %v", n, err)
	}
	done := make(chan struct{})
	go func() { ended.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace + slack + 5*time.Second):
		t.Fatal("slow connections still open long after the login grace time")
	}
	if len(errs) > 0 {
		t.Fatalf("dial errors: %v", errs[:min(len(errs), 5)])
	}
	t.Logf("longest-held slow connection: %v (grace %v)", worst, grace)
	if worst > grace+slack {
		t.Fatalf("a trickling connection was held %v, past the grace time %v + %v", worst, grace, slack)
	}
}

func TestMaxStartupsRandomEarlyDrop(t *testing.T) {
	t.Parallel()
	g := &gate{startups: MaxStartups{Start: 10, Rate: 30, Full: 100}, sources: map[netip.Addr]*source{}}
	var roll int
	g.rnd = func(int) int { return roll }
	ip := netip.MustParseAddr("192.0.2.1")
	now := time.Now()
	admit := func() string { return g.admit(ip, now, false).reason }
	for range 10 {
		roll = 0
		if r := admit(); r != "" {
			t.Fatalf("below start: refused %q", r)
		}
	}
	// At start (10): drop with probability 30%.
	roll = 29
	if admit() != dropRandom {
		t.Fatal("at start, roll 29 < 30 must drop")
	}
	roll = 30
	if admit() != "" {
		t.Fatal("at start, roll 30 must be admitted")
	}
	// 11 in flight: p = 30 + 70*1/90 = 30.
	for g.unauth < 55 {
		g.unauth++
	}
	// 55 in flight: p = 30 + 70*45/90 = 65.
	roll = 64
	if admit() != dropRandom {
		t.Fatal("at 55, roll 64 must drop")
	}
	roll = 65
	if admit() != "" {
		t.Fatal("at 55, roll 65 must be admitted")
	}
	g.unauth = 100
	roll = 99
	if admit() != dropFull {
		t.Fatal("at full everything drops")
	}
	for _, tc := range []struct {
		in   string
		want MaxStartups
		bad  bool
	}{
		{"10:30:100", MaxStartups{10, 30, 100}, false},
		{"5", MaxStartups{5, 100, 5}, false},
		{"10:30", MaxStartups{}, true},
		{"20:30:10", MaxStartups{}, true},
		{"1:101:2", MaxStartups{}, true},
		{"a:b:c", MaxStartups{}, true},
		{"0", MaxStartups{}, true},
	} {
		got, err := ParseMaxStartups(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("ParseMaxStartups(%q) = %v, %v", tc.in, got, err)
		}
	}
}

// holdUnauth opens n TCP connections from local that never speak.
func holdUnauth(t *testing.T, local, addr string, n int) []net.Conn {
	t.Helper()
	var out []net.Conn
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func waitUnauth(t *testing.T, s *Server, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	// The gauge moves after both the global and the per-source admission.
	for s.gate.inFlight() != want || testutil.ToFloat64(s.metrics.unauthenticated) != float64(want) {
		if time.Now().After(deadline) {
			t.Fatalf("unauthenticated in flight = %d (gauge %v), want %d", s.gate.inFlight(),
				testutil.ToFloat64(s.metrics.unauthenticated), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func closeAll(cs []net.Conn) {
	for _, c := range cs {
		_ = c.Close()
	}
}

// TestMaxStartupsCapRefusesAndRecovers: past the global cap new
// connections are refused (and counted); when the load stops, logins work.
func TestMaxStartupsCapRefusesAndRecovers(t *testing.T) {
	t.Parallel()
	s, addr, cc := limitsServer(t, func(c *Config) {
		c.MaxStartups = MaxStartups{Start: 5, Rate: 100, Full: 5}
		c.PerSourceMaxStartups = -1
		c.PerSourceMaxAuthFailures = -1
	})
	held := holdUnauth(t, "127.0.0.1", addr, 5)
	waitUnauth(t, s, 5)
	for _, from := range []string{"127.0.0.1", "127.0.0.3"} {
		if err := loginFrom(from, addr, cc); err == nil {
			t.Fatalf("login from %s succeeded past MaxStartups", from)
		}
	}
	if got := refusals(s, refuseMaxStartups); got != 2 {
		t.Fatalf("max_startups refusals = %v, want 2", got)
	}
	closeAll(held)
	waitUnauth(t, s, 0)
	if err := loginFrom("127.0.0.1", addr, cc); err != nil {
		t.Fatalf("no recovery after the load stopped: %v", err)
	}
}

// TestPerSourceMaxStartups: one source cannot hold more than its share of
// unauthenticated connections; other sources are unaffected.
func TestPerSourceMaxStartups(t *testing.T) {
	t.Parallel()
	s, addr, cc := limitsServer(t, func(c *Config) {
		c.PerSourceMaxStartups = 3
		c.PerSourceMaxAuthFailures = -1
	})
	held := holdUnauth(t, "127.0.0.1", addr, 3)
	waitUnauth(t, s, 3)
	if err := loginFrom("127.0.0.1", addr, cc); err == nil {
		t.Fatal("a 4th unauthenticated connection from one source was admitted")
	}
	if got := refusals(s, refuseSourceStartups); got != 1 {
		t.Fatalf("per-source refusals = %v, want 1", got)
	}
	if err := loginFrom("127.0.0.2", addr, cc); err != nil {
		t.Fatalf("another source was refused: %v", err)
	}
	closeAll(held)
	waitUnauth(t, s, 0)
	if err := loginFrom("127.0.0.1", addr, cc); err != nil {
		t.Fatalf("no recovery: %v", err)
	}
}

// TestPerSourcePenaltyOnlyForFailures: a burst of 300 good logins from one
// host all succeed (good logins never spend the failure budget), while a
// source that fails repeatedly is refused — even with a good key — until its
// budget refills.
func TestPerSourcePenaltyOnlyForFailures(t *testing.T) {
	t.Parallel()
	const window = 9 * time.Second // a budget of 3 refills one failure every 3 s
	s, addr, cc := limitsServer(t, func(c *Config) {
		c.PerSourceMaxAuthFailures = 3
		c.PerSourcePenaltyWindow = window
	})
	bad := wrongKey(cc)

	var good atomic.Int64
	var goodErrs []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				if err := loginFrom("127.0.0.1", addr, cc); err != nil {
					mu.Lock()
					goodErrs = append(goodErrs, err.Error())
					mu.Unlock()
					continue
				}
				good.Add(1)
			}
		}()
	}
	// Meanwhile 127.0.0.2 fails until it is refused; once penalised, even
	// the right key is refused from there.
	penalised := make(chan error, 1)
	go func() {
		for range 20 {
			_ = loginFrom("127.0.0.2", addr, bad)
			if refusals(s, refuseSourcePenalty) > 0 {
				if err := loginFrom("127.0.0.2", addr, cc); err == nil {
					penalised <- errors.New("a penalised source logged in")
					return
				}
				penalised <- nil
				return
			}
		}
		penalised <- errors.New("a source failing 20 times was never refused")
	}()
	for i := range 300 {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if good.Load() != 300 {
		t.Fatalf("%d of 300 good logins succeeded; errors: %v", good.Load(), goodErrs[:min(len(goodErrs), 5)])
	}
	if err := <-penalised; err != nil {
		t.Fatal(err)
	}
	// The good host is still fine.
	if err := loginFrom("127.0.0.1", addr, cc); err != nil {
		t.Fatalf("good host refused: %v", err)
	}
	// Recovery once failures stop.
	deadline := time.Now().Add(window + 5*time.Second)
	for {
		err := loginFrom("127.0.0.2", addr, cc)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("penalised source never recovered: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestMaxAuthRequestsPerConnection: a connection that keeps making
// public-key requests is closed at the cap (x/crypto's own backstop is 128),
// below it logins work.
func TestMaxAuthRequestsPerConnection(t *testing.T) {
	t.Parallel()
	s, addr, cc := limitsServer(t, func(c *Config) {
		c.MaxAuthTries = 100 // so the request cap, not MaxAuthTries, ends it
		c.PerSourceMaxAuthFailures = -1
	})
	strangers := func(n int) []gossh.Signer {
		var out []gossh.Signer
		for range n {
			_, priv, _ := ed25519.GenerateKey(rand.Reader)
			sg, _ := gossh.NewSignerFromKey(priv)
			out = append(out, sg)
		}
		return out
	}
	v, _ := userSigners.Load(cc)
	mine := v.(gossh.Signer)
	// 15 unknown keys, then the right one: 17 requests, within the cap.
	ok := *cc
	ok.Auth = []gossh.AuthMethod{gossh.PublicKeys(append(strangers(15), mine)...)}
	if err := loginFrom("127.0.0.1", addr, &ok); err != nil {
		t.Fatalf("login within the request cap: %v", err)
	}
	// 25 unknown keys, then the right one: cut off at 20.
	many := *cc
	many.Auth = []gossh.AuthMethod{gossh.PublicKeys(append(strangers(25), mine)...)}
	if err := loginFrom("127.0.0.1", addr, &many); err == nil {
		t.Fatal("login after 25 refused keys succeeded past the request cap")
	}
	if got := refusals(s, refuseAuthRequests); got != 1 {
		t.Fatalf("max_auth_requests refusals = %v, want 1", got)
	}
}

// TestPerSourceLimitsSeeProxyClient: behind a trusted proxy the per-source
// cap applies to the client named by the PROXY header, not to the proxy.
func TestPerSourceLimitsSeeProxyClient(t *testing.T) {
	t.Parallel()
	s, addr, cc := limitsServer(t, func(c *Config) {
		c.PerSourceMaxStartups = 1
		c.ProxyProtocol = ProxyUse
		c.ProxyTrusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	withHeader := func(src string) (net.Conn, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		_, err = fmt.Fprintf(c, "PROXY TCP4 %s 127.0.0.1 40000 22\r\n", src)
		return c, err
	}
	held, err := withHeader("198.51.100.1")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	waitUnauth(t, s, 1)
	login := func(src string) error {
		raw, err := withHeader(src)
		if err != nil {
			return err
		}
		conn, chans, reqs, err := gossh.NewClientConn(raw, addr, cc)
		if err != nil {
			raw.Close()
			return err
		}
		gossh.NewClient(conn, chans, reqs).Close()
		return nil
	}
	if err := login("198.51.100.1"); err == nil {
		t.Fatal("a second unauthenticated connection of the same client (by PROXY header) was admitted")
	}
	if err := login("198.51.100.2"); err != nil {
		t.Fatalf("another client behind the same proxy was refused: %v", err)
	}
}

// TestProxyHeaderIgnoredByDefault: without --proxy-protocol a PROXY header
// is never trusted. x/crypto skips lines before the SSH version line (RFC
// 4253 4.2 allows them), so the handshake goes on with the TCP peer's
// address: nobody can claim another one.
func TestProxyHeaderIgnoredByDefault(t *testing.T) {
	t.Parallel()
	logs := &ktest.SyncBuffer{}
	_, addr, cc := limitsServer(t, func(c *Config) {
		c.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(raw, "PROXY TCP4 203.0.113.7 127.0.0.1 40000 22\r\n")
	conn, chans, reqs, err := gossh.NewClientConn(raw, addr, cc)
	if err != nil {
		t.Fatalf("handshake after an ignored header: %v", err)
	}
	gossh.NewClient(conn, chans, reqs).Close()
	l := logs.String()
	if strings.Contains(l, "203.0.113.7") {
		t.Fatalf("the server used the address of an untrusted PROXY header:\n%s", l)
	}
	if !strings.Contains(l, "remote=127.0.0.1:") {
		t.Fatalf("login not logged with the TCP peer's address:\n%s", l)
	}
}

func TestParseCIDRs(t *testing.T) {
	t.Parallel()
	got, err := ParseCIDRs(" 10.0.0.0/8, 192.0.2.1 ,::1,::ffff:198.51.100.0/120,")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "192.0.2.1/32", "::1/128", "198.51.100.0/24"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "host.example", "1.2.3"} {
		if _, err := ParseCIDRs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestGateSourceTable(t *testing.T) {
	t.Parallel()
	g := &gate{startups: MaxStartups{Start: 1 << 20, Rate: 30, Full: 1 << 20}, perSource: 1, failBudget: 1, penaltyWindow: time.Hour,
		rnd: func(int) int { return 99 }, sources: map[netip.Addr]*source{}}
	now := time.Now()
	// IPv6 sources count by /64: two addresses of one host share a slot.
	a := sourceKey(netip.MustParseAddr("2001:db8:1:2::1"))
	b := sourceKey(netip.MustParseAddr("2001:db8:1:2:ffff::9"))
	if a != b {
		t.Fatalf("one /64, two keys: %v %v", a, b)
	}
	if r := g.admit(a, now, false).reason; r != "" {
		t.Fatal(r)
	}
	if r := g.admit(b, now, false).reason; r != dropPerSourceCap {
		t.Fatalf("second address of the same /64: %q", r)
	}
	g.release(a, true)
	// A full table of live sources stops growing; new sources are admitted
	// untracked (only the global cap applies) and their failures dropped.
	for i := range maxTrackedSources {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if r := g.admit(ip, now, false).reason; r != "" {
			t.Fatal(r)
		}
	}
	extra := netip.MustParseAddr("192.0.2.1")
	v := g.admit(extra, now, false)
	if r, tracked := v.reason, v.tracked; r != "" || tracked {
		t.Fatalf("source beyond a full table: %q, tracked %v", r, tracked)
	}
	g.failed(extra, now)
	if len(g.sources) > maxTrackedSources {
		t.Fatalf("table grew to %d", len(g.sources))
	}
	// Pruning frees sources with nothing in flight and a full budget.
	for ip, st := range g.sources {
		if ip.Is4() {
			st.unauth = 0
		}
	}
	// A full table is pruned on demand, but at most once a second (a prune
	// walks the whole table).
	g.release(extra, false)
	if g.admit(extra, now, false).tracked {
		t.Fatal("a full table was pruned again within the same second")
	}
	later := now.Add(time.Second)
	g.release(extra, false)
	if !g.admit(extra, later, false).tracked {
		t.Fatal("a full table of idle sources was not pruned for a new source a second later")
	}
	g.release(extra, true)
	g.prune(later)
	if len(g.sources) != 0 {
		t.Fatalf("%d sources left after prune", len(g.sources))
	}
}

// inFlight is the number of unauthenticated connections.
func (g *gate) inFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.unauth
}
