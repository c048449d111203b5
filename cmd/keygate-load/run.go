package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Error kinds counted by run.
const (
	errDial      = "dial"
	errHandshake = "handshake"
	errAuth      = "auth"
	errCommand   = "command"
)

// runOptions configures a load run.
type runOptions struct {
	Addr        string
	User        string
	Signer      gossh.Signer // the private key, or a certificate signer
	Cmd         string       // "" : close right after authentication
	Concurrency int
	Duration    time.Duration // 0 with Count > 0: no time bound
	Count       int64         // 0: no count bound
	Timeout     time.Duration // per attempt (dial + handshake + command)
	HostKey     gossh.HostKeyCallback
}

// Latency is a latency summary in milliseconds.
type Latency struct {
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// Result is the outcome of a load run.
type Result struct {
	Addr           string            `json:"addr"`
	User           string            `json:"user"`
	KeyType        string            `json:"key_type"`
	Command        string            `json:"command,omitempty"`
	Concurrency    int               `json:"concurrency"`
	ElapsedSeconds float64           `json:"elapsed_s"`
	Attempts       int64             `json:"attempts"`
	Handshakes     int64             `json:"handshakes"` // connect + key exchange + auth succeeded
	HandshakesPerS float64           `json:"handshakes_per_s"`
	CommandsOK     int64             `json:"commands_ok,omitempty"`
	AuthLatency    Latency           `json:"latency_auth"`          // dial → auth done
	CommandLatency *Latency          `json:"latency_cmd,omitempty"` // dial → command done (with --cmd)
	Errors         map[string]int64  `json:"errors"`
	ExitStatuses   map[string]int64  `json:"exit_statuses,omitempty"` // with --cmd
	ErrorSamples   map[string]string `json:"error_samples,omitempty"` // first error of each kind
}

// TotalErrors is the sum of errors of all kinds.
func (r *Result) TotalErrors() int64 {
	var n int64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

type workerStats struct {
	auth, cmd []time.Duration
	errors    map[string]int64
	samples   map[string]string
	exits     map[string]int64
	okAuth    int64
	okCmd     int64
	attempts  int64
}

func (w *workerStats) fail(kind string, err error) {
	w.errors[kind]++
	if _, ok := w.samples[kind]; !ok && err != nil {
		w.samples[kind] = err.Error()
	}
}

// clientConfig is the SSH client both modes use: user "git", no host key
// check and a 10 s handshake timeout unless told otherwise.
func clientConfig(user string, signer gossh.Signer, hostKey gossh.HostKeyCallback, timeout time.Duration) *gossh.ClientConfig {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if user == "" {
		user = "git"
	}
	if hostKey == nil {
		hostKey = gossh.InsecureIgnoreHostKey()
	}
	return &gossh.ClientConfig{User: user, Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)}, HostKeyCallback: hostKey, Timeout: timeout}
}

