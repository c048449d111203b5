package sshd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
	"github.com/prometheus/client_golang/prometheus"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/time/rate"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// Authorizer is the part of the keystore's in-memory index that the SSH
// server needs. Every method answers from memory.
type Authorizer interface {
	Key(fp [32]byte) (authindex.Key, bool)
	User(id int64) (authindex.User, bool)
	UserBlocked(id int64) bool
	UsernameIs(id int64, name string) bool
	Username(id int64) string
	UserByLogin(login string) (authindex.User, bool)
	CA(fp [32]byte) (authindex.CA, bool)
	CAExists(id int64) bool
	// Revoked reports whether CA key caFP revoked a certificate by serial,
	// key id (also when it names userID) or certificate key fingerprint.
	Revoked(caFP [32]byte, serial uint64, keyID, certKeyFP string, userID int64) bool
	Group(id int64) (authindex.Group, bool)
	AccessLevel(userID, groupID int64) int
	// BastionTargets returns the targets that let userID forward to
	// host:port (see authindex.Index.BastionTargets).
	BastionTargets(userID, scopeTopGroupID int64, plainKey bool, host string, port uint32) []authindex.BastionMatch
}

// Projects finds git projects (on the command path, not the auth path).
type Projects interface {
	ProjectByPath(ctx context.Context, fullPath string) (*keystore.Project, error)
}

// UsageRecorder records key use, in batches, off the auth path.
type UsageRecorder interface {
	TouchKeys(ctx context.Context, used map[int64]time.Time) ([]int64, error)
}

