package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
)

// dbConfig is where a one-shot command finds the keystore: the same
// --db / KEYGATE_DB and --data-dir / KEYGATE_DATA_DIR as serve.
type dbConfig struct {
	DataDir string
	DB      string
	// log receives the keystore's own messages (migrations applied); nil
	// discards them.
	log *slog.Logger
}

func (c *dbConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", env("KEYGATE_DATA_DIR", "./keygate-data"), "data directory holding keygate.db when --db is empty (env KEYGATE_DATA_DIR)")
	fs.StringVar(&c.DB, "db", env("KEYGATE_DB", ""), "database: empty for SQLite in the data dir, or postgres://… (env KEYGATE_DB)")
}

// dsn is the store DSN; existing requires a SQLite file to be there
// already, named by --db or in the data dir.
func (c *dbConfig) dsn(existing bool) (string, error) {
	if c.DB != "" {
		dsn, err := resolveDB(c.DB, c.DataDir)
		if err != nil {
			return "", err
		}
		if existing {
			if err := checkExplicitDB(c.DB, dsn); err != nil {
				return "", err
			}
		}
		return dsn, nil
	}
	path := filepath.Join(c.DataDir, "keygate.db")
	if existing {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("no keystore at %s (set --data-dir or --db)", path)
		}
	}
	return path, nil
}

// open opens the keystore at dsn; a SQLite file named by --db must exist
// unless create.
func (c *dbConfig) open(ctx context.Context, dsn string, noMigrate, create bool) (*keystore.Store, error) {
	s, err := keystore.Open(ctx, keystore.Config{DSN: dsn, NoMigrate: noMigrate, MustExist: !create && sqlitePath(dsn) != "", Log: c.log})
	if err != nil {
		return nil, dbError(where(dsn), err)
	}
	return s, nil
}

// where names the keystore for messages, without credentials.
func where(dsn string) string {
	if !keystore.IsPostgresDSN(dsn) {
		return dsn
	}
	if i := strings.Index(dsn, "://"); i >= 0 {
		rest := dsn[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			rest = rest[at+1:]
		}
		if q := strings.IndexByte(rest, '?'); q >= 0 {
			rest = rest[:q]
		}
		return "postgres://" + rest
	}
	return "PostgreSQL"
}

// parseOneShot parses a one-shot command's flags.
func parseOneShot(name string, args []string, stderr io.Writer, c *dbConfig, extra func(fs *flag.FlagSet)) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.flags(fs)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return nil
}

// runOneShot runs a one-shot command and turns its outcome into an exit code.
func runOneShot(args []string, stdout, stderr io.Writer, name string, parse func([]string) error,
	do func(ctx context.Context) error) int {
	if err := parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "keygate %s: %v\n", name, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := do(ctx); err != nil {
		fmt.Fprintf(stderr, "keygate %s: %v\n", name, err)
		return 1
	}
	return 0
}

// runMigrate: keygate migrate applies pending migrations and exits; with
// --create it makes a new, empty keystore at an explicit --db path (whose
// directory must exist), the one deliberate way to do so.
func runMigrate(args []string, stdout, stderr io.Writer) int {
	var c dbConfig
	var create bool
	return runOneShot(args, stdout, stderr, "migrate",
		func(a []string) error {
			return parseOneShot("migrate", a, stderr, &c, func(fs *flag.FlagSet) {
				fs.BoolVar(&create, "create", false, "create the SQLite file named by --db if it does not exist (its directory must)")
			})
		},
		func(ctx context.Context) error {
			dsn, err := c.dsn(false)
			if err != nil {
				return err
			}
			if c.DB == "" {
				if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
					return err
				}
			} else if !create {
				if err := checkExplicitDB(c.DB, dsn); err != nil {
					return err
				}
			}
			c.log = slog.New(slog.NewTextHandler(stderr, nil))
			s, err := c.open(ctx, dsn, true, true)
			if err != nil {
				return err
			}
			defer s.Close()
			before, _, err := s.SchemaVersion(ctx)
			if err != nil {
				return err
			}
			if err := s.Migrate(ctx); err != nil {
				return dbError(where(dsn), err)
			}
			after, _, err := s.SchemaVersion(ctx)
			if err != nil {
				return err
			}
			if before == after {
				fmt.Fprintf(stdout, "%s (%s): schema at version %d, nothing to do\n", where(dsn), s.Backend(), after)
			} else {
				fmt.Fprintf(stdout, "%s (%s): schema migrated from version %d to %d\n", where(dsn), s.Backend(), before, after)
			}
			return nil
		})
}