// runLoad drives opts.Concurrency workers until the duration or count is
// reached or ctx is done.
func runLoad(ctx context.Context, opts runOptions) (*Result, error) {
	if opts.Addr == "" || opts.Signer == nil {
		return nil, errors.New("addr and key are required")
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.Duration <= 0 && opts.Count <= 0 {
		opts.Duration = 10 * time.Second
	}
	cfg := clientConfig(opts.User, opts.Signer, opts.HostKey, opts.Timeout)
	var issued atomic.Int64
	stats := make([]*workerStats, opts.Concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	// The duration stops workers from starting new connections; those in
	// flight finish (bounded by Timeout) and are counted. ctx (Ctrl-C)
	// cuts everything short.
	var deadline time.Time
	if opts.Duration > 0 {
		deadline = start.Add(opts.Duration)
	}
	for i := range stats {
		w := &workerStats{errors: map[string]int64{}, samples: map[string]string{}, exits: map[string]int64{}}
		stats[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if !deadline.IsZero() && !time.Now().Before(deadline) {
					return
				}
				if opts.Count > 0 && issued.Add(1) > opts.Count {
					return
				}
				w.attempts++
				attempt(ctx, opts, cfg, w)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := &Result{
		Addr: opts.Addr, User: cfg.User, KeyType: opts.Signer.PublicKey().Type(), Command: opts.Cmd,
		Concurrency: opts.Concurrency, ElapsedSeconds: elapsed.Seconds(),
		Errors:       map[string]int64{errDial: 0, errHandshake: 0, errAuth: 0, errCommand: 0},
		ErrorSamples: map[string]string{},
	}
	var auth, cmd []time.Duration
	for _, w := range stats {
		res.Attempts += w.attempts
		res.Handshakes += w.okAuth
		res.CommandsOK += w.okCmd
		auth = append(auth, w.auth...)
		cmd = append(cmd, w.cmd...)
		for k, v := range w.errors {
			res.Errors[k] += v
		}
		for k, v := range w.samples {
			if _, ok := res.ErrorSamples[k]; !ok {
				res.ErrorSamples[k] = v
			}
		}
		if opts.Cmd != "" {
			if res.ExitStatuses == nil {
				res.ExitStatuses = map[string]int64{}
			}
			for k, v := range w.exits {
				res.ExitStatuses[k] += v
			}
		}
	}
	if elapsed > 0 {
		res.HandshakesPerS = float64(res.Handshakes) / elapsed.Seconds()
	}
	res.AuthLatency = summarize(auth)
	if opts.Cmd != "" {
		l := summarize(cmd)
		res.CommandLatency = &l
	}
	return res, nil
}

// attempt is one connection: dial, key exchange, auth, optional command, close.
func attempt(ctx context.Context, opts runOptions, cfg *gossh.ClientConfig, w *workerStats) {
	t0 := time.Now()
	d := net.Dialer{Timeout: cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", opts.Addr)
	if err != nil {
		if ctx.Err() != nil {
			w.attempts-- // interrupted, not a failure
			return
		}
		w.fail(errDial, err)
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(t0.Add(cfg.Timeout))
	// Ctrl-C cuts a connection in flight short; what fails then is not
	// counted.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	fail := func(kind string, err error) {
		if ctx.Err() != nil {
			w.attempts--
			return
		}
		w.fail(kind, err)
	}
	c, chans, reqs, err := gossh.NewClientConn(conn, opts.Addr, cfg)
	if err != nil {
		if strings.Contains(err.Error(), "unable to authenticate") {
			fail(errAuth, err)
		} else {
			fail(errHandshake, err)
		}
		return
	}
	client := gossh.NewClient(c, chans, reqs)
	defer client.Close()
	w.okAuth++
	w.auth = append(w.auth, time.Since(t0))
	if opts.Cmd == "" {
		return
	}
	sess, err := client.NewSession()
	if err != nil {
		fail(errCommand, err)
		w.exits["no-session"]++
		return
	}
	defer sess.Close()
	sess.Stdout, sess.Stderr = io.Discard, io.Discard
	err = sess.Run(opts.Cmd)
	var ee *gossh.ExitError
	switch {
	case err == nil:
		w.exits["0"]++
		w.okCmd++
		w.cmd = append(w.cmd, time.Since(t0))
	case errors.As(err, &ee):
		w.exits[fmt.Sprint(ee.ExitStatus())]++
		fail(errCommand, err)
	default:
		w.exits["none"]++
		fail(errCommand, err)
	}
}

func summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	pct := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(ds)))) - 1
		if i < 0 {
			i = 0
		}
		return ms(ds[i])
	}
	return Latency{P50: pct(0.50), P90: pct(0.90), P99: pct(0.99), Max: ms(ds[len(ds)-1])}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// loadSigner reads a private key (ed25519, ecdsa, rsa; unencrypted) and,
// with certPath, a certificate for it.
func loadSigner(keyPath, certPath string) (gossh.Signer, error) {
	b, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	signer, err := gossh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	if certPath == "" {
		return signer, nil
	}
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	pub, _, _, _, err := gossh.ParseAuthorizedKey(cb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	cert, ok := pub.(*gossh.Certificate)
	if !ok {
		return nil, fmt.Errorf("%s: not an SSH certificate", certPath)
	}
	cs, err := gossh.NewCertSigner(cert, signer)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	return cs, nil
}

// hostKeyCallback checks host keys against knownHosts (default
// ~/.ssh/known_hosts), or accepts any when check is false.
func hostKeyCallback(check bool, knownHosts string) (gossh.HostKeyCallback, error) {
	if !check {
		return gossh.InsecureIgnoreHostKey(), nil
	}
	if knownHosts == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, err
		}
		knownHosts = filepath.Join(home, ".ssh", "known_hosts")
	}
	cb, err := knownhosts.New(knownHosts)
	if err != nil {
		return nil, fmt.Errorf("known hosts (use --host-key-check=false to skip): %w", err)
	}
	return cb, nil
}

func printResult(w io.Writer, r *Result) {
	fmt.Fprintf(w, "target            %s@%s (%s key)\n", r.User, r.Addr, r.KeyType)
	if r.Command != "" {
		fmt.Fprintf(w, "command           %q\n", r.Command)
	}
	fmt.Fprintf(w, "concurrency       %d\n", r.Concurrency)
	fmt.Fprintf(w, "elapsed           %.3fs\n", r.ElapsedSeconds)
	fmt.Fprintf(w, "attempts          %d\n", r.Attempts)
	fmt.Fprintf(w, "handshakes        %d\n", r.Handshakes)
	fmt.Fprintf(w, "handshakes/s      %.1f\n", r.HandshakesPerS)
	fmt.Fprintf(w, "latency to auth   p50 %.3fms  p90 %.3fms  p99 %.3fms  max %.3fms\n",
		r.AuthLatency.P50, r.AuthLatency.P90, r.AuthLatency.P99, r.AuthLatency.Max)
	if r.CommandLatency != nil {
		fmt.Fprintf(w, "commands ok       %d\n", r.CommandsOK)
		fmt.Fprintf(w, "latency to cmd    p50 %.3fms  p90 %.3fms  p99 %.3fms  max %.3fms\n",
			r.CommandLatency.P50, r.CommandLatency.P90, r.CommandLatency.P99, r.CommandLatency.Max)
		keys := make([]string, 0, len(r.ExitStatuses))
		for k := range r.ExitStatuses {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "exit status %-5s %d\n", k, r.ExitStatuses[k])
		}
	}
	fmt.Fprintf(w, "errors            dial %d  handshake %d  auth %d  command %d\n",
		r.Errors[errDial], r.Errors[errHandshake], r.Errors[errAuth], r.Errors[errCommand])
	for _, k := range []string{errDial, errHandshake, errAuth, errCommand} {
		if s, ok := r.ErrorSamples[k]; ok {
			fmt.Fprintf(w, "first %s error: %s\n", k, s)
		}
	}
}
