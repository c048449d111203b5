package sshd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gliderlabs/ssh"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
	"github.com/prometheus/client_golang/prometheus"
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
	// CAKnown reports whether some group registered the CA key fp.
	CAKnown(fp [32]byte) bool
	// CA returns the CA with the key fp that top-level group groupID
	// registered (a key is its group's own; other groups may hold it too).
	CA(fp [32]byte, groupID int64) (authindex.CA, bool)
	CAExists(id int64) bool
	// ManagedCA returns the managed CA (keygate holds its private key)
	// whose key is fp: its certificates are keygate's own issue.
	ManagedCA(fp [32]byte) (authindex.CA, bool)
	// Revoked reports whether top-level group groupID revoked a certificate
	// of its CA key caFP by serial, key id (also when it names userID) or
	// certificate key fingerprint.
	Revoked(groupID int64, caFP [32]byte, serial uint64, keyID, certKeyFP string, userID int64) bool
	Group(id int64) (authindex.Group, bool)
	AccessLevel(userID, groupID int64) int
	// BastionTargets returns the targets that let userID forward to
	// host:port (see authindex.Index.BastionTargets).
	BastionTargets(userID, scopeTopGroupID int64, plainKey bool, host string, port uint32) []authindex.BastionMatch
	// DeployKey returns a deploy key's index record.
	DeployKey(id int64) (authindex.DeployKey, bool)
	// DeployAccess reports whether a deploy key may read and push a
	// project (enabled on it, or on its group or an ancestor).
	DeployAccess(id, projectID, groupID int64) (read, push bool)
	// ProjectGroup returns a project's group (false: no such project).
	ProjectGroup(id int64) (groupID int64, ok bool)
	// KeyPolicy returns the instance's key policy (never nil;
	// keystore.NoKeyPolicy when none is set; read on every login, without
	// a lock or an allocation).
	KeyPolicy() *keystore.KeyPolicy
	// KeyShape returns what the key policy reads of a key (its kind,
	// size and lifetime), from the key table (asked only while a policy
	// is in force).
	KeyShape(fp [32]byte) (authindex.KeyShape, bool)
	// GroupKeyPolicy returns a top-level group's own, stricter key policy.
	GroupKeyPolicy(groupID int64) (keystore.KeyPolicy, bool)
}

// Projects finds git projects (on the command path, not the auth path).
type Projects interface {
	ProjectByPath(ctx context.Context, fullPath string) (*keystore.Project, error)
}

// LFSLocks stores Git LFS locks (keystore.Store implements it).
type LFSLocks interface {
	CreateLFSLock(ctx context.Context, a keystore.Actor, projectID, userID int64, path, refName string) (*keystore.LFSLock, error)
	LFSLock(ctx context.Context, projectID, id int64) (*keystore.LFSLock, error)
	LFSLockByPath(ctx context.Context, projectID int64, path string) (*keystore.LFSLock, error)
	LFSLocks(ctx context.Context, projectID, after int64, limit int) ([]keystore.LFSLock, error)
	DeleteLFSLock(ctx context.Context, a keystore.Actor, projectID, id int64) (*keystore.LFSLock, error)
}

// HostCA signs keygate's own host keys (keystore.Store implements it): the
// certificate to present for key under principals, a new one when the
// last is due for renewal, nil when there is no host CA.
type HostCA interface {
	OwnHostCertificate(ctx context.Context, key gossh.PublicKey, principals []string) (*keystore.HostCertificate, error)
}

// UsageRecorder records key use, in batches, off the auth path.
type UsageRecorder interface {
	TouchKeys(ctx context.Context, used map[int64]time.Time) ([]int64, error)
}

