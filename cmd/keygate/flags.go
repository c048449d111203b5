package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/httpapi"
	"github.com/keygate/keygate/internal/packcache"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/sshd"
)

// serveConfig is everything `keygate serve` is told. The SSH server's
// settings go straight into the embedded sshd.Config (c.LoginGraceTime is
// c.Config.LoginGraceTime), and sshd.Config.Check validates them.
type serveConfig struct {
	sshd.Config
	DataDir       string
	SSHAddr       string
	HTTPAddr      string
	DB            string
	MetricsAddr   string
	LogFormat     string
	LogLevel      string
	ShutdownGrace time.Duration
	MaxBodyBytes  int64
	NoMigrate     bool

	IndexPollInterval time.Duration
	IndexMaxLag       time.Duration

	ExternalURL    string
	TrustedProxies []netip.Prefix
	TLSCert        string
	TLSKey         string

	// Audit event streaming (docs/audit-streaming.md).
	AuditStreamFile       string
	AuditStreamDropAfter  time.Duration
	AuditStreamMaxBackoff time.Duration
	AuditStreamPoll       time.Duration

	// The pack-objects cache (internal/packcache); PackCacheMaxBytes 0 is off.
	PackCacheDir           string
	PackCacheMaxBytes      int64
	PackCacheMaxEntryBytes int64
	PackCacheTTL           time.Duration
	PackCacheReaderTimeout time.Duration
	// HostCertificates are OpenSSH host certificate files besides
	// DATA_DIR/<host key>-cert.pub (--host-certificate, comma-separated).
	HostCertificates []string

	// The CA encryption key (see cakey.go) and the cap on people's
	// certificates.
	CAKeyFile       string
	CAKeyCredential string
	CertMaxTTL      time.Duration
}

// sshFlags names the flag of each sshd.Config field a flag sets.
var sshFlags = map[string]string{
	"LoginGraceTime": "login-grace-time", "KeepAliveInterval": "keepalive-interval", "KeepAliveCountMax": "keepalive-count-max",
	"MaxAuthTries": "max-auth-tries", "MaxSessions": "max-sessions", "MaxAuthRequests": "max-auth-requests",
	"MaxStartups": "max-startups", "PerSourceMaxStartups": "per-source-max-startups",
	"PerSourceMaxAuthFailures": "per-source-max-auth-failures", "PerSourcePenaltyWindow": "per-source-penalty-window",
	"PerSourceTrustWindow": "per-source-trust-window", "PerSourceExempt": "per-source-exempt",
	"CertClockSkew": "cert-clock-skew", "CertRequirePrincipals": "cert-require-principals", "IdleTimeout": "idle-timeout",
	"ProxyProtocol": "proxy-protocol", "ProxyTrusted": "proxy-protocol-trusted", "Hostname": "hostname", "GitUser": "git-user",
	"MaxConnectionsPerPrincipal": "max-connections-per-principal", "MaxGitProcessesPerPrincipal": "max-git-processes-per-principal",
	"LFSMaxObjectSize": "lfs-max-object-size",
}

// sshFlagError names the flag behind a value sshd.Config.Check refused.
func sshFlagError(err error) error {
	var ce *sshd.ConfigError
	if errors.As(err, &ce) {
		if f, ok := sshFlags[ce.Field]; ok {
			return fmt.Errorf("--%s %s", f, ce.Reason)
		}
	}
	return err
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// envDuration is a duration from the environment, or def.
func envDuration(name string, def time.Duration) (time.Duration, error) {
	v := env(name, "")
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w (durations take a unit: 30s, 5m, 1h)", name, err)
	}
	return d, nil
}

// envInt is an integer from the environment, or def.
func envInt(name string, def int) (int, error) {
	v := env(name, "")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return n, nil
}

// envInt64 is a 64-bit integer from the environment, or def.
func envInt64(name string, def int64) (int64, error) {
	v := env(name, "")
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return n, nil
}

