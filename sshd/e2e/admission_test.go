package e2e

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/sshd"
)

// slowHolder keeps connections open from loopback addresses, each of which
// sent its SSH version line and nothing more — a slowloris script. The
// server keeps such a connection until the login grace time cuts it; the
// holder then opens another. A connection the server refuses at accept
// (closed before it sent its own version line) is counted and tried again
// shortly after, as a script would.
type slowHolder struct {
	live     atomic.Int64 // admitted and open now
	admitted atomic.Int64 // admitted in all
	refused  atomic.Int64 // closed by the server before its version line
	stop     chan struct{}
	wg       sync.WaitGroup
}

// holdSlow starts perAddr slots for each of locals against addr.
func holdSlow(addr string, locals []string, perAddr int) *slowHolder {
	h := &slowHolder{stop: make(chan struct{})}
	for _, local := range locals {
		for range perAddr {
			h.wg.Add(1)
			go h.slot(addr, local)
		}
	}
	return h
}

func (h *slowHolder) slot(addr, local string) {
	defer h.wg.Done()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	for {
		select {
		case <-h.stop:
			return
		default:
		}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			h.pause()
			continue
		}
		_, _ = io.WriteString(c, "SSH-2.0-slowloris_1.0\r\n")
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4)
		if n, _ := io.ReadFull(c, buf); n < 4 || string(buf) != "SSH-" {
			_ = c.Close()
			h.refused.Add(1)
			h.pause()
			continue
		}
		_ = c.SetReadDeadline(time.Time{})
		h.admitted.Add(1)
		h.live.Add(1)
		done := make(chan struct{})
		go func() {
			select {
			case <-h.stop:
			case <-done:
			}
			_ = c.Close()
		}()
		_, _ = io.Copy(io.Discard, c) // until the server (or stop) closes it
		close(done)
		h.live.Add(-1)
	}
}

func (h *slowHolder) pause() {
	select {
	case <-h.stop:
	case <-time.After(250 * time.Millisecond):
	}
}

// close stops every slot and waits for them.
func (h *slowHolder) close() {
	close(h.stop)
	h.wg.Wait()
}

// waitLive waits until n connections are held (false: not within 60 s).
func (h *slowHolder) waitLive(n int64) bool {
	return waitFor(60*time.Second, func() bool { return h.live.Load() >= n })
}

// graceForHolds is the login grace time of the admission tests: longer
// than they run, so that the counts they assert are not taken while the
// server cuts the slow connections and the holders open new ones.
const graceForHolds = 2 * time.Minute

// loopbacks returns n loopback addresses 127.0.<third>.1 … 127.0.<third>.n.
func loopbacks(third, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.0.%d.%d", third, i+1)
	}
	return out
}

// sshFrom runs the real ssh as git@ from the local address and reports
// whether it logged in (greeted), and whether it was refused before key
// exchange (the server closed the connection without a word).
func (e *env) sshFrom(t *testing.T, local string, keys []string) (ok, refusedBeforeKex bool, stderr string) {
	t.Helper()
	stdout, stderr, code := e.ssh(t, keys, "git", "-o", "BindAddress="+local)
	ok = code == 0 && strings.Contains(stdout, "Welcome to keygate")
	refusedBeforeKex = !ok && !strings.Contains(stderr, "Permission denied")
	return ok, refusedBeforeKex, stderr
}

// logins makes a login from each of locals and counts the successful ones
// and those refused before key exchange.
func (e *env) logins(t *testing.T, locals []string, keys []string) (ok, refused int, errs []string) {
	t.Helper()
	for _, local := range locals {
		good, before, stderr := e.sshFrom(t, local, keys)
		switch {
		case good:
			ok++
		case before:
			refused++
			errs = append(errs, strings.TrimSpace(stderr))
		default:
			errs = append(errs, strings.TrimSpace(stderr))
		}
	}
	return ok, refused, errs
}

// times is n times local.
func times(local string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = local
	}
	return out
}