// Config configures the SSH server.
type Config struct {
	Addr     string
	HostKeys []gossh.Signer
	// Hostname names this server in the login@HOSTNAME certificate extension.
	Hostname string
	// GitUser is the SSH login name for git (default "git").
	GitUser string
	// ReposDir holds the bare repositories.
	ReposDir string
	// GitBin is the git binary (default "git" from PATH, resolved once).
	GitBin string
	// GitHome is the private HOME of the git processes (default "git-home"
	// beside ReposDir; created 0700). git runs with an environment built
	// from nothing (keystore.GitEnv).
	GitHome string

	Auth     Authorizer
	Projects Projects
	Usage    UsageRecorder
	// Events records audit events of forwarded connections (optional).
	Events   EventRecorder
	Log      *slog.Logger
	Registry prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time

	// LoginGraceTime cuts off connections that have not authenticated (default 30s).
	LoginGraceTime time.Duration
	// MaxAuthTries is the number of failed authentications per connection (default 6).
	MaxAuthTries int
	// CertClockSkew widens certificate validity windows (default 0).
	CertClockSkew time.Duration
	// CertRequirePrincipals refuses certificates with no principals.
	CertRequirePrincipals bool
	// RevalidateInterval is how often open connections are re-checked
	// against the index (default 1s).
	RevalidateInterval time.Duration
	// MaxForwardsPerConn caps concurrent forwarded channels per connection (default 10).
	MaxForwardsPerConn int
	// ForwardDialTimeout bounds resolving and connecting to a forwarding
	// destination (default 10s).
	ForwardDialTimeout time.Duration
	// MaxSessions caps concurrent "session" channels per connection
	// (default 10, like OpenSSH MaxSessions).
	MaxSessions int
	// KeepAliveInterval is how often an authenticated connection is sent a
	// "keepalive@openssh.com" request (default 15s; negative disables, like
	// OpenSSH ClientAliveInterval).
	KeepAliveInterval time.Duration
	// KeepAliveCountMax is how many keepalive intervals may pass without a
	// reply before the connection is closed (default 3, like OpenSSH
	// ClientAliveCountMax).
	KeepAliveCountMax int

	// MaxStartups caps unauthenticated connections in flight with random
	// early drop (default 10:30:100, like OpenSSH).
	MaxStartups MaxStartups
	// PerSourceMaxStartups caps unauthenticated connections in flight per
	// source IP (default 10; negative: no cap).
	PerSourceMaxStartups int
	// PerSourceMaxAuthFailures is how many failed logins (connections that
	// ended unauthenticated after a refused key, or ran out of login grace
	// time) a source IP may have per PerSourcePenaltyWindow before its new
	// connections are refused (default 10; negative: no penalty). Successful
	// logins never count.
	PerSourceMaxAuthFailures int
	// PerSourcePenaltyWindow is the window over which the failure budget
	// refills (default 1m).
	PerSourcePenaltyWindow time.Duration
	// PerSourceTrustWindow: after a successful login from a source, its
	// failures do not get it refused for this long (default 1h; negative:
	// successes earn no trust). Many people share one address behind a NAT
	// or a CI pool: one failing client must not lock out the others.
	PerSourceTrustWindow time.Duration
	// PerSourceExempt lists sources never penalised for failures (NATs,
	// load balancers), like OpenSSH's PerSourcePenaltyExemptList.
	PerSourceExempt []netip.Prefix
	// MaxAuthRequests caps the public-key requests (queries and signed
	// attempts) a connection may make before it is closed (default 20).
	MaxAuthRequests int
	// IdleTimeout closes a connection whose git command has moved no bytes
	// in either direction for this long, e.g. a client that stopped reading
	// (default 5m; negative disables).
	IdleTimeout time.Duration
	// ProxyProtocol is reject (default: no PROXY protocol), use or require.
	ProxyProtocol string
	// ProxyTrusted lists the sources allowed to send a PROXY header.
	ProxyTrusted []netip.Prefix
	// OwnListeners are keygate's other listeners (the REST API, metrics):
	// the bastion never forwards to them, nor to the SSH listener, unless
	// an admin's target names the exact address.
	OwnListeners []netip.AddrPort

	// testPanic, when set, is called at the start of every handler with the
	// handler's name (tests inject panics through it).
	testPanic func(where string)
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	if len(c.HostKeys) == 0 {
		return errors.New("sshd: no host keys")
	}
	if c.Auth == nil || c.Projects == nil {
		return errors.New("sshd: Auth and Projects are required")
	}
	if c.GitUser == "" {
		c.GitUser = "git"
	}
	if c.GitBin == "" {
		c.GitBin = "git"
	}
	if p, err := keystore.ResolveGit(c.GitBin); err == nil {
		c.GitBin = p
	}
	if c.GitHome == "" && c.ReposDir != "" {
		c.GitHome = filepath.Join(filepath.Dir(c.ReposDir), "git-home")
	}
	if c.GitHome != "" {
		home, err := keystore.PrepareGitHome(c.GitHome)
		if err != nil {
			return fmt.Errorf("sshd: %w", err)
		}
		c.GitHome = home
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.LoginGraceTime == 0 {
		c.LoginGraceTime = 30 * time.Second
	}
	if c.MaxAuthTries == 0 {
		c.MaxAuthTries = 6
	}
	if c.RevalidateInterval == 0 {
		c.RevalidateInterval = time.Second
	}
	if c.MaxForwardsPerConn == 0 {
		c.MaxForwardsPerConn = defaultMaxForwards
	}
	if c.ForwardDialTimeout == 0 {
		c.ForwardDialTimeout = defaultDialTimeout
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = defaultMaxSessions
	}
	if c.KeepAliveInterval == 0 {
		c.KeepAliveInterval = 15 * time.Second
	}
	if c.KeepAliveCountMax == 0 {
		c.KeepAliveCountMax = 3
	}
	if c.MaxStartups == (MaxStartups{}) {
		c.MaxStartups = DefaultMaxStartups
	}
	if c.MaxStartups.Full < 1 || c.MaxStartups.Start > c.MaxStartups.Full || c.MaxStartups.Rate > 100 {
		return fmt.Errorf("sshd: bad MaxStartups %s", c.MaxStartups)
	}
	if c.PerSourceMaxStartups == 0 {
		c.PerSourceMaxStartups = 10
	}
	if c.PerSourceMaxAuthFailures == 0 {
		c.PerSourceMaxAuthFailures = 10
	}
	if c.PerSourcePenaltyWindow == 0 {
		c.PerSourcePenaltyWindow = time.Minute
	}
	if c.PerSourceTrustWindow == 0 {
		c.PerSourceTrustWindow = time.Hour
	}
	if c.MaxAuthRequests == 0 {
		c.MaxAuthRequests = defaultMaxAuthRequest
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	switch c.ProxyProtocol {
	case "":
		c.ProxyProtocol = ProxyReject
	case ProxyReject, ProxyUse, ProxyRequire:
	default:
		return errBadProxyMode
	}
	if c.ProxyProtocol != ProxyReject && len(c.ProxyTrusted) == 0 {
		return errors.New("sshd: ProxyProtocol use/require needs trusted proxy CIDRs")
	}
	if c.PerSourcePenaltyWindow < 0 || c.MaxAuthRequests < 0 {
		return errors.New("sshd: PerSourcePenaltyWindow and MaxAuthRequests must not be negative")
	}
	if c.MaxSessions < 0 || c.KeepAliveCountMax < 0 || c.MaxAuthTries < 0 || c.LoginGraceTime < 0 {
		return errors.New("sshd: MaxSessions, KeepAliveCountMax, MaxAuthTries and LoginGraceTime must not be negative")
	}
	return nil
}

// Server is keygate's SSH server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	srv     *ssh.Server
	metrics *metrics
	usage   *usageBatcher
	gate    *gate
	// refusalLog samples refusal log lines (20/s, bursts of 100).
	refusalLog *rate.Limiter

	mu    sync.Mutex
	conns map[*trackedConn]struct{}

	fwdMu sync.Mutex
	fwd   map[*gossh.ServerConn]*connForwards

	gitOps   inflight // git sessions, up to their exit status
	forwards inflight // direct-tcpip handlers, audit event included
	events   inflight // audit events written off the connection's path
	done     chan struct{}
	once     sync.Once
	lnMu     sync.Mutex
	ln       net.Listener
	shutdown bool
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
	s := &Server{cfg: cfg, log: cfg.Log, metrics: m, conns: map[*trackedConn]struct{}{}, fwd: map[*gossh.ServerConn]*connForwards{}, done: make(chan struct{})}
	s.usage = newUsageBatcher(cfg.Usage, cfg.Log, cfg.Now)
	s.gate = newGate(&s.cfg)
	if err := s.registerPenaltyMetrics(cfg.Registry); err != nil {
		return nil, err
	}
	s.refusalLog = rate.NewLimiter(20, 100)
	s.srv = &ssh.Server{
		Addr:                 cfg.Addr,
		Handler:              s.handleSession,
		HostSigners:          toGliderSigners(cfg.HostKeys),
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
	return s, nil
}

// toGliderSigners adapts the host keys; an RSA host key signs with SHA-2
// only (rsa-sha2-512, rsa-sha2-256), never ssh-rsa (SHA-1), as OpenSSH ≥ 8.8
// does by default.
func toGliderSigners(keys []gossh.Signer) []ssh.Signer {
	out := make([]ssh.Signer, len(keys))
	for i, k := range keys {
		out[i] = k
		if k.PublicKey().Type() != gossh.KeyAlgoRSA {
			continue
		}
		if as, ok := k.(gossh.AlgorithmSigner); ok {
			if ms, err := gossh.NewSignerWithAlgorithms(as, []string{gossh.KeyAlgoRSASHA512, gossh.KeyAlgoRSASHA256}); err == nil {
				out[i] = ms
			}
		}
	}
	return out
}

// Algorithms are set explicitly: x/crypto's defaults still accept SHA-1
// client signatures, ssh-dss, DH group14-SHA1 and hmac-sha1.
var (
	kexAlgorithms = []string{
		"mlkem768x25519-sha256", gossh.KeyExchangeCurve25519, "curve25519-sha256@libssh.org",
		gossh.KeyExchangeECDHP256, gossh.KeyExchangeECDHP384, gossh.KeyExchangeECDHP521,
		gossh.KeyExchangeDH14SHA256,
	}
	ciphers = []string{
		gossh.CipherAES128GCM, gossh.CipherAES256GCM, gossh.CipherChaCha20Poly1305,
		gossh.CipherAES128CTR, gossh.CipherAES192CTR, gossh.CipherAES256CTR,
	}
	macs = []string{
		gossh.HMACSHA256ETM, gossh.HMACSHA512ETM, gossh.HMACSHA256, gossh.HMACSHA512,
	}
	// publicKeyAuthAlgorithms has no "ssh-rsa" (SHA-1) and no "ssh-dss".
	publicKeyAuthAlgorithms = []string{
		gossh.KeyAlgoED25519, gossh.KeyAlgoSKED25519,
		gossh.KeyAlgoECDSA256, gossh.KeyAlgoECDSA384, gossh.KeyAlgoECDSA521, gossh.KeyAlgoSKECDSA256,
		gossh.KeyAlgoRSASHA256, gossh.KeyAlgoRSASHA512,
	}
)

func (s *Server) serverConfig(ctx ssh.Context) *gossh.ServerConfig {
	cfg := &gossh.ServerConfig{
		Config: gossh.Config{
			KeyExchanges: supportedKex(),
			Ciphers:      ciphers,
			MACs:         macs,
		},
		MaxAuthTries:            s.cfg.MaxAuthTries,
		PublicKeyAuthAlgorithms: publicKeyAuthAlgorithms,
		VerifiedPublicKeyCallback: func(conn gossh.ConnMetadata, key gossh.PublicKey, _ *gossh.Permissions, _ string) (perms *gossh.Permissions, err error) {
			// A panic refuses the attempt and closes only this connection.
			err = errPanicked
			tc, _ := ctx.Value(trackedConnKey{}).(*trackedConn)
			defer s.recoverConn("auth", trackedFromContext(ctx))
			s.testHook("auth")
			if tc != nil && !tc.countAuthRequest() {
				return nil, refuse("too many authentication requests")
			}
			perms, err = s.verifiedKey(conn, key)
			if tc != nil {
				if err != nil {
					tc.authFailed.Store(true)
				} else {
					tc.authenticated()
				}
			}
			return perms, err
		},
	}
	return cfg
}

// supportedKex keeps the algorithms this x/crypto knows.
func supportedKex() []string {
	known := map[string]bool{}
	for _, k := range gossh.SupportedAlgorithms().KeyExchanges {
		known[k] = true
	}
	var out []string
	for _, k := range kexAlgorithms {
		if known[k] {
			out = append(out, k)
		}
	}
	return out
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

// inflight counts running handlers; unlike a sync.WaitGroup, it may gain
// handlers while someone waits for it to drain.
type inflight struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to 0 with a waiter
}

func (f *inflight) add() {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
}

func (f *inflight) done() {
	f.mu.Lock()
	f.n--
	if f.n == 0 && f.zero != nil {
		close(f.zero)
		f.zero = nil
	}
	f.mu.Unlock()
}

// wait returns once no handler runs, or with ctx's error.
func (f *inflight) wait(ctx context.Context) error {
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return nil
	}
	if f.zero == nil {
		f.zero = make(chan struct{})
	}
	ch := f.zero
	f.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// trackedConn is a live connection watched for login grace and revocation.
type trackedConn struct {
	net.Conn
	ctx       ssh.Context
	started   time.Time
	once      sync.Once
	srv       *Server
	ip        netip.Addr
	keepalive bool // keepalives started (revalidate loop only)

	srcTracked bool        // holds a per-source slot
	graceEnd   time.Time   // the login-grace deadline
	authed     atomic.Bool // authenticated, or closed: pre-auth slots released
	authFailed atomic.Bool
	authReqs   atomic.Int32

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

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.srv.mu.Lock()
		delete(c.srv.conns, c)
		c.srv.mu.Unlock()
		c.srv.metrics.connections.Dec()
		if c.authed.CompareAndSwap(false, true) { // slots released once
			c.srv.releasePreauth(c)
			graceOver := !time.Now().Before(c.graceEnd)
			if graceOver {
				c.srv.log.Info("login grace time exceeded", "remote", c.Conn.RemoteAddr().String())
			}
			if graceOver || c.authFailed.Load() {
				c.srv.gate.failed(c.ip, time.Now())
			}
		}
	})
	return c.Conn.Close()
}

