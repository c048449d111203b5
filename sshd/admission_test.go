package sshd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	gossh "golang.org/x/crypto/ssh"
)

// admissionGate is a gate with the defaults (20:30:100, cap 10, budget 10,
// trust for an hour) whose random early drop always drops.
func admissionGate(tune func(*Config)) *gate {
	c := Config{PerSourceExempt: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}
	if tune != nil {
		tune(&c)
	}
	c.fillDefaults()
	g := newGate(&c)
	g.rnd = func(int) int { return 0 }
	return g
}

// TestGateTrustedSource: the admission state machine of a trusted source
// on a fixed clock, in the middle of random early drop and at full.
func TestGateTrustedSource(t *testing.T) {
	t.Parallel()
	g := admissionGate(nil)
	if g.perSource != 10 || g.reserve != 10 || g.trustFails != 10 {
		t.Fatalf("defaults: cap %d, reserve %d, trust fails %d", g.perSource, g.reserve, g.trustFails)
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	alice := netip.MustParseAddr("192.0.2.10")
	stranger := netip.MustParseAddr("192.0.2.20")
	exempt := netip.MustParseAddr("198.51.100.7")
	g.unauth = 50 // deep in random early drop: an untrusted source is dropped (rnd 0)

	try := func(ip netip.Addr, at time.Time) verdict {
		t.Helper()
		v := g.admit(ip, at, false)
		if v.reason == "" {
			g.release(ip, v.tracked)
		}
		return v
	}
	for _, ip := range []netip.Addr{alice, stranger, exempt} {
		if v := try(ip, now); v.reason != dropRandom {
			t.Fatalf("%v before any login: %+v", ip, v)
		}
	}
	g.succeeded(alice, now)
	if v := try(alice, now); v.reason != "" || v.spared != dropRandom || !v.tracked {
		t.Fatalf("trusted source: %+v, want admitted and spared random early drop", v)
	}
	if v := try(stranger, now); v.reason != dropRandom {
		t.Fatalf("another source is not trusted by alice's login: %+v", v)
	}
	// Below start nothing is spared: there was nothing to drop.
	g.unauth = 3
	if v := try(alice, now); v.reason != "" || v.spared != "" {
		t.Fatalf("below start: %+v", v)
	}
	g.unauth = 50

	// Nine failures after the success: still trusted. The tenth, with no
	// success between, ends it: a source that only fails.
	for range 9 {
		g.failed(alice, now)
	}
	if v := try(alice, now); v.reason != "" || v.spared != dropRandom {
		t.Fatalf("after 9 failures: %+v", v)
	}
	g.failed(alice, now)
	if v := try(alice, now); v.reason != dropRandom {
		t.Fatalf("after 10 failures and no success: %+v, want dropped at random", v)
	}
	// Not penalised, though: the trust window still covers it for the
	// penalty (a NAT's failing client), only the admission privilege is gone.
	g.unauth = 0
	if v := try(alice, now); v.reason != "" {
		t.Fatalf("below start after its failures: %+v", v)
	}
	g.unauth = 50
	// A success gives it back; the trust window's end takes it away.
	g.succeeded(alice, now)
	if v := try(alice, now.Add(59*time.Minute)); v.reason != "" || v.spared != dropRandom {
		t.Fatalf("a success later: %+v", v)
	}
	if v := try(alice, now.Add(time.Hour)); v.reason != dropRandom {
		t.Fatalf("an hour after the success: %+v", v)
	}

	// At full: unknown sources are refused; a trusted one uses the reserve,
	// within its per-source cap; at full plus the reserve, nobody.
	g.succeeded(alice, now)
	g.unauth = 95
	const held = 10
	for range held {
		v := g.admit(alice, now, false)
		if v.reason != "" || (g.unauth > 100 && v.spared != dropFull) {
			t.Fatalf("trusted source at %d in flight: %+v", g.unauth, v)
		}
	}
	if v := try(alice, now); v.reason != dropPerSourceCap {
		t.Fatalf("trusted source at its cap of 10: %+v", v)
	}
	if v := try(stranger, now); v.reason != dropFull {
		t.Fatalf("unknown source at %d in flight: %+v", g.unauth, v)
	}
	bob := netip.MustParseAddr("192.0.2.11")
	g.succeeded(bob, now)
	for range 5 {
		if v := g.admit(bob, now, false); v.reason != "" || v.spared != dropFull {
			t.Fatalf("second trusted source at %d in flight: %+v", g.unauth, v)
		}
	}
	if g.unauth != 110 {
		t.Fatalf("in flight %d, want 110", g.unauth)
	}
	carol := netip.MustParseAddr("192.0.2.12")
	g.succeeded(carol, now)
	if v := try(carol, now); v.reason != dropFull {
		t.Fatalf("trusted source with the reserve used up: %+v", v)
	}
	for range held {
		g.release(alice, true)
	}
	for range 5 {
		g.release(bob, true)
	}
	if g.unauth != 95 || g.sources[alice].unauth != 0 || g.sources[bob].unauth != 0 {
		t.Fatalf("after release: %d in flight, alice %d, bob %d", g.unauth, g.sources[alice].unauth, g.sources[bob].unauth)
	}
}

// TestGateTrustWithoutPenalty: with the penalty off, a success still earns
// the admission privilege and failures since it still end it (after the
// default budget, 10); with the trust window off, nothing is spared.
func TestGateTrustWithoutPenalty(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ip := netip.MustParseAddr("192.0.2.10")
	g := admissionGate(func(c *Config) { c.PerSourceMaxAuthFailures = -1 })
	g.unauth = 50
	g.succeeded(ip, now)
	if v := g.admit(ip, now, false); v.reason != "" || v.spared != dropRandom {
		t.Fatalf("penalty off, trusted: %+v", v)
	}
	g.release(ip, true)
	for range defaultFailBudget {
		g.failed(ip, now)
	}
	if v := g.admit(ip, now, false); v.reason != dropRandom {
		t.Fatalf("penalty off, %d failures since the success: %+v", defaultFailBudget, v)
	}

	g = admissionGate(func(c *Config) { c.PerSourceTrustWindow = -1 })
	g.unauth = 50
	g.succeeded(ip, now)
	if v := g.admit(ip, now, false); v.reason != dropRandom {
		t.Fatalf("trust window off: %+v", v)
	}
}

// TestGateEnter: a connection whose source is still unknown (a PROXY
// header to read) holds a slot up to full plus the reserve; admit then
// decides without counting it twice, and a refusal gives the slot back.
func TestGateEnter(t *testing.T) {
	t.Parallel()
	now := time.Now()
	g := admissionGate(func(c *Config) { c.MaxStartups = MaxStartups{Start: 2, Rate: 100, Full: 4} })
	if g.perSource != 1 || g.reserve != 1 {
		t.Fatalf("2:100:4: cap %d, reserve %d", g.perSource, g.reserve)
	}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for _, ip := range []netip.Addr{a, b} {
		if !g.enter() {
			t.Fatal("enter below start")
		}
		if v := g.admit(ip, now, true); v.reason != "" {
			t.Fatalf("below start: %+v", v)
		}
	}
	if g.unauth != 2 {
		t.Fatalf("in flight %d, want 2", g.unauth)
	}
	// At start with rate 100 an unknown source is dropped and its slot freed.
	if !g.enter() {
		t.Fatal("enter at start")
	}
	if v := g.admit(netip.MustParseAddr("192.0.2.3"), now, true); v.reason != dropRandom {
		t.Fatalf("unknown at start: %+v", v)
	}
	if g.unauth != 2 {
		t.Fatalf("a refused connection kept its slot: %d in flight", g.unauth)
	}
	g.unauth = 5 // full plus the reserve
	if g.enter() {
		t.Fatal("enter past full plus the reserve")
	}
}

// TestPerSourceCapRule: the per-source cap defaults to half of start, and
// Check refuses one above half of start (one address could then reach
// start alone); no cap stays an explicit choice.
func TestPerSourceCapRule(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		c    Config
		want int
	}{
		{Config{}, 10},
		{Config{MaxStartups: MaxStartups{Start: 10, Rate: 30, Full: 100}}, 5},
		{Config{MaxStartups: MaxStartups{Start: 7, Rate: 100, Full: 7}}, 3},
		{Config{MaxStartups: MaxStartups{Start: 100, Rate: 30, Full: 300}}, 50},
		{Config{MaxStartups: MaxStartups{Start: 1, Rate: 100, Full: 1}}, -1},
		{Config{PerSourceMaxStartups: -1}, -1},
		{Config{PerSourceMaxStartups: 10}, 10},
	} {
		if err := tc.c.Check(); err != nil {
			t.Errorf("%+v refused: %v", tc.c, err)
		}
		c := tc.c
		c.fillDefaults()
		if c.PerSourceMaxStartups != tc.want {
			t.Errorf("MaxStartups %v, PerSourceMaxStartups %d: cap %d, want %d", tc.c.MaxStartups, tc.c.PerSourceMaxStartups, c.PerSourceMaxStartups, tc.want)
		}
	}
	for _, c := range []Config{
		{PerSourceMaxStartups: 11},
		{MaxStartups: MaxStartups{Start: 10, Rate: 30, Full: 100}, PerSourceMaxStartups: 10},
		{MaxStartups: MaxStartups{Start: 7, Rate: 100, Full: 7}, PerSourceMaxStartups: 4},
		{MaxStartups: MaxStartups{Start: 1, Rate: 100, Full: 1}, PerSourceMaxStartups: 1},
	} {
		err := c.Check()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != "PerSourceMaxStartups" {
			t.Errorf("%v with per-source cap %d: got %v, want a ConfigError on PerSourceMaxStartups", c.MaxStartups, c.PerSourceMaxStartups, err)
		}
	}
}