// counter reads a counter of reg with label=value (0 when the series does
// not exist yet); it fails the test when the metric is not registered.
func counter(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func earlyDrops(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	return counter(t, reg, "keygate_ssh_early_drops_total", "reason", reason)
}

func spared(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	return counter(t, reg, "keygate_ssh_early_drops_spared_total", "reason", reason)
}

// TestOneAddressAtItsCapLocksOutNobody: with the defaults, one address
// opening 25 slow connections holds only its per-source share (10, half of
// MaxStartups' start), which never reaches start: every one of 40 logins
// from another address succeeds, and the attacker's extra connections are
// refused at its cap. (Before: with 10:30:100 and a cap of 10, 12 to 15 of
// the 40 were refused.)
func TestOneAddressAtItsCapLocksOutNobody(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	e := newEnvWith(t, func(c *sshd.Config) {
		c.Registry = reg
		c.LoginGraceTime = graceForHolds
	})
	uid, _ := e.createUser(t, "alice")
	key, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, uid, pub, "", "")

	const share = 10 // half of the default start, 20
	h := holdSlow(e.sshAddr, []string{"127.0.0.3"}, 25)
	defer h.close()
	if !h.waitLive(share) {
		t.Fatalf("the attacker holds %d slow connections, want %d", h.live.Load(), share)
	}
	// Its other 15 slots keep trying (ten times a second); they are refused.
	if !waitFor(30*time.Second, func() bool { return h.refused.Load() >= 30 }) {
		t.Fatalf("the attacker's extra connections: %d refused", h.refused.Load())
	}
	if n := h.live.Load(); n != share {
		t.Fatalf("one address holds %d unauthenticated connections, its cap is %d", n, share)
	}

	ok, refused, errs := e.logins(t, times("127.0.0.4", 40), []string{key})
	t.Logf("127.0.0.3 holding %d slow connections (%d of its attempts refused): %d of 40 logins from 127.0.0.4 succeeded, %d refused before key exchange",
		h.live.Load(), h.refused.Load(), ok, refused)
	if ok != 40 {
		t.Fatalf("%d of 40 logins from another address failed next to one address at its cap: %v", 40-ok, errs[:min(len(errs), 3)])
	}
	if n := earlyDrops(t, reg, "random_early_drop") + earlyDrops(t, reg, "full"); n != 0 {
		t.Fatalf("%v random early drops or full refusals with one address at its cap", n)
	}
	if n := earlyDrops(t, reg, "per_source_cap"); n < float64(h.refused.Load()) {
		t.Fatalf("per_source_cap early drops = %v, the attacker saw %d refusals", n, h.refused.Load())
	}
}