// authenticated ends the pre-auth phase: the login-grace deadline is lifted
// and the MaxStartups and per-source slots are released.
func (c *trackedConn) authenticated() {
	if !c.authed.CompareAndSwap(false, true) {
		return
	}
	_ = c.Conn.SetDeadline(time.Time{})
	c.srv.releasePreauth(c)
	c.srv.gate.succeeded(c.ip, time.Now())
}

func (c *trackedConn) isAuthed() bool { return c.authed.Load() }

// Read records the client's version line on the way through.
func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
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
func (c *trackedConn) clientVersion() string {
	c.versionMu.Lock()
	defer c.versionMu.Unlock()
	return strings.ToValidUTF8(string(c.versionBuf), "?")
}

// Deadlines set by others (gliderlabs resets the deadline on every read and
// write) never extend the login-grace deadline before authentication.
func (c *trackedConn) bound(t time.Time) time.Time {
	if c.authed.Load() || (!t.IsZero() && t.Before(c.graceEnd)) {
		return t
	}
	return c.graceEnd
}

func (c *trackedConn) SetDeadline(t time.Time) error     { return c.Conn.SetDeadline(c.bound(t)) }
func (c *trackedConn) SetReadDeadline(t time.Time) error { return c.Conn.SetReadDeadline(c.bound(t)) }
func (c *trackedConn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.bound(t))
}

