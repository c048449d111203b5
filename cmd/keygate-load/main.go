// Command keygate-load is an SSH load generator and a keystore seeder for
// benchmarks.
//
//	keygate-load run --addr HOST:PORT --user git --key PATH [--cert PATH] [--cmd CMD]
//	    [--concurrency N] [--duration D | --count N] [--json] [--host-key-check=false]
//	keygate-load seed --data-dir DIR --keys N [--db PATH] [--write-keys FILE]
//	keygate-load hold --addr HOST:PORT --user git --key PATH --conns N [--duration D]
//	keygate-load storm --clients N --mode clone --url URL --key PATH
//	keygate-load storm --clients N --mode upload-pack --addr HOST:PORT --path REPO --key PATH
//
// run opens connections in a loop (TCP connect, key exchange, public-key
// authentication, optionally one command) and reports handshakes per
// second, latency percentiles and errors by kind. seed fills the SQLite
// keystore of a stopped keygate with N users holding one ed25519 key each.
// hold opens N authenticated connections and keeps them open, idle, for a
// while (to measure a server's memory per idle connection).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(cli(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  keygate-load run --addr HOST:PORT [--user git] --key PATH [--cert PATH] [--cmd CMD]
                   [--concurrency N] [--duration D | --count N] [--json] [--host-key-check=false]
      Opens SSH connections as fast as it can (handshake, auth, one session running
      --cmd or the greeting) and reports handshakes per second and latencies.
  keygate-load seed --data-dir DIR --keys N [--db PATH] [--write-keys FILE] [--json]
      Fills the SQLite keystore of a stopped keygate with N users and keys (refused
      while a keygate holds the data dir); --write-keys saves one private key for run.
  keygate-load hold --addr HOST:PORT [--user git] --key PATH --conns N [--duration D]
                    [--concurrency N] [--json] [--host-key-check=false]
      Opens N authenticated connections and keeps them idle, to measure memory per
      connection.
  keygate-load storm --clients N [--mode clone] --url ssh://USER@HOST:PORT/PATH --key PATH [--dir DIR]
  keygate-load storm --clients N --mode upload-pack --addr HOST:PORT [--user git] --path PATH --key PATH
      A clone storm: N identical clones of one repository started at once — real git
      clones (into DIR, removed after), or at the protocol level (every branch and tag
      fetched over SSH, the pack read and dropped) for larger N. Reports the time to the
      last clone and the bytes received.
A load test from one address trips keygate's per-source limits: start keygate with
  --max-startups 1000 --per-source-max-startups -1 --per-source-max-auth-failures -1
