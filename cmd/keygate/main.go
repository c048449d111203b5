// Command keygate runs the keygate SSH server and REST API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/keygate/keygate/httpapi"
	"github.com/keygate/keygate/internal/packcache"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
	"github.com/keygate/keygate/sshd"
)

// The index is what the SSH server reads.
var _ sshd.Authorizer = (*authindex.Index)(nil)

// versionLine is what `keygate version` prints: the version, the commit
// it was built from (from the build's VCS stamp; "unknown" for go run or a
// build outside a checkout) and the Go version.
func versionLine() string {
	rev, dirty := vcsCommit()
	if rev == "" {
		rev = "unknown"
	}
	if dirty {
		rev += "+dirty"
	}
	return fmt.Sprintf("keygate %s (commit %s, %s %s/%s)", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

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
	case "hostkeys":
		return runHostKeys(args[1:], stdout, stderr)
	case packcache.HookCommand:
		// upload-pack runs this (uploadpack.packObjectsHook), never a person.
		return packcache.HookMain(args[1:], os.Stdin, stdout, stderr)
	case "fleet-sync":
		return runFleetSync(args[1:], stdout, stderr)
	case "reset-admin-token":
		return runResetAdminToken(args[1:], stdout, stderr)
	case "backup":
		return runBackup(args[1:], stdout, stderr)
	case "restore":
		return runRestore(args[1:], stdout, stderr)
	case "users", "keys", "groups", "tokens", "cas":
		return runAdmin(args[0], args[1:], stdout, stderr)
	case "login":
		return runLogin(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, versionLine())
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
  keygate hostkeys [--data-dir DIR] [--db DSN] [--hostname H] [--ssh-addr ADDR] [--host-certificate FILE]
                            print the host key fingerprints and known_hosts lines, and the
                            @cert-authority lines of the host certificates' CA and of keygate's
                            managed host CAs
  keygate fleet-sync --url URL --group ID|PATH [--dir DIR] [--token-file F] [--once] [--principals]
                            keep an OpenSSH server's RevokedKeys KRL, TrustedUserCAKeys file and
                            principals in step with a group (docs/openssh-fleet.md)
  keygate reset-admin-token [flags]
                            make root an active admin holding a valid api token: KEYGATE_ADMIN_TOKEN
                            if set, else a new one (printed once, saved in DATA_DIR/admin-token);
                            KEYGATE_ADMIN_TOKEN alone applies only to a keystore without an admin
  keygate backup --output FILE [--with-repositories] [flags]
                            an online, consistent backup: the keystore, the SSH host keys (and the repositories)
  keygate restore --input FILE [flags]
                            bring a backup back into an empty data dir (or empty --db)
  keygate login --server URL [--token PAT] [--key PATH] [--create-key] [--ttl D]
                            get a short-lived SSH certificate: sign in with the OpenID Connect issuer keygate
                            trusts (device flow: open the URL it prints) or with a personal access token; the
                            certificate goes beside the key (KEY-cert.pub) and, with the key, into ssh-agent
  keygate version           print the version, the commit and the Go version
The admin command line, a client of a running keygate's REST API (docs/cli.md):
`)
	adminUsage(w, "")
	fmt.Fprint(w, `The database flags of migrate, export, import, backup, restore, enterprise-users and reset-admin-token are serve's: --db (env KEYGATE_DB)
and --data-dir (env KEYGATE_DATA_DIR).
`)
}

func newLogger(c *serveConfig, w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		// Durations as "10s", not integer nanoseconds.
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				return slog.String(a.Key, a.Value.Duration().String())
			}
			return a
		}
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

// listen binds the SSH, REST and (if set) metrics listeners; an error
// names the flag ("--ssh-addr :2222: address already in use").
func listen(c *serveConfig) ([3]net.Listener, error) {
	var lns [3]net.Listener
	for i, l := range []struct{ flag, addr string }{{"--ssh-addr", c.SSHAddr}, {"--http-addr", c.HTTPAddr}, {"--metrics-addr", c.MetricsAddr}} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			for _, o := range lns {
				if o != nil {
					o.Close()
				}
			}
			if errors.Is(err, syscall.EADDRINUSE) {
				return lns, fmt.Errorf("%s %s: address already in use", l.flag, l.addr)
			}
			return lns, fmt.Errorf("%s %s: %w", l.flag, l.addr, err)
		}
		lns[i] = ln
	}
	return lns, nil
}

// checkDataDir creates the data dir (0700) and proves it writable.
func checkDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--data-dir %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".preflight-")
	if err != nil {
		if errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES) {
			// A read-only data dir is allowed (a read-only SQLite mount is
			// served read-only); the database open decides.
			return nil
		}
		return fmt.Errorf("--data-dir %s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// minGit is the oldest git keygate runs: `git init --initial-branch`
// needs 2.28.
var minGit = [2]int{2, 28}

// checkGit finds git on PATH and checks its version.
func checkGit() (path, version string, err error) {
	path, err = keystore.ResolveGit("git")
	if err != nil {
		return "", "", fmt.Errorf("git not found on PATH (keygate runs git %d.%d or newer for every clone and push): %w", minGit[0], minGit[1], err)
	}
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return "", "", fmt.Errorf("%s --version: %w", path, err)
	}
	version = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "git version "))
	var major, minor int
	if _, err := fmt.Sscanf(version, "%d.%d", &major, &minor); err != nil {
		return "", "", fmt.Errorf("%s: cannot read its version %q", path, version)
	}
	if major < minGit[0] || major == minGit[0] && minor < minGit[1] {
		return "", "", fmt.Errorf("%s is git %s; keygate needs %d.%d or newer", path, version, minGit[0], minGit[1])
	}
	return path, version, nil
}

// ownListeners are the addresses of keygate's listeners other than SSH,
// which the bastion must never reach unless an admin names them.
func ownListeners(lns ...net.Listener) []netip.AddrPort {
	var out []netip.AddrPort
	for _, l := range lns {
		if l == nil {
			continue
		}
		if ap, err := netip.ParseAddrPort(l.Addr().String()); err == nil {
			out = append(out, ap)
		}
	}
	return out
}

// openPackCache starts the pack-objects cache (nil when
// --pack-cache-max-bytes is 0). A default directory that cannot be created
// (a read-only data dir) turns it off with a warning; a chosen one that
// cannot is an error.
func openPackCache(c *serveConfig, gitBin, gitHome string, reg prometheus.Registerer, log *slog.Logger) (*packcache.Cache, error) {
	if c.PackCacheMaxBytes == 0 {
		return nil, nil
	}
	dir := c.PackCacheDir
	if dir == "" {
		dir = filepath.Join(c.DataDir, "pack-cache")
	}
	pc, err := packcache.New(packcache.Config{
		Dir: dir, GitBin: gitBin, GitHome: gitHome,
		MaxBytes: c.PackCacheMaxBytes, MaxEntryBytes: c.PackCacheMaxEntryBytes,
		TTL: c.PackCacheTTL, ReaderTimeout: c.PackCacheReaderTimeout,
		Log: log.With("component", "pack-cache"), Registry: reg,
	})
	switch {
	case err != nil && c.PackCacheDir != "":
		return nil, fmt.Errorf("--pack-cache-dir: %w", err)
	case err != nil:
		log.Warn("pack-objects cache off: its directory cannot be used", "dir", dir, "err", err)
		return nil, nil
	}
	log.Info("pack-objects cache", "dir", dir, "max_bytes", c.PackCacheMaxBytes, "max_entry_bytes", c.PackCacheMaxEntryBytes,
		"ttl", c.PackCacheTTL)
	return pc, nil
}

// serve runs keygate until ctx ends.
func serve(ctx context.Context, c *serveConfig, stderr io.Writer) error {
	log := newLogger(c, stderr)
	// Preflight, before anything is created or printed: the listeners
	// bind, the data dir is writable, git is there and new enough, the
	// database opens. Only then is the admin bootstrapped.
	lns, err := listen(c)
	if err != nil {
		return err
	}
	sshLn, httpLn, metricsLn := lns[0], lns[1], lns[2]
	defer func() {
		for _, l := range lns {
			if l != nil {
				l.Close()
			}
		}
	}()
	if err := checkDataDir(c.DataDir); err != nil {
		return err
	}
	unlock, err := keystore.LockDataDir(c.DataDir, false)
	if err != nil {
		return fmt.Errorf("--data-dir %s: a keygate-load seed is writing it; wait for it to finish: %w", c.DataDir, err)
	}
	defer unlock()
	if err := tlsFromCredentials(c); err != nil {
		return err
	}
	var certs *certReloader
	if c.TLSCert != "" {
		if certs, err = newCertReloader(c.TLSCert, c.TLSKey, log); err != nil {
			return err
		}
	}
	gitBin, gitVersion, err := checkGit()
	if err != nil {
		return err
	}
	dsn, err := c.dsn()
	if err != nil {
		return err
	}
	caKey, caKeyFrom, err := loadCAKey(c)
	if errors.Is(err, errNoCAKeyFile) {
		log.Warn("managed SSH certificate authorities can neither be generated nor sign", "reason", err.Error())
	} else if err != nil {
		return err
	}
	store, err := keystore.Open(ctx, keystore.Config{DSN: dsn, NoMigrate: c.NoMigrate, Log: log, CAKey: caKey, CertMaxTTL: c.CertMaxTTL,
		MustExist: c.DB != ""})
	if err != nil {
		return dbError(where(dsn), err)
	}
	defer store.Close()
	if c.NoMigrate {
		if err := store.RequireCurrentSchema(ctx); err != nil {
			return dbError(where(dsn), err)
		}
	}
	if caKey != nil {
		log.Info("CA encryption key loaded", "from", caKeyFrom, "key_id", caKey.ID())
		warnSealedCAs(ctx, store, caKey, log)
	}
	log.Info("preflight passed", "git", gitBin, "git_version", gitVersion, "backend", store.Backend())

	if err := bootstrapAdmin(ctx, store, c.DataDir, log); err != nil {
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
	for _, k := range hostKeys {
		log.Info("host key", "type", k.PublicKey().Type(), "fingerprint", gossh.FingerprintSHA256(k.PublicKey()))
	}
	hostCerts, err := sshd.LoadHostCertificates(c.DataDir, c.HostCertificates, hostKeys)
	if err != nil {
		return err
	}
	logHostCertificates(log, hostCerts, c.Hostname, time.Now())
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo())
	streamer, err := newStreamer(c, store, reg, log)
	if err != nil {
		return err
	}
	// The file sink takes every event from here on: before any listener
	// accepts a request that could record one.
	if err := streamer.Register(ctx); err != nil {
		log.Warn("audit streaming: registering the file sink failed; retrying in the background", "err", err)
	}
	repos := keystore.Repos{Root: filepath.Join(c.DataDir, "repositories"), Home: filepath.Join(c.DataDir, "git-home")}
	if err := os.MkdirAll(repos.Root, 0o750); err != nil {
		return err
	}
	if _, err := keystore.PrepareGitHome(repos.Home); err != nil {
		return err
	}

	sshPort := sshLn.Addr().(*net.TCPAddr).Port

	// The flags filled the SSH settings (parseServe checked them with
	// sshd.Config.Check); serve adds what only a running node has.
	sc := c.Config
	sc.Addr, sc.HostKeys, sc.ReposDir, sc.GitHome = c.SSHAddr, hostKeys, repos.Root, repos.Home
	sc.HostCertificates = hostCerts
	// keygate's managed host CA, if an admin made one, signs the host keys
	// that have no certificate file.
	sc.HostCA = store
	sc.Auth, sc.Projects, sc.Usage, sc.Events, sc.Log, sc.Registry = index, store, store, store, log, reg
	sc.LFSLocks = store
	sc.OwnListeners = ownListeners(httpLn, metricsLn)
	pc, err := openPackCache(c, gitBin, repos.Home, reg, log)
	if err != nil {
		return err
	}
	if pc != nil {
		defer pc.Close()
		sc.PackCache = pc
	}
	sshSrv, err := sshd.New(sc)
	if err != nil {
		return err
	}
	// The host certificates of the moment: from files, and the managed
	// host CA's, renewed while keygate runs.
	reg.MustRegister(certificateExpiry(certs, sshSrv.PresentedHostCertificates))
	var ready atomic.Bool
	api, err := httpapi.New(httpapi.Config{
		Store: store, Log: log, Version: version, MaxBodyBytes: c.MaxBodyBytes,
		Ready: ready.Load, Registry: reg,
		Repos: repos, Hostname: c.Hostname, SSHPort: sshPort, GitUser: c.GitUser,
		IndexStatus: feed.Status, IndexMaxLag: c.IndexMaxLag,
		SeparateMetrics: metricsLn != nil,
		ExternalURL:     c.ExternalURL, TrustedProxies: c.TrustedProxies,
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
	scheme := "http"
	if certs != nil {
		scheme = "https"
		srv.TLSConfig = certs.tlsConfig()
	}
	log.Info("keygate started", "version", version, "ssh", sshLn.Addr().String(), "http", httpLn.Addr().String(), "scheme", scheme, "data_dir", c.DataDir)
	hup := catchSIGHUP() // before READY=1: a reload never finds SIGHUP's default (exit)
	defer signal.Stop(hup)
	ready.Store(true)
	notifier := newNotifier(log)
	notifier.ready("serving")

	var metricsSrv *http.Server
	if metricsLn != nil {
		metricsSrv = &http.Server{Handler: api.OpsHandler(), ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return feed.Run(gctx) })
	g.Go(func() error { return streamer.Run(gctx) })
	if metricsSrv != nil {
		g.Go(func() error {
			if err := metricsSrv.Serve(metricsLn); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	g.Go(func() error { return sshSrv.Serve(sshLn) })
	g.Go(func() error { handleReloads(gctx, hup, certs, notifier, log); return nil })
	g.Go(func() error {
		serveHTTP := func() error { return srv.Serve(httpLn) }
		if certs != nil {
			// ServeTLS with the certificate in TLSConfig; HTTP/2 is on.
			serveHTTP = func() error { return srv.ServeTLS(httpLn, "", "") }
		}
		if err := serveHTTP(); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		ready.Store(false)
		notifier.stopping()
		log.Info("shutting down", "grace", c.ShutdownGrace)
		sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownGrace)
		defer cancel()
		var wg errgroup.Group
		wg.Go(func() error { return sshSrv.Shutdown(sctx) })
		wg.Go(func() error { return srv.Shutdown(sctx) })
		if metricsSrv != nil {
			wg.Go(func() error { return metricsSrv.Shutdown(sctx) })
		}
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