// Config configures the SSH server.
type Config struct {
	Addr     string
	HostKeys []gossh.Signer
	// HostCertificates are certificate signers (LoadHostCertificates) for
	// some of HostKeys, presented besides the plain keys.
	HostCertificates []gossh.Signer
	// HostCA, when set, is keygate's managed host CA: the host keys with no
	// certificate in HostCertificates present one it signed, for Hostname
	// and HostCertNames, renewed without a restart (hostcert_managed.go).
	HostCA HostCA
	// HostCertNames are the managed host certificates' principals besides
	// Hostname.
	HostCertNames []string
	// HostCertCheckInterval is how often the managed host certificates are
	// checked against the host CA: renewal, a deleted CA, a revocation
	// (default 10s).
	HostCertCheckInterval time.Duration
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

	// PackCache, when set, shares pack-objects among identical
	// upload-pack requests.
	PackCache PackCache

	Auth     Authorizer
	Projects Projects
	// LFSLocks holds Git LFS locks (nil: git-lfs-transfer refuses the
	// locking commands).
	LFSLocks LFSLocks
	// LFSMaxObjectSize is the largest Git LFS object a client may upload,
	// in bytes (default 5 GiB; negative: Git LFS is off).
	LFSMaxObjectSize int64
	Usage            UsageRecorder
	// Events records audit events of forwarded connections (optional).
	Events   EventRecorder
	Log      *slog.Logger
	Registry prometheus.Registerer
	// Now is the server's one clock (default time.Now): every decision
	// reads it (certificate windows, key expiry, login grace, the
	// per-source penalty and trust windows, revalidation). Socket deadlines
	// are the operating system's time and elapsed times for metrics are
	// measured on the monotonic clock, so a test clock must run with real
	// time (an offset, as sshd/e2e's does) when connections are real.
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
	// early drop (default 20:30:100; OpenSSH's is 10:30:100).
	MaxStartups MaxStartups
	// PerSourceMaxStartups caps unauthenticated connections in flight per
	// source IP (default half of MaxStartups.Start, 10 with the default;
	// negative: no cap). At most half of Start, so that one address alone
	// never pushes the server into random early drop.
	PerSourceMaxStartups int
	// PerSourceMaxAuthFailures is how many failed logins (connections that
	// ended unauthenticated after a refused key, or after finishing key
	// exchange without offering a public key, or ran out of login grace
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
	// or a CI pool: one failing client must not lock out the others. For as
	// long, and while fewer than PerSourceMaxAuthFailures (10 when the
	// penalty is off) failures follow its last success, the source is
	// spared MaxStartups' random early drop and may use a reserve of a
	// tenth of Full above Full.
	PerSourceTrustWindow time.Duration
	// PerSourceExempt lists sources never penalised for failures (NATs,
	// load balancers), like OpenSSH's PerSourcePenaltyExemptList.
	PerSourceExempt []netip.Prefix
	// MaxConnectionsPerPrincipal caps the authenticated connections one
	// user (by user id: keys and certificates alike) or one deploy key may
	// have open (default 100; negative: no cap). A login past it is refused
	// with a banner naming the limit.
	MaxConnectionsPerPrincipal int
	// MaxGitProcessesPerPrincipal caps the git processes one user or one
	// deploy key may have running, over all its connections (default 50;
	// negative: no cap). A git command past it exits 1 with a message
	// naming the limit.
	MaxGitProcessesPerPrincipal int
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
	// HostAddrs returns the addresses of this host's interfaces, which the
	// bastion reaches only through an admin's exact target (default: the
	// interfaces' addresses, read at every decision; an error fails
	// closed). Tests replace it to stand in for a host behind the bastion.
	HostAddrs func() ([]netip.Addr, error)

	// testPanic, when set, is called at the start of every handler with the
	// handler's name (tests inject panics through it).
	testPanic func(where string)
	// testSession, when set, sees every session before handleSession.
	testSession func(ssh.Session)
}

// Git LFS object size limits.
const (
	DefaultLFSMaxObjectSize = 5 << 30
	MaxLFSObjectSize        = 1 << 40
)

// ConfigError is a Config value that Check refuses.
type ConfigError struct {
	Field  string // the Config field, e.g. "CertClockSkew"
	Reason string
}

func (e *ConfigError) Error() string { return "sshd: " + e.Field + " " + e.Reason }

// MaxCertClockSkew bounds CertClockSkew.
const MaxCertClockSkew = 24 * time.Hour

// Check reports the first value of c that the server refuses (a
// *ConfigError), with defaults applied to zero values as Validate does. It
// changes nothing and acquires nothing: keygate serve calls it when it
// parses its flags, and Validate calls it again.
func (c Config) Check() error {
	c.fillDefaults()
	return c.check()
}

