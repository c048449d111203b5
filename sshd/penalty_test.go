package sshd

import (
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// beforeKex reports whether err means the server hung up before the SSH
// version exchange (a refusal before key exchange), not an auth failure.
func beforeKex(err error) bool {
	return err != nil && !strings.Contains(err.Error(), "unable to authenticate")
}

// TestSharedSourceFailingClientDoesNotLockOutOthers: from one address (an
// office NAT, a CI pool), a client with an unregistered key fails 4 times a
// second for 15 s while a registered user logs in once a second from the
// same address: every one of those logins succeeds.
func TestSharedSourceFailingClientDoesNotLockOutOthers(t *testing.T) {
	t.Parallel()
	_, addr, cc := limitsServer(t, nil) // the defaults: 10 failures a minute
	bad := wrongKey(cc)
	const a = "127.0.0.3"
	const d = 15 * time.Second

	var failures, refusedBeforeKex atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the polling script with a key that does not work (yet)
		defer wg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			err := loginFrom(a, addr, bad)
			if err == nil {
				t.Error("an unregistered key logged in")
				return
			}
			failures.Add(1)
			if beforeKex(err) {
				refusedBeforeKex.Add(1)
			}
		}
	}()
	var logins, failed int
	var errs []string
	for start := time.Now(); time.Since(start) < d; time.Sleep(time.Second) {
		logins++
		if err := loginFrom(a, addr, cc); err != nil {
			failed++
			errs = append(errs, err.Error())
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("from %s: %d failing attempts (%d refused before key exchange), %d logins, %d failed", a, failures.Load(), refusedBeforeKex.Load(), logins, failed)
	if failures.Load() < 40 {
		t.Fatalf("only %d failing attempts in %v: the scenario did not happen", failures.Load(), d)
	}
	if failed > 0 {
		t.Fatalf("%d of %d logins of a registered user failed next to a failing client: %v", failed, logins, errs)
	}
}

// TestScannerRefusedBeforeKexOthersUnaffected: an address from which only
// failures come (a scanner) is refused before key exchange once its budget
// is spent, while a user at another address is unaffected; /metrics shows
// the penalised source. An exempt address (a known NAT) is never penalised.
func TestScannerRefusedBeforeKexOthersUnaffected(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s, addr, cc := limitsServer(t, func(c *Config) {
		c.Registry = reg
		c.PerSourceExempt = []netip.Prefix{netip.MustParsePrefix("127.0.0.7/32")}
	})
	bad := wrongKey(cc)
	const b, c, exempt = "127.0.0.4", "127.0.0.5", "127.0.0.7"

	refused, firstRefused := 0, -1
	for i := range 150 {
		err := loginFrom(b, addr, bad)
		if err == nil {
			t.Fatal("an unregistered key logged in")
		}
		if beforeKex(err) {
			refused++
			if firstRefused < 0 {
				firstRefused = i
			}
		}
		if i%25 == 0 {
			if err := loginFrom(c, addr, cc); err != nil {
				t.Fatalf("user at %s refused while %s scans: %v", c, b, err)
			}
		}
	}
	t.Logf("scanner at %s: %d of 150 attempts refused before key exchange, the first at attempt %d", b, refused, firstRefused+1)
	if firstRefused < 0 || firstRefused > 20 || refused < 120 {
		t.Fatalf("scanner: %d of 150 refused before key exchange (first at %d)", refused, firstRefused)
	}
	if got := refusals(s, refuseSourcePenalty); got < float64(refused) {
		t.Fatalf("per_source_penalty refusals = %v, want at least %d", got, refused)
	}
	// The scanner's own registered key is refused too: the address only failed.
	if err := loginFrom(b, addr, cc); !beforeKex(err) {
		t.Fatalf("a penalised source got through: %v", err)
	}
	if n := gaugeValue(t, reg, "keygate_ssh_sources_penalised"); n != 1 {
		t.Fatalf("keygate_ssh_sources_penalised = %v, want 1", n)
	}
	if n := gaugeValue(t, reg, "keygate_ssh_sources_trusted"); n != 1 {
		t.Fatalf("keygate_ssh_sources_trusted = %v, want 1 (%s)", n, c)
	}

	for i := range 40 {
		if err := loginFrom(exempt, addr, bad); beforeKex(err) {
			t.Fatalf("exempt source refused before key exchange at attempt %d: %v", i+1, err)
		}
	}
	if err := loginFrom(exempt, addr, cc); err != nil {
		t.Fatalf("exempt source: %v", err)
	}
}

// gaugeValue reads a gauge from a registry, as a scrape of /metrics would.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// TestGateTrust: the penalty state machine on a fixed clock.
func TestGateTrust(t *testing.T) {
	t.Parallel()
	g := &gate{startups: DefaultMaxStartups, perSource: -1, failBudget: 3, penaltyWindow: 30 * time.Second,
		trustWindow: time.Hour, rnd: func(int) int { return 99 }, sources: map[netip.Addr]*source{}}
	ip := netip.MustParseAddr("192.0.2.10")
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for range 3 {
		g.failed(ip, now)
	}
	if r := g.admit(ip, now, false).reason; r != refuseSourcePenalty {
		t.Fatalf("a source that only failed: %q", r)
	}
	if r := g.admit(ip, now.Add(10*time.Second), false).reason; r != "" {
		t.Fatalf("after one failure's refill: %q", r)
	}
	g.release(ip, true)
	// A success earns trust: failures no longer refuse it, for an hour.
	g.succeeded(ip, now)
	for range 50 {
		g.failed(ip, now)
	}
	if r := g.admit(ip, now.Add(time.Minute), false).reason; r != "" {
		t.Fatalf("a trusted source: %q", r)
	}
	g.release(ip, true)
	if tracked, penalised, trusted := g.penaltyState(now); tracked != 1 || penalised != 0 || trusted != 1 {
		t.Fatalf("penaltyState = %d, %d, %d", tracked, penalised, trusted)
	}
	// An hour on with only failures, it is a source that only fails again.
	later := now.Add(time.Hour + time.Second)
	for range 3 {
		g.failed(ip, later)
	}
	if r := g.admit(ip, later, false).reason; r != refuseSourcePenalty {
		t.Fatalf("trust expired, budget spent: %q", r)
	}
	// Prune keeps trusted sources, forgets idle untrusted ones.
	g.succeeded(ip, later)
	g.prune(later.Add(time.Hour - time.Second))
	if len(g.sources) != 1 {
		t.Fatal("a trusted source was pruned")
	}
	g.prune(later.Add(2 * time.Hour))
	if len(g.sources) != 0 {
		t.Fatal("an idle source with trust expired and budget refilled was kept")
	}
}
