package sshd

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// MaxStartups is OpenSSH's MaxStartups start:rate:full for unauthenticated
// connections in flight: below Start every connection is admitted; from
// Start on, a new one is dropped with a probability that rises linearly from
// Rate percent to 100 percent at Full; at Full every new one is dropped.
type MaxStartups struct{ Start, Rate, Full int }

// DefaultMaxStartups is OpenSSH's default, 10:30:100.
var DefaultMaxStartups = MaxStartups{Start: 10, Rate: 30, Full: 100}

// String formats m as start:rate:full.
func (m MaxStartups) String() string { return fmt.Sprintf("%d:%d:%d", m.Start, m.Rate, m.Full) }

// ParseMaxStartups reads "start:rate:full" or a single number (a hard cap,
// like OpenSSH's "MaxStartups 10").
func ParseMaxStartups(s string) (MaxStartups, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	nums := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return MaxStartups{}, fmt.Errorf("max-startups %q: want start:rate:full or a number", s)
		}
		nums[i] = n
	}
	var m MaxStartups
	switch len(nums) {
	case 1:
		m = MaxStartups{Start: nums[0], Rate: 100, Full: nums[0]}
	case 3:
		m = MaxStartups{Start: nums[0], Rate: nums[1], Full: nums[2]}
	default:
		return MaxStartups{}, fmt.Errorf("max-startups %q: want start:rate:full or a number", s)
	}
	if m.Full < 1 || m.Start > m.Full || m.Rate > 100 {
		return MaxStartups{}, fmt.Errorf("max-startups %q: need 1 <= full, start <= full, rate <= 100", s)
	}
	return m, nil
}

// Refusal reasons, as logged and as the "reason" label of
// keygate_ssh_preauth_refusals_total.
const (
	refuseMaxStartups     = "max_startups"
	refuseSourceStartups  = "per_source_max_startups"
	refuseSourcePenalty   = "per_source_penalty"
	refuseAuthRequests    = "max_auth_requests"
	refuseProxyHeader     = "proxy_protocol"
	maxTrackedSources     = 1 << 16
	defaultMaxAuthRequest = 20
)

// gate admits unauthenticated connections: the global MaxStartups cap with
// random early drop, a concurrent cap per source IP, and a per-source budget
// of failed authentications.
//
// The penalty is for sources that only fail. A source that spends its
// failure budget is refused before key exchange until the budget refills —
// unless someone logged in from it within the trust window: many people
// and machines share one address (an office NAT, a CI runner pool, a
// Kubernetes egress IP), and one client failing in a loop there must not
// lock out the others. Successful logins never spend the budget, and
// addresses in the exempt list are never penalised (OpenSSH's
// PerSourcePenaltyExemptList). MaxStartups and the per-source concurrency
// cap apply to every source, trusted and exempt ones included.
type gate struct {
	startups      MaxStartups
	perSource     int           // concurrent unauthenticated per IP; <= 0: no cap
	failBudget    int           // failures per IP before refusal; <= 0: no penalty
	penaltyWindow time.Duration // the budget refills over this
	trustWindow   time.Duration // a success keeps a source unpenalised this long
	exempt        []netip.Prefix
	rnd           func(n int) int

	mu        sync.Mutex
	unauth    int
	sources   map[netip.Addr]*source
	lastPrune time.Time
}

type source struct {
	unauth       int
	fails        *rate.Limiter // nil until the first failure
	trustedUntil time.Time     // the last success plus the trust window
}

func newGate(c *Config) *gate {
	return &gate{
		startups: c.MaxStartups, perSource: c.PerSourceMaxStartups,
		failBudget: c.PerSourceMaxAuthFailures, penaltyWindow: c.PerSourcePenaltyWindow,
		trustWindow: c.PerSourceTrustWindow, exempt: c.PerSourceExempt,
		rnd: rand.IntN, sources: map[netip.Addr]*source{},
	}
}

// penalisedLocked reports whether st (of ip) is refused for its failures
// at now: its budget is spent, nobody logged in from it lately, and it is
// not exempt.
func (g *gate) penalisedLocked(ip netip.Addr, st *source, now time.Time) bool {
	if st == nil || st.fails == nil || st.fails.TokensAt(now) >= 1 || now.Before(st.trustedUntil) {
		return false
	}
	return !g.isExempt(ip)
}

