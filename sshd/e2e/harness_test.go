// Package e2e drives a whole in-process keygate (keystore on SQLite, the
// auth index following it, the REST API and the SSH server) with the real
// ssh, ssh-keygen and git binaries.
//
// Every test calls newEnv, which starts a fresh keygate in t.TempDir() and
// stops it when the test ends. The helpers fail the test on unexpected
// errors; the ssh and git helpers return exit status and output so that
// tests can assert refusals.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/httpapi"
	"github.com/keygate/keygate/internal/packcache"
	"github.com/keygate/keygate/internal/testutil"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
	"github.com/keygate/keygate/sshd"
)

// execTimeout bounds every external command a test runs.
const execTimeout = 60 * time.Second

// hostKeys are generated once for the package (RSA-3072 generation is slow
// under -race) and shared by every test server.
var hostKeys []gossh.Signer

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// upload-pack runs this binary as the pack cache's hook.
	if len(os.Args) > 1 && os.Args[1] == packcache.HookCommand {
		return packcache.HookMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr)
	}
	dir, err := os.MkdirTemp("", "keygate-e2e-hostkeys-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if hostKeys, err = sshd.LoadOrCreateHostKeys(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: host keys:", err)
		return 1
	}
	return m.Run()
}

// requireBinaries skips the test when a binary it needs is not installed
// (CI installs them all).
func requireBinaries(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not installed: %v", n, err)
		}
	}
}

// env is one running keygate.
type env struct {
	ctx        context.Context
	dir        string // the data directory
	home       string // HOME of the ssh and git processes
	store      *keystore.Store
	index      *authindex.Index
	repos      keystore.Repos
	server     *sshd.Server
	sshAddr    string // 127.0.0.1:port
	sshPort    int
	http       *httptest.Server
	adminToken string
	adminID    int64
	clock      *testutil.OffsetClock // the SSH server's clock
	logs       *testutil.SyncBuffer
	packCache  *packcache.Cache // on, as keygate serve's default is
}