(or --per-source-exempt 127.0.0.1/32) on a test machine; with one key, more than 100
connections at once (hold) also need --max-connections-per-principal -1.
`

// cli runs one subcommand and returns the exit status.
func cli(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cliRun(ctx, args[1:], stdout, stderr)
	case "seed":
		return cliSeed(ctx, args[1:], stdout, stderr)
	case "hold":
		return cliHold(ctx, args[1:], stdout, stderr)
	case "storm":
		return cliStorm(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "keygate-load: unknown command %q\n%s", args[0], usage)
	return 2
}

// clientFlags are the connection flags run and hold share.
type clientFlags struct {
	addr, user, key, cert, known *string
	timeout                      *time.Duration
	asJSON, check                *bool
}

func addClientFlags(fs *flag.FlagSet, timeoutHelp string) clientFlags {
	return clientFlags{
		addr:    fs.String("addr", "", "server HOST:PORT"),
		user:    fs.String("user", "git", "SSH login name"),
		key:     fs.String("key", "", "private key file (ed25519, ecdsa or rsa; unencrypted)"),
		cert:    fs.String("cert", "", "certificate for the key (-cert.pub)"),
		timeout: fs.Duration("timeout", 10*time.Second, timeoutHelp),
		asJSON:  fs.Bool("json", false, "print one JSON object"),
		check:   fs.Bool("host-key-check", true, "check the host key against --known-hosts"),
		known:   fs.String("known-hosts", "", "known_hosts file (default ~/.ssh/known_hosts)"),
	}
}

// credentials loads the key (and certificate) and the host-key check.
func (c clientFlags) credentials() (gossh.Signer, gossh.HostKeyCallback, error) {
	signer, err := loadSigner(*c.key, *c.cert)
	if err != nil {
		return nil, nil, err
	}
	hk, err := hostKeyCallback(*c.check, *c.known)
	return signer, hk, err
}

// printOut writes res as JSON or with print; false if JSON encoding failed.
func printOut[T any](stdout, stderr io.Writer, asJSON bool, res T, print func(io.Writer, T)) bool {
	if !asJSON {
		print(stdout, res)
		return true
	}
	if err := json.NewEncoder(stdout).Encode(res); err != nil {
		fmt.Fprintln(stderr, "keygate-load:", err)
		return false
	}
	return true
}

func cliRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := addClientFlags(fs, "per-connection timeout")
	cmd := fs.String("cmd", "", "command to run after authentication (default: none, close after auth)")
	conc := fs.Int("concurrency", 1, "concurrent workers")
	dur := fs.Duration("duration", 0, "run for this long (default 10s unless --count)")
	count := fs.Int64("count", 0, "stop after this many connection attempts")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *c.addr == "" || *c.key == "" || fs.NArg() != 0 {
		fmt.Fprint(stderr, "keygate-load run: --addr and --key are required\n")
		return 2
	}
	signer, hk, err := c.credentials()
	if err != nil {
		fmt.Fprintln(stderr, "keygate-load:", err)
		return 1
	}
	res, err := runLoad(ctx, runOptions{
		Addr: *c.addr, User: *c.user, Signer: signer, Cmd: *cmd, Concurrency: *conc,
		Duration: *dur, Count: *count, Timeout: *c.timeout, HostKey: hk,
	})
	if err != nil {
		fmt.Fprintln(stderr, "keygate-load:", err)
		return 1
	}
	if !printOut(stdout, stderr, *c.asJSON, res, printResult) || res.Handshakes == 0 {
		return 1
	}
	return 0
}

func cliSeed(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data-dir", "", "keygate data directory (the database is DIR/keygate.db)")
	db := fs.String("db", "", "database: SQLite file path (overrides --data-dir)")
	n := fs.Int("keys", 0, "number of users (one ed25519 key each) to add")
	write := fs.String("write-keys", "", "write the first seeded user's private key (OpenSSH PEM) here")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if (*dir == "" && *db == "") || *n <= 0 || fs.NArg() != 0 {
		fmt.Fprint(stderr, "keygate-load seed: --data-dir (or --db) and --keys N > 0 are required\n")
		return 2
	}
	progress := stderr
	res, err := seed(ctx, seedOptions{DataDir: *dir, DB: *db, Keys: *n, WriteKeys: *write, Progress: progress})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(stderr, "keygate-load: interrupted; the last transaction was rolled back")
		}
		fmt.Fprintln(stderr, "keygate-load:", err)
		return 1
	}
	if *asJSON {
		_ = json.NewEncoder(stdout).Encode(map[string]any{
			"db": res.DBPath, "users": res.Users, "first_user": res.FirstUser, "elapsed_s": res.Elapsed.Seconds(),
		})
	} else {
		fmt.Fprintf(stdout, "seeded %d users with one ed25519 key each into %s in %s (first user %s)\n",
			res.Users, res.DBPath, res.Elapsed.Round(time.Millisecond), res.FirstUser)
	}
	return 0
}

func cliHold(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := addClientFlags(fs, "per-connection timeout (dial + handshake + auth)")
	conns := fs.Int("conns", 0, "connections to open and hold")
	conc := fs.Int("concurrency", 16, "connections being opened at once")
	dur := fs.Duration("duration", 10*time.Second, "how long to hold them once all are open")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *c.addr == "" || *c.key == "" || *conns <= 0 || *dur < 0 || fs.NArg() != 0 {
		fmt.Fprint(stderr, "keygate-load hold: --addr, --key and --conns N > 0 are required\n")
		return 2
	}
	signer, hk, err := c.credentials()
	if err != nil {
		fmt.Fprintln(stderr, "keygate-load:", err)
		return 1
	}
	res, err := hold(ctx, holdOptions{
		Addr: *c.addr, User: *c.user, Signer: signer, Conns: *conns, Concurrency: *conc,
		Duration: *dur, Timeout: *c.timeout, HostKey: hk,
		// On stderr, so a script can wait for it while stdout stays one
		// result (or one JSON object).
		Ready: func(open int) { fmt.Fprintf(stderr, "holding %d connections\n", open) },
	})
	if err != nil {
		fmt.Fprintln(stderr, "keygate-load:", err)
		return 1
	}
	if !printOut(stdout, stderr, *c.asJSON, res, printHold) || res.Opened < int64(*conns) {
		return 1
	}
	return 0
}

func cliStorm(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("storm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := addClientFlags(fs, "per-clone timeout")
	*c.timeout = 10 * time.Minute
	clients := fs.Int("clients", 20, "identical clones started at once")
	mode := fs.String("mode", "clone", "clone (real git clone) or upload-pack (the protocol only)")
	url := fs.String("url", "", "clone mode: the repository's ssh:// URL")
	dir := fs.String("dir", os.TempDir(), "clone mode: where the clones go (each removed after)")
	path := fs.String("path", "", "upload-pack mode: the repository path sent to git-upload-pack")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o := stormOptions{Mode: *mode, Clients: *clients, Timeout: *c.timeout, URL: *url, KeyPath: *c.key, Dir: *dir,
		Addr: *c.addr, User: *c.user, Path: *path}
	switch {
	case *c.key == "" || fs.NArg() != 0 || *clients <= 0:
		fmt.Fprint(stderr, "keygate-load storm: --key and --clients N > 0 are required\n")
		return 2
	case *mode == "clone" && *url == "":
		fmt.Fprint(stderr, "keygate-load storm: --mode clone needs --url\n")
		return 2
	case *mode == "upload-pack" && (*c.addr == "" || *path == ""):
		fmt.Fprint(stderr, "keygate-load storm: --mode upload-pack needs --addr and --path\n")
		return 2
	case *mode == "upload-pack":
		var err error
		if o.Signer, o.HostKey, err = c.credentials(); err != nil {
			fmt.Fprintln(stderr, "keygate-load:", err)
			return 1
		}
	}
	res, err := storm(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "keygate-load:", err)
		return 2
	}
	if !printOut(stdout, stderr, *c.asJSON, res, printStorm) || res.OK < res.Clients {
		return 1
	}
	return 0
}