func (g *gate) isExempt(ip netip.Addr) bool {
	for _, p := range g.exempt {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// succeeded records a login from ip: the source is trusted (never
// penalised for failures) for the trust window.
func (g *gate) succeeded(ip netip.Addr, now time.Time) {
	if g.failBudget <= 0 || g.trustWindow <= 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.sourceLocked(ip, now)
	if st == nil {
		return
	}
	st.trustedUntil = now.Add(g.trustWindow)
}

// penaltyState counts the tracked sources, those penalised now and those
// trusted now (for /metrics).
func (g *gate) penaltyState(now time.Time) (tracked, penalised, trusted int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for ip, st := range g.sources {
		if g.penalisedLocked(ip, st, now) {
			penalised++
		}
		if now.Before(st.trustedUntil) {
			trusted++
		}
	}
	return len(g.sources), penalised, trusted
}

// admitGlobal takes a MaxStartups slot or returns the refusal reason.
func (g *gate) admitGlobal() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.startups
	if g.unauth >= m.Full {
		return refuseMaxStartups
	}
	if g.unauth >= m.Start {
		// OpenSSH's drop_connection: p rises from rate% at start to 100% at full.
		p := 100
		if m.Full > m.Start {
			p = m.Rate + (100-m.Rate)*(g.unauth-m.Start)/(m.Full-m.Start)
		}
		if g.rnd(100) < p {
			return refuseMaxStartups
		}
	}
	g.unauth++
	return ""
}

func (g *gate) releaseGlobal() {
	g.mu.Lock()
	g.unauth--
	g.mu.Unlock()
}

// admitSource takes a per-source slot for ip or returns the refusal reason.
// tracked says whether a slot was taken (releaseSource only then).
func (g *gate) admitSource(ip netip.Addr, now time.Time) (reason string, tracked bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.sources[ip]
	if g.penalisedLocked(ip, st, now) {
		return refuseSourcePenalty, false
	}
	if st != nil && g.perSource > 0 && st.unauth >= g.perSource {
		return refuseSourceStartups, false
	}
	if st = g.sourceLocked(ip, now); st == nil {
		return "", false // table full of live sources: only the global cap applies
	}
	st.unauth++
	return "", true
}

// sourceLocked returns ip's entry, added if there is none; nil when the
// table is full (see newSourceLocked).
func (g *gate) sourceLocked(ip netip.Addr, now time.Time) *source {
	if st := g.sources[ip]; st != nil {
		return st
	}
	return g.newSourceLocked(ip, now)
}

// newSourceLocked adds an entry for ip, or returns nil when the table is
// full of live sources, so an attacker with many addresses cannot grow it
// without bound. A full table is pruned at most once a second: pruning
// walks the whole table, which must not happen on every new connection.
func (g *gate) newSourceLocked(ip netip.Addr, now time.Time) *source {
	if len(g.sources) >= maxTrackedSources && now.Sub(g.lastPrune) >= time.Second {
		g.pruneLocked(now)
	}
	if len(g.sources) >= maxTrackedSources {
		return nil
	}
	st := &source{}
	g.sources[ip] = st
	return st
}

func (g *gate) releaseSource(ip netip.Addr) {
	g.mu.Lock()
	if st := g.sources[ip]; st != nil {
		st.unauth--
	}
	g.mu.Unlock()
}

// failed spends one unit of ip's failure budget.
func (g *gate) failed(ip netip.Addr, now time.Time) {
	if g.failBudget <= 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.sourceLocked(ip, now)
	if st == nil {
		return
	}
	if st.fails == nil {
		st.fails = rate.NewLimiter(rate.Every(g.penaltyWindow/time.Duration(g.failBudget)), g.failBudget)
	}
	st.fails.AllowN(now, 1)
}

// prune forgets sources with nothing in flight and a full budget.
func (g *gate) prune(now time.Time) {
	g.mu.Lock()
	g.pruneLocked(now)
	g.mu.Unlock()
}

func (g *gate) pruneLocked(now time.Time) {
	g.lastPrune = now
	for ip, st := range g.sources {
		if st.unauth <= 0 && (st.fails == nil || st.fails.TokensAt(now) >= float64(g.failBudget)) && !now.Before(st.trustedUntil) {
			delete(g.sources, ip)
		}
	}
}

// sourceKey is what per-source limits count by: the IPv4 address, or the
// /64 of an IPv6 address (one host usually holds a whole /64).
func sourceKey(ip netip.Addr) netip.Addr {
	if ip.Is6() && !ip.Is4In6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// addrIP is the IP of a TCP address (the zero Addr for anything else).
func addrIP(a net.Addr) netip.Addr {
	switch t := a.(type) {
	case *net.TCPAddr:
		if ip, ok := netip.AddrFromSlice(t.IP); ok {
			return ip.Unmap()
		}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
