package sshd

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
)

// connection is a live connection watched for login grace and revocation.
type connection struct {
	net.Conn
	ctx       ssh.Context
	started   time.Time
	once      sync.Once
	srv       *Server
	ip        netip.Addr
	keepalive bool        // keepalives started (revalidate loop only)
	closing   atomic.Bool // revalidation is closing it

	srcTracked bool        // holds a per-source slot
	graceEnd   time.Time   // the login-grace deadline
	authed     atomic.Bool // authenticated, or closed: pre-auth slots released
	authFailed atomic.Bool
	authReqs   atomic.Int32
	kexScan    kexScanner    // the client's cleartext, until kexDone (noauth.go)
	kexDone    atomic.Bool   // the client finished a key exchange
	capped     atomic.Bool   // a login refused at a per-principal cap
	principal  principalHold // its per-principal slot, under Server.caps.mu

	// Channel slots, under slotMu: open session channels, open forwards,
	// refusals audited so far, and the open git sessions' and forwards'
	// grants (decide.go).
	slotMu   sync.Mutex
	sessions int
	forwards int
	refusals int
	grants   map[*grant]struct{}

	hostKeysSent atomic.Bool  // hostkeys-00@openssh.com announced
	proofs       atomic.Int32 // hostkeys-prove-00 requests being answered
	proved       atomic.Bool  // one was answered

	// The client's version line ("SSH-2.0-libssh2_1.10.0"), read off the
	// first bytes, for refusal logs.
	versionDone atomic.Bool
	versionBuf  []byte
	versionMu   sync.Mutex
	proofDone   chan struct{} // signalled when one is answered
}

func (c *connection) Close() error {
	c.once.Do(func() {
		c.srv.mu.Lock()
		delete(c.srv.conns, c)
		c.srv.mu.Unlock()
		c.srv.metrics.connections.Dec()
		c.srv.caps.releaseConn(c)
		if c.authed.CompareAndSwap(false, true) { // slots released once
			c.srv.releasePreauth(c)
			now := c.srv.cfg.Now()
			graceOver := now.Sub(c.started) >= c.srv.cfg.LoginGraceTime
			if graceOver {
				c.srv.log.Info("login grace time exceeded", "remote", c.Conn.RemoteAddr().String())
			}
			if graceOver || c.authFailed.Load() || c.noauth() {
				c.srv.gate.failed(c.ip, now)
			}
		}
	})
	return c.Conn.Close()
}

// authenticated ends the pre-auth phase: the login-grace deadline is lifted
// and the MaxStartups and per-source slots are released.
func (c *connection) authenticated() {
	if !c.authed.CompareAndSwap(false, true) {
		return
	}
	_ = c.Conn.SetDeadline(time.Time{})
	c.srv.releasePreauth(c)
	c.srv.gate.succeeded(c.ip, c.srv.cfg.Now())
}

func (c *connection) isAuthed() bool { return c.authed.Load() }

// Read records the client's version line, and whether it finished a key
// exchange, on the way through.
func (c *connection) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.kexDone.Load() {
		c.scanKex(p[:n])
	}
	if n > 0 && !c.versionDone.Load() {
		c.versionMu.Lock()
		for _, b := range p[:n] {
			if b == '\n' || len(c.versionBuf) >= 255 {
				c.versionDone.Store(true)
				break
			}
			if b != '\r' {
				c.versionBuf = append(c.versionBuf, b)
			}
		}
		c.versionMu.Unlock()
	}
	return n, err
}

// clientVersion is the client's version line as far as it was read.
func (c *connection) clientVersion() string {
	c.versionMu.Lock()
	defer c.versionMu.Unlock()
	return strings.ToValidUTF8(string(c.versionBuf), "?")
}

// Deadlines set by others (gliderlabs resets the deadline on every read and
// write) never extend the login-grace deadline before authentication.
func (c *connection) bound(t time.Time) time.Time {
	if c.authed.Load() || (!t.IsZero() && t.Before(c.graceEnd)) {
		return t
	}
	return c.graceEnd
}

func (c *connection) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.bound(t)) }

func (c *connection) SetReadDeadline(t time.Time) error { return c.Conn.SetReadDeadline(c.bound(t)) }

func (c *connection) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.bound(t))
}

// countAuthRequest counts one public-key request; past MaxAuthRequests it
// closes the connection and returns false.
func (c *connection) countAuthRequest() bool {
	n := c.authReqs.Add(1)
	if int(n) <= c.srv.cfg.MaxAuthRequests {
		return true
	}
	if int(n) == c.srv.cfg.MaxAuthRequests+1 {
		c.srv.preauthRefused(refuseAuthRequests, c.Conn.RemoteAddr())
		c.authFailed.Store(true)
		go c.Close() // not under x/crypto's feet: it sees the closed conn next
	}
	return false
}

