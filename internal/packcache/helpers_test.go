package packcache

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain makes the test binary the hook: upload-pack runs
// `<test binary> pack-objects-hook git pack-objects …` (Config.HookBin
// defaults to the running executable).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == HookCommand {
		os.Exit(HookMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func requireGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
}

// gitEnv is the environment of the test's own git runs: no global or
// system config, fixed identities and dates (identical commits in two
// repositories have the same ids).
func gitEnv(home string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C", "LC_ALL=C",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=T", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=T", "GIT_COMMITTER_EMAIL=t@example.com",
		"GIT_AUTHOR_DATE=2025-01-01T00:00:00Z", "GIT_COMMITTER_DATE=2025-01-01T00:00:00Z",
	}
}

func run(t *testing.T, dir string, env []string, name string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func mustRun(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, errs, err := run(t, dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, errs)
	}
	return out
}

// fixture is a bare repository and a work tree that pushes to it.
type fixture struct {
	bare, work, home string
	env              []string
}

// newRepo makes a bare repository with commits commits of files files of
// size bytes each (random, seeded: the same seed gives the same ids).
func newRepo(t *testing.T, seed uint64, commits, files, size int) *fixture {
	t.Helper()
	requireGit(t)
	dir := t.TempDir()
	f := &fixture{bare: filepath.Join(dir, "repo.git"), work: filepath.Join(dir, "work"), home: filepath.Join(dir, "home")}
	if err := os.MkdirAll(f.home, 0o700); err != nil {
		t.Fatal(err)
	}
	f.env = gitEnv(f.home)
	mustRun(t, dir, f.env, "git", "init", "--quiet", "--bare", "--initial-branch=main", f.bare)
	mustRun(t, dir, f.env, "git", "init", "--quiet", "--initial-branch=main", f.work)
	rng := rand.New(rand.NewPCG(seed, seed))
	for c := 0; c < commits; c++ {
		for i := 0; i < files; i++ {
			b := make([]byte, size)
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			if err := os.WriteFile(filepath.Join(f.work, fmt.Sprintf("f%03d", i)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		mustRun(t, f.work, f.env, "git", "add", "-A")
		mustRun(t, f.work, f.env, "git", "commit", "--quiet", "-m", fmt.Sprintf("commit %d", c))
	}
	mustRun(t, f.work, f.env, "git", "push", "--quiet", f.bare, "HEAD:refs/heads/main")
	return f
}

// commit adds one commit and pushes it straight to the bare repository.
func (f *fixture) commit(t *testing.T, name string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.work, name), []byte(name+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, f.work, f.env, "git", "add", name)
	mustRun(t, f.work, f.env, "git", "commit", "--quiet", "-m", name)
	mustRun(t, f.work, f.env, "git", "push", "--quiet", f.bare, "HEAD:refs/heads/main")
	return strings.TrimSpace(mustRun(t, f.work, f.env, "git", "rev-parse", "HEAD"))
}

func newCache(t *testing.T, tune func(*Config)) *Cache {
	t.Helper()
	requireGit(t)
	home := t.TempDir()
	cfg := Config{Dir: filepath.Join(t.TempDir(), "pack-cache"), GitHome: home,
		MaxBytes: 64 << 20, MaxEntryBytes: 32 << 20, TTL: time.Minute, ReaderTimeout: 5 * time.Second}
	if tune != nil {
		tune(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// clone runs a real `git clone --no-local` of repo whose upload-pack runs
// through the cache as keygate runs it (Attach's arguments and
// environment) for repository id repoID.
func (f *fixture) clone(t *testing.T, c *Cache, repoID int64, dest string, extra ...string) (string, error) {
	t.Helper()
	args, env, release := c.Attach(context.Background(), repoID, f.bare)
	defer release()
	return f.cloneWith(t, args, env, dest, extra...)
}

func (f *fixture) cloneWith(t *testing.T, hookArgs, hookEnv []string, dest string, extra ...string) (string, error) {
	t.Helper()
	up := []string{"git"}
	for _, a := range hookArgs {
		up = append(up, shq(a))
	}
	up = append(up, "upload-pack")
	args := append([]string{"clone", "--quiet", "--no-local", "--upload-pack=" + strings.Join(up, " ")}, extra...)
	args = append(args, "file://"+f.bare, dest)
	_, errs, err := run(t, "", append(append([]string{}, f.env...), hookEnv...), "git", args...)
	return errs, err
}

// fsck checks a clone is complete and valid; it returns its HEAD.
func (f *fixture) fsck(t *testing.T, dest string) string {
	t.Helper()
	mustRun(t, dest, f.env, "git", "fsck", "--full", "--strict", "--no-progress")
	return strings.TrimSpace(mustRun(t, dest, f.env, "git", "rev-parse", "HEAD"))
}

// waitFor polls cond for up to 20 s.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

// hookCall sends one pack-objects request as the hook does, for the
// session whose environment env is (from Attach), and returns the answer.
func hookCall(t *testing.T, env []string, args []string, stdin string) (stdout, stderr []byte, code int) {
	t.Helper()
	conn := dialSession(t, env)
	defer conn.Close()
	if err := sendRequest(conn, envValue(env, envToken), args, strings.NewReader(stdin)); err != nil {
		t.Fatalf("sending: %v", err)
	}
	var out, errb bytes.Buffer
	code = relay(conn, &out, &errb)
	return out.Bytes(), errb.Bytes(), code
}

func dialSession(t *testing.T, env []string) net.Conn {
	t.Helper()
	conn, err := net.Dial("unix", envValue(env, envSocket))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func envValue(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// packArgs is what upload-pack asks of pack-objects for a clone.
var packArgs = []string{"git", "pack-objects", "--revs", "--thin", "--stdout", "--delta-base-offset"}

// verifyPack checks a pack with git index-pack (in a scratch repository)
// (checksums, every object whole, --strict).
func (f *fixture) verifyPack(t *testing.T, pack []byte) {
	t.Helper()
	dir := t.TempDir()
	mustRun(t, dir, f.env, "git", "init", "--quiet", "--bare", ".")
	path := filepath.Join(dir, "in.pack")
	if err := os.WriteFile(path, pack, 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, dir, f.env, "git", "index-pack", "--strict", path)
}