// countAuthRequest counts one public-key request; past MaxAuthRequests it
// closes the connection and returns false.
func (c *trackedConn) countAuthRequest() bool {
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

func (s *Server) releasePreauth(c *trackedConn) {
	s.gate.releaseGlobal()
	if c.srcTracked {
		s.gate.releaseSource(c.ip)
	}
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

// trackConn admits a new connection (MaxStartups, PROXY header, per-source
// limits) and arms the login-grace deadline; nil refuses it.
func (s *Server) trackConn(ctx ssh.Context, conn net.Conn) net.Conn {
	started := s.cfg.Now()
	// The deadline bounds everything before authentication, also a client
	// that trickles a byte at a time; authenticated() lifts it.
	graceEnd := time.Now().Add(s.cfg.LoginGraceTime)
	_ = conn.SetDeadline(graceEnd)
	if reason := s.gate.admitGlobal(); reason != "" {
		s.preauthRefused(reason, conn.RemoteAddr())
		return nil
	}
	pc, err := s.proxyConn(conn)
	if err != nil {
		s.gate.releaseGlobal()
		s.metrics.preauthRefusals.WithLabelValues(refuseProxyHeader).Inc()
		if s.refusalLog.Allow() {
			s.log.Warn("ssh connection refused", "reason", refuseProxyHeader, "remote", conn.RemoteAddr().String(), "err", err)
		}
		return nil
	}
	ip := sourceKey(addrIP(pc.RemoteAddr()))
	reason, tracked := s.gate.admitSource(ip, time.Now())
	if reason != "" {
		s.gate.releaseGlobal()
		s.preauthRefused(reason, pc.RemoteAddr())
		return nil
	}
	s.metrics.unauthenticated.Inc()
	tc := &trackedConn{Conn: pc, ctx: ctx, started: started, srv: s, ip: ip, srcTracked: tracked, graceEnd: graceEnd,
		proofDone: make(chan struct{}, 1)}
	s.mu.Lock()
	s.conns[tc] = struct{}{}
	s.mu.Unlock()
	ctx.SetValue(trackedConnKey{}, tc)
	s.metrics.connections.Inc()
	return tc
}

// revalidateLoop cuts off connections past the login grace time and closes
// authenticated connections whose identity is no longer valid (deleted key,
// blocked user, removed member, deleted CA, revoked certificate).
func (s *Server) revalidateLoop() {
	t := time.NewTicker(s.cfg.RevalidateInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.revalidate()
			s.gate.prune(time.Now())
		}
	}
}

func (s *Server) revalidate() {
	now := s.cfg.Now()
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.conns))
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
			s.log.Info("closing connection: identity no longer valid", "user_id", id.UserID,
				"fingerprint", id.KeyFingerprint, "reason", reason, "remote", c.RemoteAddr().String())
			c.Close()
			continue
		}
		if !c.keepalive && s.cfg.KeepAliveInterval > 0 {
			if sc, ok := c.ctx.Value(ssh.ContextKeyConn).(*gossh.ServerConn); ok {
				c.keepalive = true
				go s.keepAlive(c, sc)
			}
		}
	}
}