func (s *Server) releasePreauth(c *connection) {
	s.gate.release(c.ip, c.srcTracked)
	s.metrics.unauthenticated.Dec()
}

// preauthRefused counts a refusal and logs it; under a flood the log is
// sampled (the metric counts every refusal).
func (s *Server) preauthRefused(reason string, remote net.Addr) {
	s.metrics.preauthRefusals.WithLabelValues(reason).Inc()
	if s.refusalLog.Allow() {
		s.log.Warn("ssh connection refused", "reason", reason, "remote", remote.String())
	}
}

// earlyDrop counts a connection refused at admission (an early-drop reason
// or the penalty) and logs it, sampled like preauthRefused, with its
// precise reason.
func (s *Server) earlyDrop(reason string, remote net.Addr) {
	if reason != refuseSourcePenalty {
		s.metrics.earlyDrops.WithLabelValues(reason).Inc()
	}
	s.metrics.preauthRefusals.WithLabelValues(preauthReason(reason)).Inc()
	if s.refusalLog.Allow() {
		s.log.Warn("ssh connection refused", "reason", reason, "remote", remote.String())
	}
}

// trackConn admits a new connection (MaxStartups, PROXY header, per-source
// limits) and arms the login-grace deadline; nil refuses it.
func (s *Server) trackConn(ctx ssh.Context, conn net.Conn) net.Conn {
	started := s.cfg.Now()
	// The deadline bounds everything before authentication, also a client
	// that trickles a byte at a time; authenticated() lifts it. It is the
	// socket's, in the operating system's time (gliderlabs sets deadlines
	// in that time too); every decision uses cfg.Now.
	graceEnd := time.Now().Add(s.cfg.LoginGraceTime)
	_ = conn.SetDeadline(graceEnd)
	pc, held := conn, false
	if s.cfg.ProxyProtocol != ProxyReject {
		// The source is in the PROXY header: reading it holds a slot, so
		// that proxies' connections are bounded too.
		if !s.gate.enter() {
			s.earlyDrop(dropFull, conn.RemoteAddr())
			return nil
		}
		held = true
		var err error
		if pc, err = s.proxyConn(conn); err != nil {
			s.gate.releaseEntered()
			s.metrics.preauthRefusals.WithLabelValues(refuseProxyHeader).Inc()
			if s.refusalLog.Allow() {
				s.log.Warn("ssh connection refused", "reason", refuseProxyHeader, "remote", conn.RemoteAddr().String(), "err", err)
			}
			return nil
		}
	}
	ip := sourceKey(addrIP(pc.RemoteAddr()))
	v := s.gate.admit(ip, started, held)
	if v.reason != "" {
		s.earlyDrop(v.reason, pc.RemoteAddr())
		return nil
	}
	if v.spared != "" {
		s.metrics.spared.WithLabelValues(v.spared).Inc()
	}
	s.metrics.unauthenticated.Inc()
	tc := &connection{Conn: pc, ctx: ctx, started: started, srv: s, ip: ip, srcTracked: v.tracked, graceEnd: graceEnd,
		proofDone: make(chan struct{}, 1)}
	s.mu.Lock()
	s.conns[tc] = struct{}{}
	s.mu.Unlock()
	ctx.SetValue(connKey{}, tc)
	s.metrics.connections.Inc()
	return tc
}

// connFromContext returns the connection of ctx (nil if untracked).
func connFromContext(ctx ssh.Context) *connection {
	c, _ := ctx.Value(connKey{}).(*connection)
	return c
}

// slot takes one of max slots counted by n, or reports false; release
// gives it back. A nil connection (untracked) gets none.
func (c *connection) slot(n *int, max int) (release func(), ok bool) {
	if c == nil {
		return nil, false
	}
	c.slotMu.Lock()
	defer c.slotMu.Unlock()
	if *n >= max {
		return nil, false
	}
	*n++
	return func() {
		c.slotMu.Lock()
		*n--
		c.slotMu.Unlock()
	}, true
}

// sessionSlot takes a session-channel slot (at most max).
func (c *connection) sessionSlot(max int) (func(), bool) { return c.slot(&c.sessions, max) }

// forwardSlot takes a forwarded-channel slot (at most max).
func (c *connection) forwardSlot(max int) (func(), bool) { return c.slot(&c.forwards, max) }

// countRefusal reports whether a forwarding refusal on this connection
// should still be audited.
func (c *connection) countRefusal() bool {
	if c == nil {
		return false
	}
	c.slotMu.Lock()
	defer c.slotMu.Unlock()
	c.refusals++
	return c.refusals <= maxRefusalEventsPerConn
}