// newEnv starts keygate for one test: SQLite store, index (Load + Follow),
// REST API on httptest, SSH server on 127.0.0.1:0. It skips the test when
// ssh, ssh-keygen or git is missing.
func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with the SSH server's configuration adjusted by tune.
func newEnvWith(t *testing.T, tune func(*sshd.Config)) *env {
	t.Helper()
	requireBinaries(t, "ssh", "ssh-keygen", "git")
	ctx := context.Background()
	dir := t.TempDir()
	e := &env{ctx: ctx, dir: dir, home: filepath.Join(dir, "home"), clock: &testutil.OffsetClock{}, logs: &testutil.SyncBuffer{}}
	if err := os.MkdirAll(e.home, 0o700); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("keygate log:\n%s", e.logs.String())
		}
	})

	store, err := keystore.Open(ctx, keystore.Config{DSN: filepath.Join(dir, "keygate.db"), CAKey: e2eCAKey})
	if err != nil {
		t.Fatalf("keystore.Open: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	e.store = store
	if e.adminToken, err = store.EnsureAdmin(ctx, ""); err != nil || e.adminToken == "" {
		t.Fatalf("EnsureAdmin = %q, %v", e.adminToken, err)
	}
	root, err := store.UserByUsername(ctx, "root")
	if err != nil {
		t.Fatalf("root: %v", err)
	}
	e.adminID = root.ID

	e.index = authindex.New(store)
	e.index.SetClock(e.clock.Now) // membership expiry by the SSH server's clock
	if err := e.index.Load(ctx); err != nil {
		t.Fatalf("index.Load: %v", err)
	}
	e.index.Follow()

	e.repos = keystore.Repos{Root: filepath.Join(dir, "repositories")}
	if err := os.MkdirAll(e.repos.Root, 0o750); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.sshAddr = ln.Addr().String()
	e.sshPort = ln.Addr().(*net.TCPAddr).Port
	e.packCache, err = packcache.New(packcache.Config{
		Dir: filepath.Join(dir, "pack-cache"), GitHome: filepath.Join(dir, "git-home"),
		MaxBytes: packcache.DefaultMaxBytes, MaxEntryBytes: packcache.DefaultMaxEntryBytes,
		TTL: packcache.DefaultTTL, ReaderTimeout: packcache.DefaultReaderTimeout, Log: log,
	})
	if err != nil {
		t.Fatalf("packcache.New: %v", err)
	}
	t.Cleanup(func() { e.packCache.Close() }) // after the server's shutdown below
	scfg := sshd.Config{
		Addr: e.sshAddr, HostKeys: hostKeys, Hostname: "localhost", GitUser: "git",
		ReposDir: e.repos.Root, Auth: e.index, Projects: store, LFSLocks: store, Usage: store, Events: store, Log: log,
		Now: e.clock.Now, RevalidateInterval: 200 * time.Millisecond, PackCache: e.packCache,
	}
	if tune != nil {
		tune(&scfg)
	}
	srv, err := sshd.New(scfg)
	if err != nil {
		ln.Close()
		t.Fatalf("sshd.New: %v", err)
	}
	e.server = srv
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	api, err := httpapi.New(httpapi.Config{
		Store: store, Log: log, Version: "e2e",
		Repos: e.repos, Hostname: "localhost", SSHPort: e.sshPort, GitUser: "git",
	})
	if err != nil {
		t.Fatalf("httpapi.New: %v", err)
	}
	e.http = httptest.NewServer(api)

	t.Cleanup(func() {
		e.http.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Logf("sshd shutdown: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("sshd Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("sshd Serve did not return after Shutdown")
		}
	})
	return e
}

// api calls the REST API with PRIVATE-TOKEN. path is relative to /api/v4
// unless it starts with "/api/" or "/-/". form goes in the query string for
// GET and DELETE and in a form body otherwise.
func (e *env) api(t *testing.T, method, path, token string, form url.Values) (int, []byte) {
	t.Helper()
	if !strings.HasPrefix(path, "/api/") && !strings.HasPrefix(path, "/-/") {
		path = "/api/v4" + path
	}
	u := e.http.URL + path
	var body io.Reader
	if len(form) > 0 {
		if method == http.MethodGet || method == http.MethodDelete {
			u += "?" + form.Encode()
		} else {
			body = strings.NewReader(form.Encode())
		}
	}
	ctx, cancel := context.WithTimeout(e.ctx, execTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if token != "" {
		req.Header.Set("PRIVATE-TOKEN", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// mustAPI is api that fails the test unless the status is want, and decodes
// a JSON answer into out (when out is not nil).
func (e *env) mustAPI(t *testing.T, method, path, token string, form url.Values, want int, out any) {
	t.Helper()
	code, body := e.api(t, method, path, token, form)
	if code != want {
		t.Fatalf("%s %s = %d %s, want %d", method, path, code, body, want)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, path, body, err)
		}
	}
}

type idJSON struct {
	ID int64 `json:"id"`
}

// createUser creates an active user (as admin, over REST) and an api
// token for it.
func (e *env) createUser(t *testing.T, username string) (int64, string) {
	t.Helper()
	var u idJSON
	e.mustAPI(t, http.MethodPost, "/users", e.adminToken, url.Values{
		"username": {username}, "email": {username + "@example.com"}, "name": {username},
	}, http.StatusCreated, &u)
	var tok struct {
		Token string `json:"token"`
	}
	e.mustAPI(t, http.MethodPost, "/users/"+itoa(u.ID)+"/personal_access_tokens", e.adminToken, url.Values{
		"name": {"e2e"}, "scopes": {"api"},
	}, http.StatusCreated, &tok)
	if tok.Token == "" {
		t.Fatalf("no token for %s", username)
	}
	return u.ID, tok.Token
}

// addKey adds an SSH key to a user (as admin, over REST). usage and
// expiresAt are left out when empty.
func (e *env) addKey(t *testing.T, userID int64, pubText, usage, expiresAt string) int64 {
	t.Helper()
	form := url.Values{"title": {"e2e key"}, "key": {pubText}}
	if usage != "" {
		form.Set("usage_type", usage)
	}
	if expiresAt != "" {
		form.Set("expires_at", expiresAt)
	}
	var k idJSON
	e.mustAPI(t, http.MethodPost, "/users/"+itoa(userID)+"/keys", e.adminToken, form, http.StatusCreated, &k)
	return k.ID
}

// createGroup creates a top-level group; the owner of ownerToken becomes
// its owner.
func (e *env) createGroup(t *testing.T, path, ownerToken string) int64 {
	t.Helper()
	var g idJSON
	e.mustAPI(t, http.MethodPost, "/groups", ownerToken, url.Values{"name": {path}, "path": {path}}, http.StatusCreated, &g)
	return g.ID
}

// createSubgroup creates a group under parentID.
func (e *env) createSubgroup(t *testing.T, parentID int64, path, token string) int64 {
	t.Helper()
	var g idJSON
	e.mustAPI(t, http.MethodPost, "/groups", token, url.Values{
		"name": {path}, "path": {path}, "parent_id": {itoa(parentID)},
	}, http.StatusCreated, &g)
	return g.ID
}

// addMember makes userID a member of groupID at level (as admin).
func (e *env) addMember(t *testing.T, groupID, userID int64, level int) {
	t.Helper()
	e.mustAPI(t, http.MethodPost, "/groups/"+itoa(groupID)+"/members", e.adminToken, url.Values{
		"user_id": {itoa(userID)}, "access_level": {strconv.Itoa(level)},
	}, http.StatusCreated, nil)
}

// createProject creates a project (and its bare repository) in groupID,
// as admin over REST; it returns the project id.
func (e *env) createProject(t *testing.T, groupID int64, path string) int64 {
	t.Helper()
	var p idJSON
	e.mustAPI(t, http.MethodPost, "/projects", e.adminToken, url.Values{
		"namespace_id": {itoa(groupID)}, "path": {path}, "name": {path},
	}, http.StatusCreated, &p)
	return p.ID
}

// repoPath is the bare repository of a project full path ("eng/api").
func (e *env) repoPath(fullPath string) string { return e.repos.Path(fullPath) }

// cloneURL is the ssh:// URL of a project full path.
func (e *env) cloneURL(fullPath string) string {
	return fmt.Sprintf("ssh://git@127.0.0.1:%d/%s.git", e.sshPort, fullPath)
}

// seedRepo pushes one commit to main of a project's bare repository,
// directly on disk (not over SSH), and returns its hash.
func (e *env) seedRepo(t *testing.T, fullPath string) string {
	t.Helper()
	work := filepath.Join(t.TempDir(), "seed")
	e.mustGit(t, "", nil, "init", "--quiet", "--initial-branch=main", work)
	if err := os.WriteFile(filepath.Join(work, "README"), []byte("seed of "+fullPath+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.mustGit(t, work, nil, "add", "README")
	e.mustGit(t, work, nil, "commit", "--quiet", "-m", "seed")
	e.mustGit(t, work, nil, "push", "--quiet", e.repoPath(fullPath), "HEAD:refs/heads/main")
	return strings.TrimSpace(e.mustGit(t, work, nil, "rev-parse", "HEAD"))
}

// sshKeygen makes a key pair with the real ssh-keygen (bits 0: its
// default) and returns the private key path and the public key line.
func (e *env) sshKeygen(t *testing.T, typ string, bits int) (string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "id_"+typ)
	args := []string{"-q", "-t", typ, "-N", "", "-C", "e2e-" + typ, "-f", path}
	if bits != 0 {
		args = append(args, "-b", strconv.Itoa(bits))
	}
	if _, stderr, code := e.run(t, "", nil, nil, "ssh-keygen", args...); code != 0 {
		t.Fatalf("ssh-keygen %v: exit %d: %s", args, code, stderr)
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return path, strings.TrimSpace(string(pub))
}

// sshBaseArgs are the options of every ssh this package runs: no config,
// no agent keys, no known_hosts, no prompts, only the given identities.
func (e *env) sshBaseArgs(keyPaths []string) []string {
	args := []string{
		"-F", "/dev/null",
		"-p", strconv.Itoa(e.sshPort),
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityAgent=none",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes",
		"-o", "PasswordAuthentication=no",
		"-o", "KbdInteractiveAuthentication=no",
		"-o", "ConnectTimeout=30",
	}
	for _, k := range keyPaths {
		args = append(args, "-i", k)
	}
	return args
}

// sshCmd builds (without starting) the real ssh as login@127.0.0.1 with
// extraArgs after the destination. OpenSSH parses options that follow the
// destination too, so extraArgs may hold options ("-v", "-o", "X=y") and
// then the remote command. The caller owns ctx and the process.
func (e *env) sshCmd(ctx context.Context, keyPaths []string, login string, extraArgs ...string) *exec.Cmd {
	args := append(e.sshBaseArgs(keyPaths), login+"@127.0.0.1")
	args = append(args, extraArgs...)
	cmd := exec.CommandContext(ctx, "ssh", args...)
	cmd.Env = e.baseEnv()
	return cmd
}

// ssh runs the real ssh to completion with stdin closed (/dev/null). The
// client's own chatter about known hosts and pseudo-terminals is removed
// from stderr (see dropClientNoise).
func (e *env) ssh(t *testing.T, keyPaths []string, login string, extraArgs ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	return e.sshStdin(t, "", keyPaths, login, extraArgs...)
}

// sshStdin is ssh with stdin reading input, then end of file.
func (e *env) sshStdin(t *testing.T, input string, keyPaths []string, login string, extraArgs ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	args := append(e.sshBaseArgs(keyPaths), login+"@127.0.0.1")
	args = append(args, extraArgs...)
	stdout, stderr, exitCode = e.run(t, "", nil, strings.NewReader(input), "ssh", args...)
	return stdout, dropClientNoise(stderr), exitCode
}

// gitSSHCommand is GIT_SSH_COMMAND for keyPaths (git adds -p from the URL).
func (e *env) gitSSHCommand(keyPaths []string) string {
	args := e.sshBaseArgs(keyPaths)
	quoted := make([]string, 0, len(args)+1)
	quoted = append(quoted, "ssh")
	for _, a := range args {
		quoted = append(quoted, shellQuote(a))
	}
	return strings.Join(quoted, " ")
}

// git runs the real git in dir (the test's working directory when "")
// with GIT_SSH_COMMAND using keyPaths.
func (e *env) git(t *testing.T, dir string, keyPaths []string, args ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	stdout, stderr, exitCode = e.run(t, dir, []string{"GIT_SSH_COMMAND=" + e.gitSSHCommand(keyPaths)}, nil, "git", args...)
	return stdout, dropClientNoise(stderr), exitCode
}

// mustGit is git that fails the test unless git exits 0; it returns stdout.
func (e *env) mustGit(t *testing.T, dir string, keyPaths []string, args ...string) string {
	t.Helper()
	stdout, stderr, code := e.git(t, dir, keyPaths, args...)
	if code != 0 {
		t.Fatalf("git %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// baseEnv is the environment of every process this package runs: a private
// HOME, no agent, no system or global git config, fixed git identities.
func (e *env) baseEnv() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + e.home,
		"LANG=C", "LC_ALL=C",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=E2E", "GIT_AUTHOR_EMAIL=e2e@example.com",
		"GIT_COMMITTER_NAME=E2E", "GIT_COMMITTER_EMAIL=e2e@example.com",
	}
}

// run runs a command to completion with a timeout, in dir, with baseEnv
// plus extraEnv and stdin (nil: /dev/null). exitCode is -1 when the
// command could not run or was killed.
func (e *env) run(t *testing.T, dir string, extraEnv []string, stdin io.Reader, name string, args ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, execTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(e.baseEnv(), extraEnv...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	stdout, stderr = out.String(), errb.String()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return stdout, stderr, 0
	case ctx.Err() != nil:
		t.Errorf("%s %s: timed out after %v\nstderr: %s", name, strings.Join(args, " "), execTimeout, stderr)
		return stdout, stderr, -1
	case errors.As(err, &ee):
		return stdout, stderr, ee.ExitCode()
	}
	t.Fatalf("%s: %v", name, err)
	return "", "", -1
}

// session is a real ssh client left running (stdin held open), for tests
// of what happens to open connections.
type session struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *testutil.SyncBuffer
	stderr *testutil.SyncBuffer
	done   chan struct{} // closed when ssh has exited
}

// startSession starts ssh like env.ssh but keeps stdin open; the process
// is killed when the test ends.
func (e *env) startSession(t *testing.T, keyPaths []string, login string, extraArgs ...string) *session {
	t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, execTimeout)
	cmd := e.sshCmd(ctx, keyPaths, login, extraArgs...)
	s := &session{cmd: cmd, stdout: &testutil.SyncBuffer{}, stderr: &testutil.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	cmd.WaitDelay = 5 * time.Second
	var err error
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("ssh: %v", err)
	}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
		cancel()
	})
	return s
}

// waitOutput reports whether stdout contains marker within timeout.
func (s *session) waitOutput(marker string, timeout time.Duration) bool {
	return waitFor(timeout, func() bool { return strings.Contains(s.stdout.String(), marker) })
}

// waitExit reports whether ssh exits within timeout.
func (s *session) waitExit(timeout time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// kill kills the ssh client (as a vanished client would go) and waits.
func (s *session) kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// waitFor polls cond every 50ms until it holds or timeout passes, and
// reports whether it held.
func waitFor(timeout time.Duration, cond func() bool) bool {
	return testutil.Poll(timeout, 50*time.Millisecond, cond)
}

// dropClientNoise removes the lines OpenSSH prints about the throw-away
// known_hosts and the missing terminal, and turns CRLF into LF, so that
// tests can compare what the server said.
func dropClientNoise(stderr string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(strings.ReplaceAll(stderr, "\r\n", "\n"), "\n") {
		if strings.HasPrefix(l, "Warning: Permanently added ") ||
			strings.HasPrefix(l, "Pseudo-terminal will not be allocated") {
			continue
		}
		b.WriteString(l)
	}
	return b.String()
}

// keygateLines returns the lines of s that keygate wrote ("keygate: …").
func keygateLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "keygate:") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