// runExport: keygate export [--out FILE] writes the keystore as JSON.
func runExport(args []string, stdout, stderr io.Writer) int {
	var c dbConfig
	var out string
	return runOneShot(args, stdout, stderr, "export",
		func(a []string) error {
			return parseOneShot("export", a, stderr, &c, func(fs *flag.FlagSet) {
				fs.StringVar(&out, "out", "", "write to FILE (mode 0600) instead of standard output")
			})
		},
		func(ctx context.Context) error {
			dsn, err := c.dsn(true)
			if err != nil {
				return err
			}
			// The source is read as it is: no migrations.
			s, err := c.open(ctx, dsn, true, false)
			if err != nil {
				return err
			}
			defer s.Close()
			if out == "" || out == "-" {
				return s.Export(ctx, stdout)
			}
			// The export holds token digests and e-mail addresses: private
			// file, written whole or not at all.
			tmp := out + ".tmp"
			f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			if err := s.Export(ctx, f); err != nil {
				f.Close()
				os.Remove(tmp)
				return err
			}
			if err := f.Sync(); err != nil {
				f.Close()
				os.Remove(tmp)
				return err
			}
			if err := f.Close(); err != nil {
				os.Remove(tmp)
				return err
			}
			if err := os.Rename(tmp, out); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "keygate export: %s (%s) written to %s\n", where(dsn), s.Backend(), out)
			return nil
		})
}

// runImport: keygate import --in FILE loads an export into an empty keystore.
func runImport(args []string, stdout, stderr io.Writer) int {
	var c dbConfig
	var in string
	return runOneShot(args, stdout, stderr, "import",
		func(a []string) error {
			err := parseOneShot("import", a, stderr, &c, func(fs *flag.FlagSet) {
				fs.StringVar(&in, "in", "", "the export to load (- for standard input)")
			})
			if err == nil && in == "" {
				err = errors.New("--in FILE is required")
			}
			return err
		},
		func(ctx context.Context) error {
			var r io.Reader = os.Stdin
			if in != "-" {
				f, err := os.Open(in)
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			dsn, err := c.dsn(false)
			if err != nil {
				return err
			}
			if c.DB == "" {
				if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
					return err
				}
			}
			// An import makes a new keystore on purpose: the file may be new
			// (its directory must exist).
			s, err := c.open(ctx, dsn, false, true)
			if err != nil {
				return err
			}
			defer s.Close()
			if err := s.Import(ctx, r); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "imported into %s (%s)\n", where(dsn), s.Backend())
			return nil
		})
}

// runEnterpriseUsers: keygate enterprise-users [--assign] lists group CAs
// whose members are not enterprise users of the CA's group, and with
// --assign makes each user in exactly one CA-bearing top-level group its
// enterprise user.
func runEnterpriseUsers(args []string, stdout, stderr io.Writer) int {
	var c dbConfig
	var assign bool
	return runOneShot(args, stdout, stderr, "enterprise-users",
		func(a []string) error {
			return parseOneShot("enterprise-users", a, stderr, &c, func(fs *flag.FlagSet) {
				fs.BoolVar(&assign, "assign", false, "assign users who are members of exactly one CA-bearing top-level group to it")
			})
		},
		func(ctx context.Context) error {
			dsn, err := c.dsn(true)
			if err != nil {
				return err
			}
			s, err := c.open(ctx, dsn, false, false)
			if err != nil {
				return err
			}
			defer s.Close()
			if assign {
				done, err := s.AssignEnterpriseUsers(ctx, keystore.Actor{}, false)
				if err != nil {
					return err
				}
				for _, a := range done {
					fmt.Fprintf(stdout, "assigned %s (user %d) to enterprise group %s (%d)\n", a.Username, a.UserID, a.GroupPath, a.GroupID)
				}
				fmt.Fprintf(stdout, "%d users assigned\n", len(done))
			}
			gaps, err := s.EnterpriseGaps(ctx)
			if err != nil {
				return err
			}
			for _, g := range gaps {
				fmt.Fprintf(stdout, "CA %d of %s (%s): refused for %s\n", g.CAID, g.GroupPath, g.CAFingerprint, strings.Join(g.Members, ", "))
			}
			if len(gaps) == 0 {
				fmt.Fprintln(stdout, "every member of a CA-bearing group is an enterprise user of it")
			}
			return nil
		})
}

