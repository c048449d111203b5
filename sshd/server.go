package sshd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/time/rate"

	"github.com/keygate/keygate/keystore"
)

// Server is keygate's SSH server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	srv     *ssh.Server
	metrics *metrics
	usage   *usageBatcher
	gate    *gate
	caps    *principalCaps
	// managedHostCerts: the host CA's certificates presented now.
	managedHostCerts *managedHostCerts
	// refusalLog samples refusal log lines (20/s, bursts of 100).
	refusalLog *rate.Limiter

	mu    sync.Mutex
	conns map[*connection]struct{}

	gitOps   inflight // git sessions, up to their exit status
	forwards inflight // direct-tcpip handlers, audit event included
	events   inflight // audit events written off the connection's path
	done     chan struct{}
	once     sync.Once
	lnMu     sync.Mutex
	ln       net.Listener
	shutdown bool

	// This host's addresses, cached for a second (restricted.go).
	hostMu   sync.Mutex
	hostList []netip.Addr
	hostErr  error
	hostRead time.Time
}

// New builds a server.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Log, metrics: m, conns: map[*connection]struct{}{}, done: make(chan struct{})}
	s.usage = newUsageBatcher(cfg.Usage, cfg.Log, cfg.Now)
	s.gate = newGate(&s.cfg)
	s.caps = newPrincipalCaps(&s.cfg)
	s.managedHostCerts = &managedHostCerts{byKey: map[string]*managedCert{}, lastErr: map[string]string{}}
	if err := s.registerPenaltyMetrics(cfg.Registry); err != nil {
		return nil, err
	}
	s.refusalLog = rate.NewLimiter(20, 100)
	s.srv = &ssh.Server{
		Addr:                 cfg.Addr,
		Handler:              s.handleSession,
		HostSigners:          append(toGliderSigners(cfg.HostKeys), toGliderSigners(cfg.HostCertificates)...),
		Version:              "keygate",
		PublicKeyHandler:     s.guardedOfferedKey,
		ServerConfigCallback: s.serverConfig,
		ConnCallback:         s.trackConn,
		PtyCallback:          func(ssh.Context, ssh.Pty) bool { return false },
		ChannelHandlers: map[string]ssh.ChannelHandler{
			"session":      s.guardChannel("session", s.sessionChannel),
			"direct-tcpip": s.guardChannel("direct-tcpip", s.handleDirectTCPIP),
		},
		// No global request handlers: "tcpip-forward" (ssh -R) and every
		// other global request is answered false.
		RequestHandlers: map[string]ssh.RequestHandler{
			reqHostKeysProve: s.guardRequest(s.proveHostKeys),
			"default": s.guardRequest(func(ssh.Context, *ssh.Server, *gossh.Request) (bool, []byte) {
				return false, nil
			}),
		},
		SubsystemHandlers:        map[string]ssh.SubsystemHandler{},
		ConnectionFailedCallback: s.connectionFailed,
	}
	if see := cfg.testSession; see != nil {
		s.srv.Handler = func(sess ssh.Session) { see(sess); s.handleSession(sess) }
	}
	return s, nil
}

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	s.lnMu.Lock()
	if s.shutdown { // Shutdown came first: never start serving
		s.lnMu.Unlock()
		return l.Close()
	}
	s.ln = l
	s.lnMu.Unlock()
	if s.cfg.HostCA != nil {
		// The first connection already gets the host CA's certificates.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s.RefreshHostCertificates(ctx)
		cancel()
		go s.hostCertLoop()
	}
	go s.revalidateLoop()
	go s.usage.run(s.done)
	err := s.srv.Serve(l)
	s.lnMu.Lock()
	stopping := s.shutdown
	s.lnMu.Unlock()
	if errors.Is(err, ssh.ErrServerClosed) || stopping {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, lets running git operations finish
// until ctx ends, then closes every connection.
func (s *Server) Shutdown(ctx context.Context) error {
	s.once.Do(func() { close(s.done) })
	s.lnMu.Lock()
	s.shutdown = true
	if s.ln != nil {
		_ = s.ln.Close() // also when gliderlabs has not tracked it yet
	}
	s.lnMu.Unlock()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = s.srv.Shutdown(sctx) }()
	var err error
	if werr := s.gitOps.wait(ctx); werr != nil {
		err = fmt.Errorf("sshd: shutdown grace expired with git operations running: %w", werr)
	} else {
		// A git client closes its connection once it has the exit status;
		// give it a moment so that closing ours does not cut off what it
		// has still to read.
		s.waitConnsClosed(ctx, 500*time.Millisecond)
	}
	_ = s.srv.Close()
	// Closing the connections ends the forwards; each still writes its
	// audit event, which must land before the store is closed.
	if werr := s.forwards.wait(ctx); werr != nil && err == nil {
		err = fmt.Errorf("sshd: shutdown grace expired with forwards still recording: %w", werr)
	}
	if werr := s.events.wait(ctx); werr != nil && err == nil {
		err = fmt.Errorf("sshd: shutdown grace expired with audit events still recording: %w", werr)
	}
	s.usage.flush()
	return err
}