// TestKnownSourceKeepsLoggingInUnderDistributedAttack: 30 addresses hold
// 90 slow connections (3 each, within their cap), deep in random early
// drop (91 % at 90 of 20:30:100). A source from which alice logged in a
// moment before keeps logging in; sources nobody logged in from are
// dropped as OpenSSH would (each tries once: one that gets in is known
// from then on). The trusted source's own connections still
// count against its cap; once it only fails, it loses the exemption; and
// when the attack reaches full, a trusted source still gets in through the
// reserve while unknown ones are refused.
func TestKnownSourceKeepsLoggingInUnderDistributedAttack(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	e := newEnvWith(t, func(c *sshd.Config) {
		c.Registry = reg
		c.LoginGraceTime = graceForHolds
	})
	uid, _ := e.createUser(t, "alice")
	key, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, uid, pub, "", "")
	alice := []string{key}
	wrong, _ := e.sshKeygen(t, "ed25519", 0)
	const known = "127.0.0.50"

	if ok, _, stderr := e.sshFrom(t, known, alice); !ok {
		t.Fatalf("alice's first login from %s: %s", known, stderr)
	}

	attack := holdSlow(e.sshAddr, loopbacks(1, 30), 3)
	defer attack.close()
	if !attack.waitLive(90) {
		t.Fatalf("the attack holds %d slow connections, want 90", attack.live.Load())
	}

	okKnown, refusedKnown, errsKnown := e.logins(t, times(known, 30), alice)
	okUnknown, refusedUnknown, _ := e.logins(t, loopbacks(3, 30), alice)
	t.Logf("30 addresses holding %d slow connections: known source %d of 30 logins succeeded (%d refused before key exchange); 30 unknown sources %d of 30 (%d refused)",
		attack.live.Load(), okKnown, refusedKnown, okUnknown, refusedUnknown)
	if okKnown != 30 {
		t.Fatalf("%d of 30 logins from a source alice logged in from were refused under the attack: %v", 30-okKnown, errsKnown[:min(len(errsKnown), 3)])
	}
	// At 90 in flight an unknown source is dropped with probability 91 %:
	// fewer than 15 drops in 30 has a probability below 1e-11.
	if refusedUnknown < 15 {
		t.Fatalf("unknown sources were refused %d times in 30 at 90 of 20:30:100: random early drop is not applied to them", refusedUnknown)
	}
	if n := spared(t, reg, "random_early_drop"); n < 15 {
		t.Fatalf("keygate_ssh_early_drops_spared_total{reason=random_early_drop} = %v after 30 trusted logins at 91 %%", n)
	}
	if n := earlyDrops(t, reg, "random_early_drop"); n < float64(refusedUnknown) {
		t.Fatalf("random_early_drop early drops = %v, want at least the unknown source's %d", n, refusedUnknown)
	}

	// The trusted source's own slow connections count against its cap of 10.
	mine := holdSlow(e.sshAddr, []string{known}, 13)
	if !mine.waitLive(10) || !waitFor(30*time.Second, func() bool { return mine.refused.Load() >= 6 }) {
		t.Fatalf("trusted source: %d held, %d refused", mine.live.Load(), mine.refused.Load())
	}
	if n := mine.live.Load(); n != 10 {
		t.Fatalf("a trusted source holds %d unauthenticated connections, its cap is 10", n)
	}
	mine.close()

	// Push the attack to full from 10 more addresses: unknown sources are
	// refused (full), the known source still logs in (the reserve).
	flood := holdSlow(e.sshAddr, loopbacks(2, 10), 3)
	if !waitFor(60*time.Second, func() bool { return attack.live.Load()+flood.live.Load() >= 100 }) {
		t.Fatalf("the attack reached %d, not full (100)", attack.live.Load()+flood.live.Load())
	}
	if !waitFor(30*time.Second, func() bool { return earlyDrops(t, reg, "full") >= 10 }) {
		t.Fatalf("full early drops = %v with 100 in flight", earlyDrops(t, reg, "full"))
	}
	if n := attack.live.Load() + flood.live.Load(); n > 100 {
		t.Fatalf("unknown sources hold %d unauthenticated connections, past full (100)", n)
	}
	okFull, _, errsFull := e.logins(t, times(known, 10), alice)
	okUnknownFull, _, _ := e.logins(t, loopbacks(4, 10), alice)
	t.Logf("at full: known source %d of 10 logins, 10 unknown sources %d of 10", okFull, okUnknownFull)
	if okFull != 10 {
		t.Fatalf("at full, %d of 10 logins of a trusted source failed: %v", 10-okFull, errsFull[:min(len(errsFull), 3)])
	}
	if okUnknownFull != 0 {
		t.Fatalf("at full, unknown sources logged in %d times", okUnknownFull)
	}
	if n := spared(t, reg, "full"); n < 10 {
		t.Fatalf("keygate_ssh_early_drops_spared_total{reason=full} = %v after 10 trusted logins at full", n)
	}
	flood.close()
	if !waitFor(30*time.Second, func() bool { return attack.live.Load() >= 90 && attack.live.Load()+flood.live.Load() <= 90 }) {
		t.Fatalf("back to the 90 of the attack: %d", attack.live.Load()+flood.live.Load())
	}

	// The known source starts failing (a wrong key). While fewer than
	// --per-source-max-auth-failures (10) failures follow its last success,
	// it keeps the exemption: its 10 failing logins all reach
	// authentication.
	for i := range 10 {
		if ok, before, stderr := e.sshFrom(t, known, []string{wrong}); ok || before {
			t.Fatalf("failing login %d from the trusted source: logged in %v, refused before key exchange %v: %s", i+1, ok, before, stderr)
		}
	}
	// After 10 failures and no success it is a source that only fails: it
	// is dropped at random like any unknown one (not penalised: its
	// success is within the trust window).
	time.Sleep(500 * time.Millisecond) // the server counts a failure when it closes the connection
	_, refusedAfter, _ := e.logins(t, times(known, 20), []string{wrong})
	t.Logf("after 10 failures: %d of 20 further attempts from the once-trusted source refused before key exchange", refusedAfter)
	if refusedAfter < 10 {
		t.Fatalf("a source that only failed since its success kept its exemption: %d of 20 refused at 91 %%", refusedAfter)
	}
	if n := counter(t, reg, "keygate_ssh_preauth_refusals_total", "reason", "per_source_penalty"); n != 0 {
		t.Fatalf("the source with a success in the trust window was penalised (%v refusals)", n)
	}
}
