// Command keygate runs the keygate SSH server and REST API.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/keygate/keygate/httpapi"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
	"github.com/keygate/keygate/sshd"
)

// The index is what the SSH server reads.
var _ sshd.Authorizer = (*authindex.Index)(nil)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "serve":
		cfg, err := parseServe(args[1:], stderr)
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if err != nil {
			fmt.Fprintln(stderr, "keygate:", err)
			return 2
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		if err := serve(ctx, cfg, stderr); err != nil {
			if ctx.Err() != nil {
				// Told to stop while starting: that is a clean stop.
				fmt.Fprintln(stderr, "keygate: stopped during startup:", err)
				return 0
			}
			fmt.Fprintln(stderr, "keygate:", err)
			return 1
		}
		return 0
	case "migrate":
		return runMigrate(args[1:], stdout, stderr)
	case "export":
		return runExport(args[1:], stdout, stderr)
	case "import":
		return runImport(args[1:], stdout, stderr)
	case "enterprise-users":
		return runEnterpriseUsers(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "keygate", version)
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "keygate: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  keygate serve [flags]     run the SSH server and the REST API (keygate serve -h lists flags)
  keygate migrate [flags]   apply pending database migrations and exit
  keygate export [--out FILE] [flags]
                            write every table of the keystore as one JSON document
  keygate import --in FILE [flags]
                            load an export into a new, empty keystore (ids and times kept)
  keygate enterprise-users [--assign] [flags]
                            list group CAs with members their certificates cannot log in as
                            (not enterprise users of the CA's group); --assign makes each user
                            who is a member of exactly one CA-bearing top-level group its
                            enterprise user, printing every assignment
  keygate version           print the version
The database flags of migrate, export, import and enterprise-users are serve's: --db (env KEYGATE_DB)
and --data-dir (env KEYGATE_DATA_DIR).
`)
}

// serveConfig is everything `keygate serve` is told.
type serveConfig struct {
	DataDir       string
	SSHAddr       string
	HTTPAddr      string
	DB            string
	Hostname      string
	GitUser       string
	LogFormat     string
	LogLevel      string
	ShutdownGrace time.Duration
	MaxBodyBytes  int64
	NoMigrate     bool

	LoginGraceTime    time.Duration
	MaxAuthTries      int
	MaxSessions       int
	KeepAliveInterval time.Duration
	KeepAliveCountMax int

	IndexPollInterval        time.Duration
	IndexMaxLag              time.Duration
	MaxStartups              sshd.MaxStartups
	PerSourceMaxStartups     int
	PerSourceMaxAuthFailures int
	PerSourcePenaltyWindow   time.Duration
	PerSourceTrustWindow     time.Duration
	PerSourceExempt          []netip.Prefix
	CertClockSkew            time.Duration
	CertRequirePrincipals    bool
	MaxAuthRequests          int
	IdleTimeout              time.Duration
	ProxyProtocol            string
	ProxyTrusted             []netip.Prefix
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
		return 0, fmt.Errorf("%s: %w", name, err)
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

func parseServe(args []string, stderr io.Writer) (*serveConfig, error) {
	host, _ := os.Hostname()
	c := &serveConfig{}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.DataDir, "data-dir", env("KEYGATE_DATA_DIR", "./keygate-data"), "data directory: keygate.db, host keys, repositories (env KEYGATE_DATA_DIR)")
	fs.StringVar(&c.SSHAddr, "ssh-addr", env("KEYGATE_SSH_ADDR", ":2222"), "SSH listen address (env KEYGATE_SSH_ADDR)")
	fs.StringVar(&c.HTTPAddr, "http-addr", env("KEYGATE_HTTP_ADDR", ":8080"), "REST API listen address (env KEYGATE_HTTP_ADDR)")
	fs.StringVar(&c.DB, "db", env("KEYGATE_DB", ""), "database: empty for SQLite in the data dir, or postgres://… (env KEYGATE_DB)")
	fs.StringVar(&c.Hostname, "hostname", env("KEYGATE_HOSTNAME", host), "host name used in clone URLs and the login@NAME certificate extension (env KEYGATE_HOSTNAME)")
	fs.StringVar(&c.GitUser, "git-user", env("KEYGATE_GIT_USER", "git"), "SSH login name for git (env KEYGATE_GIT_USER)")
	fs.StringVar(&c.LogFormat, "log-format", env("KEYGATE_LOG_FORMAT", "text"), "log format: text or json (env KEYGATE_LOG_FORMAT)")
	fs.StringVar(&c.LogLevel, "log-level", env("KEYGATE_LOG_LEVEL", "info"), "log level: debug, info, warn or error (env KEYGATE_LOG_LEVEL)")
	grace, err := time.ParseDuration(env("KEYGATE_SHUTDOWN_GRACE", "10s"))
	if err != nil {
		return nil, fmt.Errorf("KEYGATE_SHUTDOWN_GRACE: %w", err)
	}
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", grace, "how long running requests and git operations may finish after SIGTERM (env KEYGATE_SHUTDOWN_GRACE)")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", 1<<20, "largest REST request body accepted")
	fs.BoolVar(&c.NoMigrate, "no-migrate", false, "do not run database migrations at start")
	durations := []struct {
		dst       *time.Duration
		flag, env string
		def       time.Duration
		help      string
	}{
		{&c.LoginGraceTime, "login-grace-time", "KEYGATE_LOGIN_GRACE_TIME", 30 * time.Second, "SSH connections that have not authenticated within this are closed"},
		{&c.KeepAliveInterval, "keepalive-interval", "KEYGATE_KEEPALIVE_INTERVAL", 15 * time.Second, "send SSH keepalives to authenticated clients this often (negative: never)"},
		{&c.IndexPollInterval, "index-poll-interval", "KEYGATE_INDEX_POLL_INTERVAL", 250 * time.Millisecond, "read the change log this often for changes made by other nodes, besides waking on notifications"},
		{&c.IndexMaxLag, "index-max-lag", "KEYGATE_INDEX_MAX_LAG", 30 * time.Second, "/-/readiness answers 503 once the auth index lags the database by more than this"},
		{&c.PerSourcePenaltyWindow, "per-source-penalty-window", "KEYGATE_PER_SOURCE_PENALTY_WINDOW", time.Minute, "window over which a source IP's budget of failed SSH logins refills"},
		{&c.PerSourceTrustWindow, "per-source-trust-window", "KEYGATE_PER_SOURCE_TRUST_WINDOW", time.Hour, "after a successful SSH login from a source IP, its failures do not get it refused for this long (NATs, CI pools; negative: off)"},
		{&c.CertClockSkew, "cert-clock-skew", "KEYGATE_CERT_CLOCK_SKEW", 0, "accept SSH certificates this far outside their validity window (clocks that disagree)"},
		{&c.IdleTimeout, "idle-timeout", "KEYGATE_IDLE_TIMEOUT", 5 * time.Minute, "close an SSH connection whose git command moved no data either way for this long (negative: never)"},
	}
	for _, d := range durations {
		def, err := envDuration(d.env, d.def)
		if err != nil {
			return nil, err
		}
		fs.DurationVar(d.dst, d.flag, def, d.help+" (env "+d.env+")")
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
		{&c.PerSourceMaxStartups, "per-source-max-startups", "KEYGATE_PER_SOURCE_MAX_STARTUPS", 10, "unauthenticated SSH connections in flight per source IP (negative: no cap)"},
		{&c.PerSourceMaxAuthFailures, "per-source-max-auth-failures", "KEYGATE_PER_SOURCE_MAX_AUTH_FAILURES", 10, "failed SSH logins per source IP per penalty window before it is refused (negative: no penalty)"},
		{&c.MaxAuthRequests, "max-auth-requests", "KEYGATE_MAX_AUTH_REQUESTS", 20, "public-key requests (queries and attempts) per SSH connection"},
	}
	for _, n := range ints {
		def, err := envInt(n.env, n.def)
		if err != nil {
			return nil, err
		}
		fs.IntVar(n.dst, n.flag, def, n.help+" (env "+n.env+")")
	}
	maxStartups := fs.String("max-startups", env("KEYGATE_MAX_STARTUPS", sshd.DefaultMaxStartups.String()),
		"unauthenticated SSH connections in flight, start:rate:full with random early drop like OpenSSH MaxStartups (env KEYGATE_MAX_STARTUPS)")
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
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if c.MaxStartups, err = sshd.ParseMaxStartups(*maxStartups); err != nil {
		return nil, err
	}
	if c.ProxyTrusted, err = sshd.ParseCIDRs(*trusted); err != nil {
		return nil, err
	}
	if c.PerSourceExempt, err = sshd.ParseCIDRs(*exempt); err != nil {
		return nil, fmt.Errorf("--per-source-exempt: %w", err)
	}
	if c.CertClockSkew < 0 || c.CertClockSkew > 24*time.Hour {
		return nil, errors.New("--cert-clock-skew must be between 0 and 24h")
	}
	if c.PerSourceTrustWindow == 0 {
		return nil, errors.New("--per-source-trust-window must not be zero (negative disables)")
	}
	switch c.ProxyProtocol {
	case sshd.ProxyReject:
	case sshd.ProxyUse, sshd.ProxyRequire:
		if len(c.ProxyTrusted) == 0 {
			return nil, errors.New("--proxy-protocol use/require needs --proxy-protocol-trusted")
		}
	default:
		return nil, fmt.Errorf("--proxy-protocol must be reject, use or require, not %q", c.ProxyProtocol)
	}
	if c.PerSourcePenaltyWindow <= 0 || c.MaxAuthRequests <= 0 || c.IdleTimeout == 0 ||
		c.PerSourceMaxStartups == 0 || c.PerSourceMaxAuthFailures == 0 {
		return nil, errors.New("--per-source-penalty-window and --max-auth-requests must be positive; --idle-timeout, --per-source-max-startups and --per-source-max-auth-failures must not be zero (negative disables)")
	}
	if c.LoginGraceTime <= 0 {
		return nil, errors.New("--login-grace-time must be positive")
	}
	if c.IndexPollInterval <= 0 || c.IndexMaxLag <= 0 {
		return nil, errors.New("--index-poll-interval and --index-max-lag must be positive")
	}
	if c.KeepAliveInterval == 0 {
		return nil, errors.New("--keepalive-interval must not be zero (negative disables keepalives)")
	}
	if c.MaxAuthTries <= 0 || c.MaxSessions <= 0 || c.KeepAliveCountMax <= 0 {
		return nil, errors.New("--max-auth-tries, --max-sessions and --keepalive-count-max must be positive")
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
	return c, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", s)
	}
	return l, nil
}

func newLogger(c *serveConfig, w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// warnEnterpriseGaps names, at start, every group CA with members its
// certificates no longer log in as (they are not enterprise users of the
// CA's group): loud, not silent, after an upgrade.
func warnEnterpriseGaps(ctx context.Context, store *keystore.Store, log *slog.Logger) {
	gaps, err := store.EnterpriseGaps(ctx)
	if err != nil {
		log.Warn("checking certificate users failed", "err", err)
		return
	}
	for _, g := range gaps {
		members := g.Members
		more := 0
		if len(members) > 20 {
			members, more = members[:20], len(members)-20
		}
		log.Warn("group CA certificates are refused for members who are not enterprise users of its group; an admin sets enterprise_group_id (PUT /users/:id) or runs `keygate enterprise-users --assign`",
			"group", g.GroupPath, "ca_id", g.CAID, "ca_fingerprint", g.CAFingerprint, "members", strings.Join(members, ","), "more", more)
	}
}

// ownListeners are the addresses of keygate's listeners other than SSH,
// which the bastion must never reach unless an admin names them.
func ownListeners(lns ...net.Listener) []netip.AddrPort {
	var out []netip.AddrPort
	for _, l := range lns {
		if ap, err := netip.ParseAddrPort(l.Addr().String()); err == nil {
			out = append(out, ap)
		}
	}
	return out
}

// serve runs keygate until ctx ends.
func serve(ctx context.Context, c *serveConfig, stderr io.Writer) error {
	log := newLogger(c, stderr)
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return err
	}
	dsn := c.DB
	if dsn == "" {
		dsn = filepath.Join(c.DataDir, "keygate.db")
	}
	store, err := keystore.Open(ctx, keystore.Config{DSN: dsn, NoMigrate: c.NoMigrate, Log: log})
	if err != nil {
		return err
	}
	defer store.Close()

	if err := bootstrapAdmin(ctx, store, c.DataDir, log, stderr, c.LogFormat == "json"); err != nil {
		return err
	}

	warnEnterpriseGaps(ctx, store, log)

	index := authindex.New(store)
	loadStart := time.Now()
	if err := index.Load(ctx); err != nil {
		return fmt.Errorf("loading the auth index: %w", err)
	}
	index.Follow()
	log.Info("auth index loaded", "keys", index.Len(), "applied", index.Applied(), "took", time.Since(loadStart).Round(time.Millisecond))
	// The feed applies changes committed by other nodes sharing the
	// database (and anything the local path missed).
	feed := authindex.NewFeed(index, authindex.FeedConfig{PollInterval: c.IndexPollInterval, Log: log.With("component", "index-feed")})

	hostKeys, err := sshd.LoadOrCreateHostKeys(c.DataDir)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	repos := keystore.Repos{Root: filepath.Join(c.DataDir, "repositories"), Home: filepath.Join(c.DataDir, "git-home")}
	if err := os.MkdirAll(repos.Root, 0o750); err != nil {
		return err
	}
	if _, err := keystore.PrepareGitHome(repos.Home); err != nil {
		return err
	}

	sshLn, err := net.Listen("tcp", c.SSHAddr)
	if err != nil {
		return err
	}
	httpLn, err := net.Listen("tcp", c.HTTPAddr)
	if err != nil {
		sshLn.Close()
		return err
	}
	sshPort := sshLn.Addr().(*net.TCPAddr).Port

	sshSrv, err := sshd.New(sshd.Config{
		Addr: c.SSHAddr, HostKeys: hostKeys, Hostname: c.Hostname, GitUser: c.GitUser,
		ReposDir: repos.Root, GitHome: repos.Home, Auth: index, Projects: store, Usage: store, Events: store, Log: log, Registry: reg,
		LoginGraceTime: c.LoginGraceTime, MaxAuthTries: c.MaxAuthTries, MaxSessions: c.MaxSessions,
		KeepAliveInterval: c.KeepAliveInterval, KeepAliveCountMax: c.KeepAliveCountMax,
		MaxStartups: c.MaxStartups, PerSourceMaxStartups: c.PerSourceMaxStartups,
		PerSourceMaxAuthFailures: c.PerSourceMaxAuthFailures, PerSourcePenaltyWindow: c.PerSourcePenaltyWindow,
		PerSourceTrustWindow: c.PerSourceTrustWindow, PerSourceExempt: c.PerSourceExempt,
		CertClockSkew: c.CertClockSkew, CertRequirePrincipals: c.CertRequirePrincipals,
		MaxAuthRequests: c.MaxAuthRequests, IdleTimeout: c.IdleTimeout,
		ProxyProtocol: c.ProxyProtocol, ProxyTrusted: c.ProxyTrusted,
		OwnListeners: ownListeners(httpLn),
	})
	if err != nil {
		return err
	}
	var ready atomic.Bool
	api, err := httpapi.New(httpapi.Config{
		Store: store, Log: log, Version: version, MaxBodyBytes: c.MaxBodyBytes,
		Ready: ready.Load, Registry: reg,
		Repos: repos, Hostname: c.Hostname, SSHPort: sshPort, GitUser: c.GitUser,
		IndexStatus: feed.Status, IndexMaxLag: c.IndexMaxLag,
	})
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("keygate started", "version", version, "ssh", sshLn.Addr().String(), "http", httpLn.Addr().String(), "data_dir", c.DataDir)
	ready.Store(true)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return feed.Run(gctx) })
	g.Go(func() error { return sshSrv.Serve(sshLn) })
	g.Go(func() error {
		if err := srv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		ready.Store(false)
		log.Info("shutting down", "grace", c.ShutdownGrace)
		sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownGrace)
		defer cancel()
		var wg errgroup.Group
		wg.Go(func() error { return sshSrv.Shutdown(sctx) })
		wg.Go(func() error { return srv.Shutdown(sctx) })
		if err := wg.Wait(); err != nil {
			log.Warn("shutdown", "err", err)
		}
		return nil
	})
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("keygate stopped")
	return nil
}

// bootstrapAdmin makes sure an admin can log in: with KEYGATE_ADMIN_TOKEN,
// root holds that token; otherwise the first start creates root with a
// generated token, printed once and written to DATA_DIR/admin-token.
func bootstrapAdmin(ctx context.Context, store *keystore.Store, dataDir string, log *slog.Logger, stderr io.Writer, jsonOut bool) error {
	if store.ReadOnly() {
		log.Warn("the database file cannot be written: opened read-only; serving authentication and reads, refusing writes with 503")
	}
	if given := os.Getenv("KEYGATE_ADMIN_TOKEN"); given != "" {
		if _, err := store.EnsureAdmin(ctx, given); err != nil {
			return fmt.Errorf("bootstrap admin: %w", err)
		}
		log.Info("admin token from KEYGATE_ADMIN_TOKEN is valid for user root")
		return nil
	}
	// Nodes starting together on an empty database may all get here: the
	// store checks for an admin and creates root in one serialised write
	// transaction, so exactly one of them creates the token and writes and
	// prints it. The file is written inside that transaction, before the
	// commit: a start interrupted in between leaves a file with an unusable
	// token that the next start replaces, never a token nobody can read.
	secret := keystore.NewTokenSecret()
	path := filepath.Join(dataDir, "admin-token")
	created, err := store.BootstrapAdmin(ctx, secret, func() error {
		if err := writeFileSync(path, []byte(secret+"\n"), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	if !created {
		log.Info("an admin user already exists: no admin token generated")
		return nil
	}
	if jsonOut {
		// One JSON object like the log lines around it, so log pipelines
		// parsing stderr do not choke; written directly rather than through
		// the logger, as this is the one place a secret is meant to be shown.
		b, _ := json.Marshal(map[string]string{
			"time": time.Now().Format(time.RFC3339Nano), "level": "WARN",
			"msg":         "created admin user root with an API token, shown once and saved in admin_token_file (mode 0600)",
			"admin_token": secret, "admin_token_file": path,
		})
		fmt.Fprintf(stderr, "%s\n", b)
		return nil
	}
	fmt.Fprintf(stderr, "\nkeygate: created admin user root with API token\n\n    %s\n\nIt is shown once and saved in %s (mode 0600).\n\n", secret, path)
	return nil
}

// writeFileSync writes a file atomically and durably.
func writeFileSync(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
