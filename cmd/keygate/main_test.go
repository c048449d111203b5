package main

// Process-level tests: TestMain builds the keygate binary once, and each test
// runs it as a child process on free loopback ports, talking to it over HTTP
// the way an operator or a REST client would.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testutil"
	gossh "golang.org/x/crypto/ssh"
)

// keygateBin is the binary built by TestMain.
var keygateBin string

// startDeadline bounds how long a child may take to become ready; it only
// turns a hang into a failure, nothing is asserted about speed.
const startDeadline = 60 * time.Second

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "keygate-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "TestMain:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	keygateBin = filepath.Join(dir, "keygate")
	build := exec.Command("go", "build", "-o", keygateBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "TestMain: go build:", err)
		return 1
	}
	return m.Run()
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// childEnv is the test process's environment without any KEYGATE_ variable
// (so a developer's settings never leak into a test), plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYGATE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// proc is one running `keygate serve`.
type proc struct {
	t        testing.TB
	cmd      *exec.Cmd
	HTTPAddr string
	SSHAddr  string
	DataDir  string
	Stderr   *testutil.SyncBuffer
	done     chan struct{} // closed when the process has exited
	waitErr  error
	client   *http.Client
	tls      *tls.Config
}

// serveOpts configures startServe.
type serveOpts struct {
	DataDir string   // KEYGATE_DATA_DIR; a new temporary directory if empty
	Env     []string // extra environment, KEY=value
	Args    []string // extra flags after the listen addresses
	// TLS, when set, is the client side of --tls-cert: p.URL says https
	// and p's client trusts TLS.RootCAs.
	TLS *tls.Config
	// Bin and Credential run another binary (a copy others can execute)
	// as another user; the zero values run keygateBin as this user.
	Bin        string
	Credential *syscall.Credential
}

// startServe starts `keygate serve` with --http-addr and --ssh-addr on free
// loopback ports and waits until GET /-/readiness answers 200.
func startServe(t testing.TB, o serveOpts) *proc {
	t.Helper()
	p := launchServe(t, o)
	p.waitReady()
	return p
}

// launchServe starts `keygate serve` without waiting for readiness.
func launchServe(t testing.TB, o serveOpts) *proc {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	p := &proc{t: t, HTTPAddr: freeAddr(t), SSHAddr: freeAddr(t), DataDir: o.DataDir,
		Stderr: &testutil.SyncBuffer{}, done: make(chan struct{}), tls: o.TLS}
	args := append([]string{"serve", "--http-addr", p.HTTPAddr, "--ssh-addr", p.SSHAddr}, o.Args...)
	bin := keygateBin
	if o.Bin != "" {
		bin = o.Bin
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = childEnv(append([]string{"KEYGATE_DATA_DIR=" + o.DataDir, "KEYGATE_HOSTNAME=keygate.test"}, o.Env...)...)
	if o.Credential != nil {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.Credential}
	}
	p.cmd.Stderr = p.Stderr
	p.start()
	return p
}

// start starts p.cmd and arranges for it to be killed when the test ends.
func (p *proc) start() {
	p.t.Helper()
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	tr := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second, TLSClientConfig: p.tls, ForceAttemptHTTP2: p.tls != nil}
	p.client = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	p.t.Cleanup(func() {
		p.kill()
		tr.CloseIdleConnections()
	})
}

// URL returns the absolute URL of path on p's HTTP listener.
func (p *proc) URL(path string) string {
	if p.tls != nil {
		return "https://" + p.HTTPAddr + path
	}
	return "http://" + p.HTTPAddr + path
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(startDeadline)
	for {
		if p.exited() {
			p.t.Fatalf("keygate exited before it was ready (%v); stderr:\n%s", p.waitErr, p.Stderr)
		}
		resp, err := p.client.Get(p.URL("/-/readiness"))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			p.dumpAndKill()
			p.t.Fatalf("keygate not ready after %v (last: %v); stderr:\n%s", startDeadline, err, p.Stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signal sends sig to the process.
func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !p.exited() {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits up to limit for the process to exit and returns its exit code
// (-1 if a signal ended it).
func (p *proc) wait(limit time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		p.dumpAndKill()
		p.t.Fatalf("keygate still running %v after being told to stop; stderr:\n%s", limit, p.Stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// stop sends SIGTERM and requires a clean exit with status 0.
func (p *proc) stop() {
	p.t.Helper()
	p.client.Transport.(*http.Transport).CloseIdleConnections()
	p.signal(syscall.SIGTERM)
	if code := p.wait(30 * time.Second); code != 0 {
		p.t.Fatalf("keygate exited with status %d after SIGTERM, want 0; stderr:\n%s", code, p.Stderr)
	}
}

// dumpAndKill ends a stuck process with SIGQUIT, which makes the Go runtime
// print every goroutine's stack to stderr (where keygate hangs), then with
// SIGKILL if need be.
func (p *proc) dumpAndKill() {
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
	p.kill()
}

// kill ends the process with SIGKILL, if it still runs, and reaps it.
func (p *proc) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// response is a finished HTTP exchange.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v.
func (r *response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decoding %q: %v", r.Body, err)
	}
}

// Object decodes the body as a JSON object.
func (r *response) Object(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	r.JSON(t, &m)
	return m
}

// do sends a request with token in PRIVATE-TOKEN (if not empty) and a JSON
// body (if not nil).
func (p *proc) do(ctx context.Context, method, path, token string, body any) (*response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.URL(path), rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("PRIVATE-TOKEN", token)
	}
	return p.send(req)
}

// send sends req and reads the whole response.
func (p *proc) send(req *http.Request) (*response, error) {
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// must sends a request and requires the given status.
func (p *proc) must(method, path, token string, body any, want int) *response {
	p.t.Helper()
	r, err := p.do(context.Background(), method, path, token, body)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	if r.Status != want {
		p.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, r.Status, want, r.Body)
	}
	return r
}

// randomToken returns a 40-character token-like string.
func randomToken(prefix string) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b)
}

// sshKeyLine returns a fresh ed25519 public key in authorized_keys form,
// with comment if not empty. It may run outside the test's goroutine.
func sshKeyLine(comment string) string {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	sp, err := gossh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(sp)))
	if comment != "" {
		line += " " + comment
	}
	return line
}

// id returns the numeric "id" of a decoded object.
func id(t testing.TB, m map[string]any) int64 {
	t.Helper()
	f, ok := m["id"].(float64)
	if !ok || f < 1 {
		t.Fatalf("no positive numeric id in %v", m)
	}
	return int64(f)
}

// mustRequest builds a request or fails the test.
func mustRequest(t testing.TB, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// gitKey registers a fresh ed25519 key for the token's user (titled title)
// and returns a scratch directory holding it and the GIT_SSH_COMMAND
// environment that makes git use only that key against p.
func (p *proc) gitKey(t testing.TB, token, title string) (work string, env []string) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	work = t.TempDir()
	keyPath := filepath.Join(work, "id_ed25519")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, _ := gossh.NewSignerFromKey(priv)
	p.must("POST", "/api/v4/user/keys", token, map[string]any{"title": title,
		"key": strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey())))}, 201)
	return work, []string{"GIT_SSH_COMMAND=ssh -F /dev/null -i " + keyPath + " -o IdentitiesOnly=yes -o IdentityAgent=none" +
		" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes"}
}