func parseServe(args []string, stderr io.Writer) (*serveConfig, error) {
	host, _ := os.Hostname()
	c := &serveConfig{}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	// A flag error prints that one error and a pointer to -h; -h prints
	// the flags.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&c.DataDir, "data-dir", env("KEYGATE_DATA_DIR", "./keygate-data"), "data directory: keygate.db, host keys, repositories (env KEYGATE_DATA_DIR)")
	fs.StringVar(&c.SSHAddr, "ssh-addr", env("KEYGATE_SSH_ADDR", ":2222"), "SSH listen address (env KEYGATE_SSH_ADDR)")
	fs.StringVar(&c.HTTPAddr, "http-addr", env("KEYGATE_HTTP_ADDR", ":8080"), "REST API listen address (env KEYGATE_HTTP_ADDR)")
	fs.StringVar(&c.DB, "db", env("KEYGATE_DB", ""), "database: empty for SQLite in the data dir, sqlite:PATH or file:PATH, or postgres://… (env KEYGATE_DB)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", env("KEYGATE_METRICS_ADDR", ""), "serve /metrics, /-/health and /-/readiness on this separate address instead of the REST listener (env KEYGATE_METRICS_ADDR)")
	fs.StringVar(&c.Hostname, "hostname", env("KEYGATE_HOSTNAME", host), "host name used in clone URLs and the login@NAME certificate extension (env KEYGATE_HOSTNAME)")
	fs.StringVar(&c.GitUser, "git-user", env("KEYGATE_GIT_USER", "git"), "SSH login name for git (env KEYGATE_GIT_USER)")
	fs.StringVar(&c.LogFormat, "log-format", env("KEYGATE_LOG_FORMAT", "text"), "log format: text or json (env KEYGATE_LOG_FORMAT)")
	fs.StringVar(&c.LogLevel, "log-level", env("KEYGATE_LOG_LEVEL", "info"), "log level: debug, info, warn or error (env KEYGATE_LOG_LEVEL)")
	fs.StringVar(&c.AuditStreamFile, "audit-stream-file", env("KEYGATE_AUDIT_STREAM_FILE", ""), "append every audit event to this JSON lines file, for log shippers (env KEYGATE_AUDIT_STREAM_FILE)")
	grace, err := time.ParseDuration(env("KEYGATE_SHUTDOWN_GRACE", "10s"))
	if err != nil {
		return nil, fmt.Errorf("KEYGATE_SHUTDOWN_GRACE: %w", err)
	}
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", grace, "how long running requests and git operations may finish after SIGTERM (env KEYGATE_SHUTDOWN_GRACE)")
	maxBody, err := envInt("KEYGATE_MAX_BODY_BYTES", 1<<20)
	if err != nil {
		return nil, err
	}
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", int64(maxBody), "largest REST request body accepted, in bytes (env KEYGATE_MAX_BODY_BYTES)")
	noMigrate, err := strconv.ParseBool(env("KEYGATE_NO_MIGRATE", "false"))
	if err != nil {
		return nil, fmt.Errorf("KEYGATE_NO_MIGRATE: %w", err)
	}
	fs.BoolVar(&c.NoMigrate, "no-migrate", noMigrate, "do not run database migrations at start; refuse a database whose schema is missing or older (env KEYGATE_NO_MIGRATE)")
	// Zero is not a value these flags can take (sshd.Config reads 0 as "the
	// default"): refused, so that 0 never silently means 30s or 1h. The
	// SSH server's own rules (what may be negative, ranges) are
	// sshd.Config.Check's; the index flags are keygate's and positive.
	type rule int
	const (
		notZero rule = iota
		zeroOK
		positive
	)
	durations := []struct {
		dst       *time.Duration
		flag, env string
		def       time.Duration
		help      string
		rule      rule
	}{
		{&c.LoginGraceTime, "login-grace-time", "KEYGATE_LOGIN_GRACE_TIME", 30 * time.Second, "SSH connections that have not authenticated within this are closed", notZero},
		{&c.KeepAliveInterval, "keepalive-interval", "KEYGATE_KEEPALIVE_INTERVAL", 15 * time.Second, "send SSH keepalives to authenticated clients this often (negative: never)", notZero},
		{&c.IndexPollInterval, "index-poll-interval", "KEYGATE_INDEX_POLL_INTERVAL", 250 * time.Millisecond, "read the change log this often for changes made by other nodes, besides waking on notifications", positive},
		{&c.IndexMaxLag, "index-max-lag", "KEYGATE_INDEX_MAX_LAG", 30 * time.Second, "/-/readiness answers 503 once the auth index lags the database by more than this", positive},
		{&c.PerSourcePenaltyWindow, "per-source-penalty-window", "KEYGATE_PER_SOURCE_PENALTY_WINDOW", time.Minute, "window over which a source IP's budget of failed SSH logins refills", notZero},
		{&c.PerSourceTrustWindow, "per-source-trust-window", "KEYGATE_PER_SOURCE_TRUST_WINDOW", time.Hour, "after a successful SSH login from a source IP, its failures do not get it refused for this long (NATs, CI pools), and until --per-source-max-auth-failures failures follow that login it is spared --max-startups' random early drop (negative: off)", notZero},
		{&c.CertClockSkew, "cert-clock-skew", "KEYGATE_CERT_CLOCK_SKEW", 0, "accept SSH certificates this far outside their validity window (clocks that disagree)", zeroOK},
		{&c.IdleTimeout, "idle-timeout", "KEYGATE_IDLE_TIMEOUT", 5 * time.Minute, "close an SSH connection whose git command moved no data either way for this long (negative: never)", notZero},
		{&c.AuditStreamDropAfter, "audit-stream-drop-after", "KEYGATE_AUDIT_STREAM_DROP_AFTER", 24 * time.Hour, "a streaming destination failing for longer than this has its audit events dropped (each counted and logged) until it answers again", positive},
		{&c.AuditStreamMaxBackoff, "audit-stream-max-backoff", "KEYGATE_AUDIT_STREAM_MAX_BACKOFF", 30 * time.Second, "longest wait between attempts to deliver an audit event to a failing destination", positive},
		{&c.AuditStreamPoll, "audit-stream-poll-interval", "KEYGATE_AUDIT_STREAM_POLL_INTERVAL", time.Second, "read the audit event outbox and the streaming destinations this often", positive},
		{&c.PackCacheTTL, "pack-cache-ttl", "KEYGATE_PACK_CACHE_TTL", packcache.DefaultTTL, "serve a completed pack from the pack-objects cache for this long after it was computed (a push to its repository drops it at once)", positive},
		{&c.PackCacheReaderTimeout, "pack-cache-reader-timeout", "KEYGATE_PACK_CACHE_READER_TIMEOUT", packcache.DefaultReaderTimeout, "cut a clone that made no progress for this long while a pack larger than --pack-cache-max-entry-bytes waits for it (the others sharing the pack go on)", positive},
		{&c.CertMaxTTL, "cert-max-ttl", "KEYGATE_CERT_MAX_TTL", keystore.DefaultCertMaxTTL, "the longest certificate a managed CA issues to a person, whatever a group's ssh_certificate_max_ttl", positive},
	}
	for _, d := range durations {
		def, err := envDuration(d.env, d.def)
		if err != nil {
			return nil, err
		}
		fs.DurationVar(d.dst, d.flag, def, d.help+" (env "+d.env+")")
	}
	checkRule := func(flag string, v int64, r rule, help string) error {
		switch {
		case r == positive && v <= 0:
			return fmt.Errorf("--%s must be positive", flag)
		case r == notZero && v == 0 && strings.Contains(help, "(negative"):
			return fmt.Errorf("--%s must not be 0 (a negative value turns it off)", flag)
		case r == notZero && v == 0:
			return fmt.Errorf("--%s must not be 0", flag)
		}
		return nil
	}
	ints := []struct {
		dst       *int
		flag, env string
		def       int
		help      string
	}{
		{&c.MaxAuthTries, "max-auth-tries", "KEYGATE_MAX_AUTH_TRIES", 6, "failed SSH authentications per connection before it is closed"},
		{&c.MaxSessions, "max-sessions", "KEYGATE_MAX_SESSIONS", 10, "concurrent SSH sessions per connection"},
		{&c.KeepAliveCountMax, "keepalive-count-max", "KEYGATE_KEEPALIVE_COUNT_MAX", 3, "unanswered keepalive intervals before an SSH connection is closed"},
		{&c.PerSourceMaxStartups, "per-source-max-startups", "KEYGATE_PER_SOURCE_MAX_STARTUPS", 0,
			"unauthenticated SSH connections in flight per source IP, at most half of --max-startups' start so that one address alone never starts random early drop (0, the default: half of start, 10; negative: no cap)"},
		{&c.PerSourceMaxAuthFailures, "per-source-max-auth-failures", "KEYGATE_PER_SOURCE_MAX_AUTH_FAILURES", 10, "failed SSH logins per source IP per penalty window before it is refused (negative: no penalty)"},
		{&c.MaxAuthRequests, "max-auth-requests", "KEYGATE_MAX_AUTH_REQUESTS", 20, "public-key requests (queries and attempts) per SSH connection"},
		{&c.MaxConnectionsPerPrincipal, "max-connections-per-principal", "KEYGATE_MAX_CONNECTIONS_PER_PRINCIPAL", 100,
			"authenticated SSH connections one user or deploy key may have open (negative: no cap)"},
		{&c.MaxGitProcessesPerPrincipal, "max-git-processes-per-principal", "KEYGATE_MAX_GIT_PROCESSES_PER_PRINCIPAL", 50,
			"git commands one user or deploy key may have running at once (negative: no cap)"},
	}
	for _, n := range ints {
		def, err := envInt(n.env, n.def)
		if err != nil {
			return nil, err
		}
		fs.IntVar(n.dst, n.flag, def, n.help+" (env "+n.env+")")
	}
	lfsMax, err := envInt64("KEYGATE_LFS_MAX_OBJECT_SIZE", sshd.DefaultLFSMaxObjectSize)
	if err != nil {
		return nil, err
	}
	fs.Int64Var(&c.LFSMaxObjectSize, "lfs-max-object-size", lfsMax,
		"largest Git LFS object a client may upload over SSH, in bytes (negative: Git LFS off) (env KEYGATE_LFS_MAX_OBJECT_SIZE)")
	maxStartups := fs.String("max-startups", env("KEYGATE_MAX_STARTUPS", sshd.DefaultMaxStartups.String()),
		"unauthenticated SSH connections in flight, start:rate:full with random early drop like OpenSSH MaxStartups (OpenSSH's default is 10:30:100); sources with a successful login in --per-source-trust-window are spared the random drop and may go a tenth of full past full (env KEYGATE_MAX_STARTUPS)")
	fs.StringVar(&c.ProxyProtocol, "proxy-protocol", env("KEYGATE_PROXY_PROTOCOL", sshd.ProxyReject),
		"PROXY protocol v1/v2 on the SSH listener: reject (off), use or require (env KEYGATE_PROXY_PROTOCOL)")
	exempt := fs.String("per-source-exempt", env("KEYGATE_PER_SOURCE_EXEMPT", ""),
		"comma-separated CIDRs never penalised for failed SSH logins, e.g. an office NAT (env KEYGATE_PER_SOURCE_EXEMPT)")
	requirePrincipals := env("KEYGATE_CERT_REQUIRE_PRINCIPALS", "false")
	rp, err := strconv.ParseBool(requirePrincipals)
	if err != nil {
		return nil, fmt.Errorf("KEYGATE_CERT_REQUIRE_PRINCIPALS: %w", err)
	}
	fs.BoolVar(&c.CertRequirePrincipals, "cert-require-principals", rp,
		"refuse SSH certificates that list no principals (GitLab and keygate accept them by default) (env KEYGATE_CERT_REQUIRE_PRINCIPALS)")
	trusted := fs.String("proxy-protocol-trusted", env("KEYGATE_PROXY_PROTOCOL_TRUSTED", ""),
		"comma-separated CIDRs of proxies allowed to send a PROXY header (env KEYGATE_PROXY_PROTOCOL_TRUSTED)")
	fs.StringVar(&c.ExternalURL, "external-url", env("KEYGATE_EXTERNAL_URL", ""),
		"public base URL of the REST API, e.g. https://keys.example.com; used in every link keygate writes (env KEYGATE_EXTERNAL_URL)")
	trustedProxies := fs.String("trusted-proxies", env("KEYGATE_TRUSTED_PROXIES", "127.0.0.0/8,::1"),
		"comma-separated CIDRs of HTTP proxies whose Forwarded and X-Forwarded-Proto/-Host/-For headers are believed: the links' scheme and host, the client's address (env KEYGATE_TRUSTED_PROXIES)")
	fs.StringVar(&c.TLSCert, "tls-cert", env("KEYGATE_TLS_CERT", ""), "serve the REST API over HTTPS with this PEM certificate chain; reloaded on change or SIGHUP (env KEYGATE_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", env("KEYGATE_TLS_KEY", ""), "PEM private key for --tls-cert (env KEYGATE_TLS_KEY)")
	fs.StringVar(&c.PackCacheDir, "pack-cache-dir", env("KEYGATE_PACK_CACHE_DIR", ""),
		"directory of the pack-objects cache, emptied at start (default DATA_DIR/pack-cache; a tmpfs saves disk writes) (env KEYGATE_PACK_CACHE_DIR)")
	sizes := []struct {
		dst       *int64
		flag, env string
		def       int64
		help      string
	}{
		{&c.PackCacheMaxBytes, "pack-cache-max-bytes", "KEYGATE_PACK_CACHE_MAX_BYTES", packcache.DefaultMaxBytes,
			"bytes the pack-objects cache may hold on disk, packs in flight and completed; identical concurrent clones share one pack-objects (0: off)"},
		{&c.PackCacheMaxEntryBytes, "pack-cache-max-entry-bytes", "KEYGATE_PACK_CACHE_MAX_ENTRY_BYTES", packcache.DefaultMaxEntryBytes,
			"largest pack the cache keeps; a larger one is still shared while it is computed, through a ring of this size"},
	}
	for _, z := range sizes {
		def := z.def
		if v := env(z.env, ""); v != "" {
			if def, err = strconv.ParseInt(v, 10, 64); err != nil {
				return nil, fmt.Errorf("%s: %w", z.env, err)
			}
		}
		fs.Int64Var(z.dst, z.flag, def, z.help+" (env "+z.env+")")
	}
	hostCerts := fs.String("host-certificate", env("KEYGATE_HOST_CERTIFICATE", ""),
		"comma-separated OpenSSH host certificate files for the host keys, presented besides DATA_DIR/<host key>-cert.pub (env KEYGATE_HOST_CERTIFICATE)")
	hostCertNames := fs.String("host-certificate-names", env("KEYGATE_HOST_CERTIFICATE_NAMES", ""),
		"comma-separated host names and addresses, besides --hostname, that the managed host CA's certificates for keygate's own host keys name (env KEYGATE_HOST_CERTIFICATE_NAMES)")
	fs.StringVar(&c.CAKeyFile, "ca-key-file", env("KEYGATE_CA_KEY_FILE", ""),
		"file holding the 32-byte key that seals managed CAs' private keys (default DATA_DIR/"+defaultCAKeyFile+", created on first start); keep a copy apart from database backups (env KEYGATE_CA_KEY_FILE)")
	fs.StringVar(&c.CAKeyCredential, "ca-key-credential", env("KEYGATE_CA_KEY_CREDENTIAL", ""),
		"read the CA encryption key from this systemd credential ($CREDENTIALS_DIRECTORY/NAME) instead of a file (env KEYGATE_CA_KEY_CREDENTIAL)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printServeHelp(fs, stderr)
			return nil, err
		}
		if strings.Contains(err.Error(), "parse error") {
			err = fmt.Errorf("%w (durations take a unit: 30s, 5m, 1h; sizes and counts are plain numbers)", err)
		}
		return nil, fmt.Errorf("%w\nrun 'keygate serve -h' for the flags", err)
	}
	if c.MaxStartups, err = sshd.ParseMaxStartups(*maxStartups); err != nil {
		return nil, err
	}
	if c.ProxyTrusted, err = sshd.ParseCIDRs(*trusted); err != nil {
		return nil, fmt.Errorf("--proxy-protocol-trusted: %w", err)
	}
	if c.TrustedProxies, err = sshd.ParseCIDRs(*trustedProxies); err != nil {
		return nil, fmt.Errorf("--trusted-proxies: %w", err)
	}
	if c.TrustedProxies == nil {
		c.TrustedProxies = []netip.Prefix{} // "" trusts no proxy
	}
	if _, err := httpapi.ParseExternalURL(c.ExternalURL); err != nil {
		return nil, fmt.Errorf("--external-url %q: %w", c.ExternalURL, err)
	}
	if c.CAKeyFile != "" && c.CAKeyCredential != "" {
		return nil, errors.New("--ca-key-file and --ca-key-credential are alternatives; give one")
	}
	if strings.ContainsAny(c.CAKeyCredential, "/\\") || c.CAKeyCredential == "." || c.CAKeyCredential == ".." {
		return nil, fmt.Errorf("--ca-key-credential %q must be a credential name, not a path", c.CAKeyCredential)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	for _, f := range strings.Split(*hostCerts, ",") {
		if f = strings.TrimSpace(f); f != "" {
			c.HostCertificates = append(c.HostCertificates, f)
		}
	}
	if names := strings.TrimSpace(*hostCertNames); names != "" {
		n, err := keystore.NormalizeHostPrincipals("names", strings.Split(names, ","))
		if err != nil {
			var ve *keystore.ValidationError
			if errors.As(err, &ve) {
				return nil, fmt.Errorf("--host-certificate-names: %s", strings.Join(ve.Fields["names"], "; "))
			}
			return nil, err
		}
		c.HostCertNames = n
	}
	if c.PerSourceExempt, err = sshd.ParseCIDRs(*exempt); err != nil {
		return nil, fmt.Errorf("--per-source-exempt: %w", err)
	}
	for _, d := range durations {
		if err := checkRule(d.flag, int64(*d.dst), d.rule, d.help); err != nil {
			return nil, err
		}
	}
	for _, n := range ints {
		if n.def == 0 {
			continue // 0 is its default, named in its help
		}
		if err := checkRule(n.flag, int64(*n.dst), notZero, n.help); err != nil {
			return nil, err
		}
	}
	if c.PackCacheMaxBytes < 0 {
		return nil, errors.New("--pack-cache-max-bytes must not be negative (0 turns the cache off)")
	}
	if err := checkRule("pack-cache-max-entry-bytes", c.PackCacheMaxEntryBytes, positive, ""); err != nil {
		return nil, err
	}
	if err := checkRule("lfs-max-object-size", c.LFSMaxObjectSize, notZero, "(negative"); err != nil {
		return nil, err
	}
	if err := c.Config.Check(); err != nil {
		return nil, sshFlagError(err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return nil, fmt.Errorf("--log-format must be text or json, not %q", c.LogFormat)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return nil, err
	}
	if c.GitUser == "" {
		return nil, errors.New("--git-user must not be empty")
	}
	for _, l := range []struct{ flag, addr string }{{"ssh-addr", c.SSHAddr}, {"http-addr", c.HTTPAddr}, {"metrics-addr", c.MetricsAddr}} {
		if err := checkListenAddr(l.flag, l.addr); err != nil {
			return nil, err
		}
	}
	if err := checkHostname(c.Hostname); err != nil {
		return nil, err
	}
	dsn, err := resolveDB(c.DB, c.DataDir)
	if err != nil {
		return nil, err
	}
	if err := checkDataDirReadable(c.DataDir); err != nil {
		return nil, err
	}
	if err := checkExplicitDB(c.DB, dsn); err != nil {
		return nil, err
	}
	return c, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", s)
	}
	return l, nil
}