// waitConnsClosed waits until no connection is open, for at most d (and
// ctx).
func (s *Server) waitConnsClosed(ctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// revalidateLoop cuts off connections past the login grace time and
// re-decides every open connection, git session and forward (decide.go):
// on every tick — deadlines such as key, certificate and membership expiry
// pass between changes — and at once when the index signals a change (at
// most every changeCoalesce).
func (s *Server) revalidateLoop() {
	t := time.NewTicker(s.cfg.RevalidateInterval)
	defer t.Stop()
	var changed, watch <-chan struct{}
	if n, ok := s.cfg.Auth.(interface{ Changed() <-chan struct{} }); ok {
		watch = n.Changed()
		changed = watch
	}
	var cool <-chan time.Time
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.revalidate()
			s.gate.prune(s.cfg.Now())
		case <-changed:
			s.revalidate()
			changed, cool = nil, time.After(changeCoalesce)
		case <-cool:
			changed, cool = watch, nil
		}
	}
}

// changeCoalesce is the least time between two revalidations that index
// changes trigger (a burst of writes costs one pass per interval).
const changeCoalesce = 50 * time.Millisecond

func (s *Server) revalidate() {
	now := s.cfg.Now()
	s.mu.Lock()
	conns := make([]*connection, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		id := identityFromContext(c.ctx)
		if id == nil {
			// Backstop of the connection deadline set at accept.
			if !c.isAuthed() && now.Sub(c.started) > s.cfg.LoginGraceTime {
				c.Close()
			}
			continue
		}
		if reason := s.stillValid(id, now); reason != "" {
			if !c.closing.CompareAndSwap(false, true) {
				continue // being closed
			}
			// Every open session and forward ends with the reason (each
			// writes its own audit event), then the connection.
			for _, g := range c.openGrants() {
				g.stop(reason)
			}
			s.log.Info("closing connection: identity no longer valid", "user_id", id.UserID,
				"deploy_key_id", id.DeployKeyID, "fingerprint", id.KeyFingerprint, "reason", reason, "remote", c.RemoteAddr().String())
			s.recordEventAsync(keystore.Actor{UserID: id.UserID, RemoteIP: hostOnly(c.RemoteAddr().String())},
				"ssh_connection_closed", "user", id.UserID, identityDetails(id, map[string]any{"login": id.Login, "reason": reason}))
			s.metrics.revoked.WithLabelValues("connection").Inc()
			go func() {
				// Let the sessions just ended send their exit status and
				// message first; the connection goes regardless.
				time.Sleep(200 * time.Millisecond)
				c.Close()
			}()
			continue
		}
		for _, g := range c.openGrants() {
			if reason := g.check(now); reason != "" {
				g.stop(reason)
			}
		}
		if !c.keepalive && s.cfg.KeepAliveInterval > 0 {
			if sc, ok := c.ctx.Value(ssh.ContextKeyConn).(*gossh.ServerConn); ok {
				c.keepalive = true
				go s.keepAlive(c, sc)
			}
		}
	}
}