// runResetAdminToken: keygate reset-admin-token is the explicit way back
// in for an operator (KEYGATE_ADMIN_TOKEN applies only to a keystore's
// first start): root becomes an active admin, created if need be, holding a
// valid api token. With KEYGATE_ADMIN_TOKEN set, that string is the token
// (restored if it was revoked); otherwise a new one is generated, written
// to DATA_DIR/admin-token (mode 0600) and printed once. Root's other
// tokens are left as they are. It is an audit event like any write, and
// may run while keygate serves.
func runResetAdminToken(args []string, stdout, stderr io.Writer) int {
	var c dbConfig
	return runOneShot(args, stdout, stderr, "reset-admin-token",
		func(a []string) error { return parseOneShot("reset-admin-token", a, stderr, &c, nil) },
		func(ctx context.Context) error {
			dsn, err := c.dsn(true)
			if err != nil {
				return err
			}
			s, err := c.open(ctx, dsn, false, false)
			if err != nil {
				return err
			}
			defer s.Close()
			actor := keystore.Actor{} // the system, as for every start-up write
			if given := os.Getenv("KEYGATE_ADMIN_TOKEN"); given != "" {
				if _, err := s.ResetAdminToken(ctx, actor, given); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%s (%s): root is an active admin and KEYGATE_ADMIN_TOKEN is a valid api token for it\n", where(dsn), s.Backend())
				return nil
			}
			// The file first: a failed write below leaves an unusable token
			// in it, never a working token nobody can read.
			secret := keystore.NewTokenSecret()
			if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
				return err
			}
			path := filepath.Join(c.DataDir, "admin-token")
			if err := writeFileSync(path, []byte(secret+"\n"), 0o600); err != nil {
				return fmt.Errorf("write %s: %w", path, err)
			}
			if _, err := s.ResetAdminToken(ctx, actor, secret); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s (%s): root is an active admin with a new api token, shown once and saved in %s (mode 0600):\n\n    %s\n\n",
				where(dsn), s.Backend(), path, secret)
			return nil
		})
}

// runHostKeys: keygate hostkeys prints the host keys' fingerprints and
// known_hosts lines for the configured host name and SSH port, and the
// @cert-authority lines of the host CAs that certify them: those of the
// certificate files, and keygate's managed host CAs (read from the
// keystore when there is one).
func runHostKeys(args []string, stdout, stderr io.Writer) int {
	var db dbConfig
	var hostname, sshAddr, hostCerts string
	host, _ := os.Hostname()
	return runOneShot(args, stdout, stderr, "hostkeys",
		func(a []string) error {
			fs := flag.NewFlagSet("hostkeys", flag.ContinueOnError)
			fs.SetOutput(stderr)
			fs.StringVar(&db.DataDir, "data-dir", env("KEYGATE_DATA_DIR", "./keygate-data"), "data directory holding the host keys (env KEYGATE_DATA_DIR)")
			fs.StringVar(&db.DB, "db", env("KEYGATE_DB", ""), "database holding the managed host CAs: empty for SQLite in the data dir, or postgres://… (env KEYGATE_DB)")
			fs.StringVar(&hostname, "hostname", env("KEYGATE_HOSTNAME", host), "host name for the known_hosts lines (env KEYGATE_HOSTNAME)")
			fs.StringVar(&sshAddr, "ssh-addr", env("KEYGATE_SSH_ADDR", ":2222"), "SSH listen address, for the port (env KEYGATE_SSH_ADDR)")
			fs.StringVar(&hostCerts, "host-certificate", env("KEYGATE_HOST_CERTIFICATE", ""), "comma-separated host certificate files besides DATA_DIR/<host key>-cert.pub (env KEYGATE_HOST_CERTIFICATE)")
			if err := fs.Parse(a); err != nil {
				return err
			}
			if fs.NArg() > 0 {
				return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
			}
			return nil
		},
		func(ctx context.Context) error {
			dataDir := db.DataDir
			_, port, err := net.SplitHostPort(sshAddr)
			if err != nil {
				return fmt.Errorf("--ssh-addr %s: %w", sshAddr, err)
			}
			known := hostname
			if port != "22" {
				known = "[" + hostname + "]:" + port
			}
			var lines []string
			for _, name := range []string{"ssh_host_ed25519_key.pub", "ssh_host_ecdsa_key.pub", "ssh_host_rsa_key.pub"} {
				data, err := os.ReadFile(filepath.Join(dataDir, name))
				if err != nil {
					return fmt.Errorf("no host keys in %s (keygate serve makes them on its first start): %w", dataDir, err)
				}
				pub, _, _, _, err := gossh.ParseAuthorizedKey(data)
				if err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				fmt.Fprintf(stdout, "%s %s\n", gossh.FingerprintSHA256(pub), pub.Type())
				lines = append(lines, known+" "+strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pub))))
			}
			fmt.Fprintln(stdout, "# known_hosts:")
			for _, l := range lines {
				fmt.Fprintln(stdout, l)
			}
			certs, err := readHostCertificates(dataDir, hostCerts)
			if err != nil {
				return err
			}
			printCertAuthorities(stdout, known, certs)
			cas, err := managedHostCAs(ctx, db)
			if err != nil {
				return err
			}
			printManagedHostCAs(stdout, known, cas)
			return nil
		})
}