// dsn is the store DSN of --db: empty for DATA_DIR/keygate.db, a
// postgres:// or postgresql:// URL, sqlite:PATH or file:PATH, or (the form
// of earlier releases) a plain file path. Anything else — a mistyped URL
// scheme above all — is refused, rather than silently becoming a new local
// SQLite file.
func (c *serveConfig) dsn() (string, error) {
	return resolveDB(c.DB, c.DataDir)
}

func resolveDB(db, dataDir string) (string, error) {
	switch {
	case db == "":
		return filepath.Join(dataDir, "keygate.db"), nil
	case keystore.IsPostgresDSN(db):
		return db, nil
	case strings.HasPrefix(db, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(db, "sqlite:"), "//")
		if path == "" {
			return "", errors.New("--db sqlite:PATH needs a path")
		}
		return path, nil
	case strings.HasPrefix(db, "file:"):
		if strings.TrimPrefix(db, "file:") == "" {
			return "", errors.New("--db file:PATH needs a path")
		}
		return db, nil
	case !strings.Contains(db, ":"):
		return db, nil // a plain path, as before
	}
	return "", fmt.Errorf("--db %q: not a database keygate knows; use postgres://… or postgresql://… for PostgreSQL, sqlite:PATH or file:PATH for SQLite, or leave it empty for DATA_DIR/keygate.db", redactDSN(db))
}

// redactDSN drops a password from a URL-ish DSN for messages.
func redactDSN(db string) string {
	if i := strings.Index(db, "://"); i >= 0 {
		rest := db[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if colon := strings.Index(rest[:at], ":"); colon >= 0 {
				return db[:i+3] + rest[:colon] + ":…" + rest[at:]
			}
		}
	}
	return db
}
