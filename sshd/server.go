package sshd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gliderlabs/ssh"
	"github.com/prometheus/client_golang/prometheus"
	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
)

// Authorizer is the part of the keystore's in-memory index that the SSH
// server needs. Every method answers from memory.
type Authorizer interface {
	Key(fp [32]byte) (keystore.IndexedKey, bool)
	User(id int64) (keystore.IndexedUser, bool)
	UserBlocked(id int64) bool
	UsernameIs(id int64, name string) bool
	Username(id int64) string
	UserByLogin(login string) (keystore.IndexedUser, bool)
	CA(fp [32]byte) (keystore.IndexedCA, bool)
	CAExists(id int64) bool
	Revoked(caID int64, serial uint64, keyID, certKeyFP string) bool
	Group(id int64) (keystore.IndexedGroup, bool)
	AccessLevel(userID, groupID int64) int
	// BastionTargets returns the targets that let userID forward to
	// host:port (see keystore.Index.BastionTargets).
	BastionTargets(userID, scopeTopGroupID int64, plainKey bool, host string, port uint32) []keystore.BastionMatch
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
	// GitBin is the git binary (default "git" from PATH).
	GitBin string

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

	mu    sync.Mutex
	conns map[*trackedConn]struct{}

	fwdMu sync.Mutex
	fwd   map[*gossh.ServerConn]*connForwards

	gitOps   sync.WaitGroup
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
			"default": s.guardRequest(func(ssh.Context, *ssh.Server, *gossh.Request) (bool, []byte) {
				return false, nil
			}),
		},
		SubsystemHandlers: map[string]ssh.SubsystemHandler{},
		ConnectionFailedCallback: func(c net.Conn, err error) {
			s.log.Debug("ssh handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		},
	}
	return s, nil
}

func toGliderSigners(keys []gossh.Signer) []ssh.Signer {
	out := make([]ssh.Signer, len(keys))
	for i, k := range keys {
		out[i] = k
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
			defer s.recoverConn("auth", trackedFromContext(ctx))
			s.testHook("auth")
			return s.verifiedKey(conn, key)
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
	finished := make(chan struct{})
	go func() {
		s.gitOps.Wait()
		close(finished)
	}()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = s.srv.Shutdown(sctx) }()
	var err error
	select {
	case <-finished:
	case <-ctx.Done():
		err = fmt.Errorf("sshd: shutdown grace expired with git operations running: %w", ctx.Err())
	}
	_ = s.srv.Close()
	s.usage.flush()
	return err
}

// trackedConn is a live connection watched for login grace and revocation.
type trackedConn struct {
	net.Conn
	ctx       ssh.Context
	started   time.Time
	once      sync.Once
	srv       *Server
	keepalive bool // keepalives started (revalidate loop only)
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.srv.mu.Lock()
		delete(c.srv.conns, c)
		c.srv.mu.Unlock()
		c.srv.metrics.connections.Dec()
	})
	return c.Conn.Close()
}

func (s *Server) trackConn(ctx ssh.Context, conn net.Conn) net.Conn {
	tc := &trackedConn{Conn: conn, ctx: ctx, started: s.cfg.Now(), srv: s}
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
			if now.Sub(c.started) > s.cfg.LoginGraceTime {
				s.log.Info("login grace time exceeded", "remote", c.RemoteAddr().String())
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