// TestTrustedClientBehindProxySpared: behind a trusted PROXY-protocol
// proxy, the client named by the header is who is trusted: in the random
// early drop of 2:50:4 (the die fixed to drop) a client that logged in
// before is admitted and an unknown one dropped; at full, the trusted one
// gets the reserve. Real sockets, the x/crypto client.
func TestTrustedClientBehindProxySpared(t *testing.T) {
	t.Parallel()
	s, addr, cc := limitsServer(t, func(c *Config) {
		c.MaxStartups = MaxStartups{Start: 2, Rate: 50, Full: 4}
		c.ProxyProtocol = ProxyUse
		c.ProxyTrusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	var roll atomic.Int64 // 0: drop whenever in random early drop; 99: never
	s.gate.mu.Lock()
	s.gate.rnd = func(int) int { return int(roll.Load()) }
	s.gate.mu.Unlock()
	withHeader := func(src string) (net.Conn, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		_, err = fmt.Fprintf(c, "PROXY TCP4 %s 127.0.0.1 40000 22\r\n", src)
		return c, err
	}
	login := func(src string) error {
		raw, err := withHeader(src)
		if err != nil {
			return err
		}
		_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
		conn, chans, reqs, err := gossh.NewClientConn(raw, addr, cc)
		if err != nil {
			raw.Close()
			return err
		}
		gossh.NewClient(conn, chans, reqs).Close()
		return nil
	}
	hold := func(srcs ...string) {
		for _, src := range srcs {
			c, err := withHeader(src)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
		}
	}
	const known, unknown = "203.0.113.10", "203.0.113.20"
	if err := login(known); err != nil {
		t.Fatalf("first login: %v", err)
	}
	hold("198.51.100.1", "198.51.100.2")
	waitUnauth(t, s, 2)
	if err := login(unknown); err == nil {
		t.Fatal("an unknown client was admitted past start with the die set to drop")
	}
	if err := login(known); err != nil {
		t.Fatalf("a client that logged in before was dropped at start: %v", err)
	}
	roll.Store(99)
	hold("198.51.100.3", "198.51.100.4")
	waitUnauth(t, s, 4)
	roll.Store(0)
	if err := login(unknown); err == nil {
		t.Fatal("an unknown client was admitted at full")
	}
	if err := login(known); err != nil {
		t.Fatalf("a trusted client was refused at full with the reserve free: %v", err)
	}
	if got, want := refusals(s, refuseMaxStartups), 2.0; got != want {
		t.Fatalf("max_startups refusals = %v, want %v", got, want)
	}
	for reason, want := range map[string]float64{dropRandom: 1, dropFull: 1} {
		if got := counterOf(s.metrics.earlyDrops, reason); got != want {
			t.Errorf("early drops %s = %v, want %v", reason, got, want)
		}
		if got := counterOf(s.metrics.spared, reason); got != want {
			t.Errorf("spared %s = %v, want %v", reason, got, want)
		}
	}
}

// BenchmarkGateAdmit is the accept-time cost of admission: admit and
// release one connection, for an unknown source below start, a trusted
// source in random early drop, and over 10,000 sources.
func BenchmarkGateAdmit(b *testing.B) {
	now := time.Now()
	ip := netip.MustParseAddr("192.0.2.10")
	b.Run("unknown-below-start", func(b *testing.B) {
		g := admissionGate(nil)
		b.ReportAllocs()
		for b.Loop() {
			v := g.admit(ip, now, false)
			g.release(ip, v.tracked)
		}
	})
	b.Run("trusted-in-early-drop", func(b *testing.B) {
		g := admissionGate(nil)
		g.succeeded(ip, now)
		g.unauth = 50
		b.ReportAllocs()
		for b.Loop() {
			v := g.admit(ip, now, false)
			g.release(ip, v.tracked)
		}
	})
	b.Run("10k-sources", func(b *testing.B) {
		g := admissionGate(func(c *Config) { c.MaxStartups = MaxStartups{Start: 1 << 20, Rate: 30, Full: 1 << 20} })
		ips := make([]netip.Addr, 10000)
		for i := range ips {
			ips[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
			g.succeeded(ips[i], now)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			ip := ips[i%len(ips)]
			v := g.admit(ip, now, false)
			g.release(ip, v.tracked)
			i++
		}
	})
}

func counterOf(v *prometheus.CounterVec, label string) float64 {
	return testutil.ToFloat64(v.WithLabelValues(label))
}
