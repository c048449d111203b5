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

// DefaultMaxStartups is 20:30:100: OpenSSH's rate and full (its default is
// 10:30:100), with start raised so that the default per-source cap, half of
// start, stays at 10 concurrent handshakes per address (a NAT, a CI pool)
// while one address alone never reaches start. A connection in its
// handshake costs keygate a goroutine, where it costs OpenSSH a process.
var DefaultMaxStartups = MaxStartups{Start: 20, Rate: 30, Full: 100}

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
	defaultFailBudget     = 10
)

// Early drops, by reason: the "reason" label of keygate_ssh_early_drops_total
// (all three) and of keygate_ssh_early_drops_spared_total (the last two: what
// a trusted source was spared).
const (
	dropPerSourceCap = "per_source_cap"
	dropRandom       = "random_early_drop"
	dropFull         = "full"
)

// preauthReason is the keygate_ssh_preauth_refusals_total reason of a
// refusal (that metric predates the early-drop reasons).
func preauthReason(reason string) string {
	switch reason {
	case dropPerSourceCap:
		return refuseSourceStartups
	case dropRandom, dropFull:
		return refuseMaxStartups
	}
	return reason
}

// gate admits unauthenticated connections: the global MaxStartups cap with
// random early drop, a concurrent cap per source IP, and a per-source budget
// of failed authentications.
//
// The per-source cap is at most half of MaxStartups' start (Config.check),
// so one address alone never pushes the server into random early drop.
//
// A source is trusted while a login succeeded from it within the trust
// window and fewer than its failure budget of failures followed that
// success. A trusted source is never randomly dropped, and when
// unauthenticated connections reach Full it may still use a reserve of a
// tenth of Full above it: under a distributed slowloris the people who log
// in keep logging in, while unknown sources are dropped as OpenSSH drops
// them. Its connections count like any other, and the per-source cap holds
// for it; a source that only fails after its success loses the privilege.
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
	reserve       int           // in flight above Full for trusted sources
	perSource     int           // concurrent unauthenticated per IP; <= 0: no cap
	failBudget    int           // failures per IP before refusal; <= 0: no penalty
	penaltyWindow time.Duration // the budget refills over this
	trustWindow   time.Duration // a success keeps a source unpenalised this long
	trustFails    int           // failures after a success that end its privileges at admission
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
	failsSince   int           // failures since the last success
}

func newGate(c *Config) *gate {
	trustFails := c.PerSourceMaxAuthFailures
	if trustFails <= 0 {
		trustFails = defaultFailBudget
	}
	return &gate{
		startups: c.MaxStartups, reserve: trustedReserve(c.MaxStartups), perSource: c.PerSourceMaxStartups,
		failBudget: c.PerSourceMaxAuthFailures, penaltyWindow: c.PerSourcePenaltyWindow,
		trustWindow: c.PerSourceTrustWindow, trustFails: trustFails, exempt: c.PerSourceExempt,
		rnd: rand.IntN, sources: map[netip.Addr]*source{},
	}
}

// trustedReserve is how far above Full trusted sources may go: a tenth of
// Full, at least one.
func trustedReserve(m MaxStartups) int { return max(1, (m.Full+9)/10) }

// defaultPerSource is the per-source cap when none is configured: half of
// start, so that one address alone stays below it; none when start is
// below 2 (the global cap is then the tighter one).
func defaultPerSource(m MaxStartups) int {
	if m.Start < 2 {
		return -1
	}
	return m.Start / 2
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

// trustedLocked reports whether st is spared early drop at now: a login
// succeeded from it within the trust window, and fewer than trustFails
// failures followed.
func (g *gate) trustedLocked(st *source, now time.Time) bool {
	return st != nil && now.Before(st.trustedUntil) && st.failsSince < g.trustFails
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
// penalised for failures, spared early drop) for the trust window.
func (g *gate) succeeded(ip netip.Addr, now time.Time) {
	if g.trustWindow <= 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.sourceLocked(ip, now)
	if st == nil {
		return
	}
	st.trustedUntil = now.Add(g.trustWindow)
	st.failsSince = 0
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

// enter takes an unauthenticated slot for a connection whose source is not
// known yet (its PROXY header is still to be read), up to Full plus the
// trusted reserve; false refuses it. admit decides on it once the source
// is known.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.unauth >= g.startups.Full+g.reserve {
		return false
	}
	g.unauth++
	return true
}

// verdict is admit's decision.
type verdict struct {
	reason  string // refused: an early-drop reason or refuseSourcePenalty
	spared  string // admitted although an untrusted source would have been dropped for this
	tracked bool   // a per-source slot was taken (release says so)
}

// admit decides on a new connection from ip at now: the penalty, the
// per-source cap, then MaxStartups, from which a trusted source is spared.
// held says whether the connection holds a slot from enter; a refused
// connection gives it back.
func (g *gate) admit(ip netip.Addr, now time.Time, held bool) verdict {
	g.mu.Lock()
	defer g.mu.Unlock()
	v := g.decideLocked(ip, now, held)
	switch {
	case v.reason != "" && held:
		g.unauth--
	case v.reason == "" && !held:
		g.unauth++
	}
	return v
}

func (g *gate) decideLocked(ip netip.Addr, now time.Time, held bool) verdict {
	st := g.sources[ip]
	if g.penalisedLocked(ip, st, now) {
		return verdict{reason: refuseSourcePenalty}
	}
	if st != nil && g.perSource > 0 && st.unauth >= g.perSource {
		return verdict{reason: dropPerSourceCap}
	}
	n := g.unauth // in flight besides this one
	if held {
		n--
	}
	m := g.startups
	var drop string
	switch {
	case n >= m.Full+g.reserve:
		return verdict{reason: dropFull} // the reserve is used up too
	case n >= m.Full:
		drop = dropFull
	case n >= m.Start:
		// OpenSSH's drop_connection: p rises from rate% at start to 100% at full.
		p := 100
		if m.Full > m.Start {
			p = m.Rate + (100-m.Rate)*(n-m.Start)/(m.Full-m.Start)
		}
		if g.rnd(100) < p {
			drop = dropRandom
		}
	}
	if drop != "" && !g.trustedLocked(st, now) {
		return verdict{reason: drop}
	}
	v := verdict{spared: drop}
	if st == nil {
		if st = g.newSourceLocked(ip, now); st == nil {
			return v // table full of live sources: only the global cap applies
		}
	}
	st.unauth++
	v.tracked = true
	return v
}

// release gives back an admitted connection's slots.
func (g *gate) release(ip netip.Addr, tracked bool) {
	g.mu.Lock()
	g.unauth--
	if st := g.sources[ip]; tracked && st != nil {
		st.unauth--
	}
	g.mu.Unlock()
}

// releaseEntered gives back a slot taken by enter (its PROXY header was bad).
func (g *gate) releaseEntered() {
	g.mu.Lock()
	g.unauth--
	g.mu.Unlock()
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

// failed spends one unit of ip's failure budget, and counts a failure
// since its last success.
func (g *gate) failed(ip netip.Addr, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failBudget <= 0 {
		if st := g.sources[ip]; st != nil {
			st.failsSince++ // no penalty: only a trusted source's failures matter
		}
		return
	}
	st := g.sourceLocked(ip, now)
	if st == nil {
		return
	}
	st.failsSince++
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