// Validate checks the configuration, fills defaults, resolves git and
// prepares git's private home.
func (c *Config) Validate() error {
	if len(c.HostKeys) == 0 {
		return errors.New("sshd: no host keys")
	}
	if err := checkHostCertificates(c.HostCertificates, c.HostKeys); err != nil {
		return err
	}
	if c.Auth == nil || c.Projects == nil {
		return errors.New("sshd: Auth and Projects are required")
	}
	c.fillDefaults()
	if err := c.check(); err != nil {
		return err
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
	return nil
}

// check is every rule on the values, after fillDefaults.
func (c *Config) check() error {
	bad := func(field, reason string) error { return &ConfigError{Field: field, Reason: reason} }
	switch {
	case c.MaxStartups.Full < 1 || c.MaxStartups.Start > c.MaxStartups.Full || c.MaxStartups.Rate > 100:
		return bad("MaxStartups", fmt.Sprintf("%s is not start:rate:full with start <= full, full >= 1 and rate <= 100", c.MaxStartups))
	case c.ProxyProtocol != ProxyReject && c.ProxyProtocol != ProxyUse && c.ProxyProtocol != ProxyRequire:
		return bad("ProxyProtocol", fmt.Sprintf("must be reject, use or require, not %q", c.ProxyProtocol))
	case c.ProxyProtocol != ProxyReject && len(c.ProxyTrusted) == 0:
		return bad("ProxyTrusted", "must list the CIDRs of the proxies when the PROXY protocol is used or required")
	case c.CertClockSkew < 0 || c.CertClockSkew > MaxCertClockSkew:
		return bad("CertClockSkew", "must be between 0 and 24h")
	case c.PerSourceMaxStartups > 0 && 2*c.PerSourceMaxStartups > c.MaxStartups.Start:
		return bad("PerSourceMaxStartups", fmt.Sprintf("%d is more than half of start in max-startups %s: one address could push the server into random early drop by itself; lower it, raise start, or make it negative for no per-source cap",
			c.PerSourceMaxStartups, c.MaxStartups))
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"LoginGraceTime", c.LoginGraceTime}, {"PerSourcePenaltyWindow", c.PerSourcePenaltyWindow},
		{"RevalidateInterval", c.RevalidateInterval}, {"ForwardDialTimeout", c.ForwardDialTimeout}} {
		if d.v < 0 {
			return bad(d.field, "must be positive")
		}
	}
	if c.LFSMaxObjectSize > MaxLFSObjectSize {
		return bad("LFSMaxObjectSize", fmt.Sprintf("must be at most %d (1 TiB)", int64(MaxLFSObjectSize)))
	}
	for _, n := range []struct {
		field string
		v     int
	}{{"MaxAuthTries", c.MaxAuthTries}, {"MaxSessions", c.MaxSessions}, {"KeepAliveCountMax", c.KeepAliveCountMax},
		{"MaxAuthRequests", c.MaxAuthRequests}, {"MaxForwardsPerConn", c.MaxForwardsPerConn}} {
		if n.v < 0 {
			return bad(n.field, "must be positive")
		}
	}
	return nil
}

// fillDefaults gives every zero value its default. Negative values keep
// their meaning: "off" where a field says so, refused by check otherwise.
func (c *Config) fillDefaults() {
	if c.GitUser == "" {
		c.GitUser = "git"
	}
	if c.GitBin == "" {
		c.GitBin = "git"
	}
	if c.HostCertCheckInterval <= 0 {
		c.HostCertCheckInterval = 10 * time.Second
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
	if c.MaxStartups == (MaxStartups{}) {
		c.MaxStartups = DefaultMaxStartups
	}
	if c.PerSourceMaxStartups == 0 {
		c.PerSourceMaxStartups = defaultPerSource(c.MaxStartups)
	}
	if c.ProxyProtocol == "" {
		c.ProxyProtocol = ProxyReject
	}
	if c.LFSMaxObjectSize == 0 {
		c.LFSMaxObjectSize = DefaultLFSMaxObjectSize
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.LoginGraceTime, 30 * time.Second}, {&c.RevalidateInterval, time.Second}, {&c.ForwardDialTimeout, defaultDialTimeout},
		{&c.KeepAliveInterval, 15 * time.Second}, {&c.PerSourcePenaltyWindow, time.Minute}, {&c.PerSourceTrustWindow, time.Hour},
		{&c.IdleTimeout, 5 * time.Minute}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	for _, n := range []struct {
		v   *int
		def int
	}{{&c.MaxAuthTries, 6}, {&c.MaxForwardsPerConn, defaultMaxForwards}, {&c.MaxSessions, defaultMaxSessions},
		{&c.KeepAliveCountMax, 3}, {&c.PerSourceMaxAuthFailures, defaultFailBudget},
		{&c.MaxAuthRequests, defaultMaxAuthRequest}, {&c.MaxConnectionsPerPrincipal, defaultMaxConnsPerPrincipal},
		{&c.MaxGitProcessesPerPrincipal, defaultMaxGitPerPrincipal}} {
		if *n.v == 0 {
			*n.v = n.def
		}
	}
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
			tc := connFromContext(ctx)
			defer s.recoverConn("auth", closerFromContext(ctx))
			s.testHook("auth")
			if tc != nil && !tc.countAuthRequest() {
				return nil, refuse("too many authentication requests")
			}
			perms, err = s.verifiedKey(conn, key)
			if err == nil {
				perms, err = s.admitPrincipal(tc, conn, perms)
			}
			if tc != nil {
				switch {
				case err == nil:
					tc.authenticated()
				case errors.Is(err, errPrincipalCap):
					tc.capped.Store(true) // a good credential: no failure
				default:
					tc.authFailed.Store(true)
				}
			}
			return perms, err
		},
	}
	// The managed host certificates of the moment; gliderlabs then adds
	// the plain keys and the certificates from files (other key types).
	for _, signer := range s.managedHostCerts.current() {
		cfg.AddHostKey(signer)
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

// defaultMaxSessions caps concurrent session channels per connection.
const defaultMaxSessions = 10
