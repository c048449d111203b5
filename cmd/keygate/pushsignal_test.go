package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// gitRun runs git with env in dir and returns its combined output.
func gitRun(ctx context.Context, dir string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(childEnv("GIT_CONFIG_NOSYSTEM=1", "HOME="+dir, "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com"), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// receivePackRunning reports whether a git process works in repo.
func receivePackRunning(repo string) bool {
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte("receive-pack")) {
			continue
		}
		if bytes.Contains(b, []byte(repo)) {
			return true
		}
	}
	return false
}

// TestSIGTERMDuringPush sends SIGTERM while a large push is running. With
// a long grace the push finishes and its ref is written; with a grace too
// short for it, git is killed. Either way keygate exits 0 within the grace
// (plus slack), `git fsck` of the bare repository is clean, and the branch
// is the old or the new commit, never anything else.
func TestSIGTERMDuringPush(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"ssh", "git"} {
		if _, err := exec.LookPath(name); err != nil {
			t.Skipf("%s not installed", name)
		}
	}
	for _, tc := range []struct {
		name  string
		grace time.Duration
	}{{"grace-long-enough", 30 * time.Second}, {"grace-too-short", 100 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			token := randomToken("push-admin-")
			dataDir := t.TempDir()
			p := startServe(t, serveOpts{DataDir: dataDir, Env: []string{"KEYGATE_ADMIN_TOKEN=" + token},
				Args: []string{"--shutdown-grace", tc.grace.String()}})
			g := p.must("POST", "/api/v4/groups", token, map[string]any{"name": "big", "path": "big"}, 201).Object(t)
			p.must("POST", "/api/v4/projects", token, map[string]any{"namespace_id": id(t, g), "name": "repo", "path": "repo"}, 201)
			repo := filepath.Join(dataDir, "repositories", "big", "repo.git")

			// root pushes with a key of its own.
			work, sshEnv := p.gitKey(t, token, "push")
			_, port, _ := strings.Cut(p.SSHAddr, ":")
			url := "ssh://git@127.0.0.1:" + port + "/big/repo.git"

			src := filepath.Join(work, "src")
			must := func(args ...string) string {
				out, err := gitRun(ctx, src, sshEnv, args...)
				if err != nil {
					t.Fatalf("git %v: %v\n%s", args, err, out)
				}
				return strings.TrimSpace(out)
			}
			if out, err := gitRun(ctx, work, nil, "init", "--quiet", "--initial-branch=main", src); err != nil {
				t.Fatal(err, out)
			}
			if err := os.WriteFile(filepath.Join(src, "README"), []byte("old\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			must("add", "README")
			must("commit", "--quiet", "-m", "old")
			must("push", "--quiet", url, "HEAD:refs/heads/main")
			oldRev := must("rev-parse", "HEAD")

			blob := make([]byte, 48<<20)
			_, _ = rand.Read(blob)
			if err := os.WriteFile(filepath.Join(src, "blob"), blob, 0o644); err != nil {
				t.Fatal(err)
			}
			must("add", "blob")
			must("commit", "--quiet", "-m", "new")
			newRev := must("rev-parse", "HEAD")

			pushed := make(chan error, 1)
			go func() {
				out, err := gitRun(ctx, src, sshEnv, "push", url, "HEAD:refs/heads/main")
				if err != nil {
					err = fmt.Errorf("%v: %s", err, out)
				}
				pushed <- err
			}()
			deadline := time.Now().Add(time.Minute)
			for !receivePackRunning(repo) {
				if time.Now().After(deadline) {
					t.Fatal("git receive-pack never started")
				}
				time.Sleep(5 * time.Millisecond)
			}
			signalled := time.Now()
			p.signal(syscall.SIGTERM)
			code := p.wait(tc.grace + 20*time.Second)
			took := time.Since(signalled)
			pushErr := <-pushed
			t.Logf("keygate exited %d after %v; push: %v", code, took.Round(time.Millisecond), pushErr)
			if code != 0 {
				t.Errorf("exit status %d, want 0; stderr:\n%s", code, p.Stderr)
			}
			if took > tc.grace+10*time.Second {
				t.Errorf("exit took %v with a grace of %v", took, tc.grace)
			}
			if out, err := gitRun(ctx, repo, nil, "fsck", "--full", "--strict"); err != nil {
				t.Fatalf("git fsck after SIGTERM mid-push: %v\n%s", err, out)
			}
			ref, err := gitRun(ctx, repo, nil, "rev-parse", "refs/heads/main")
			if err != nil {
				t.Fatal(err, ref)
			}
			switch strings.TrimSpace(ref) {
			case newRev:
			case oldRev:
				if pushErr == nil {
					t.Fatal("the push reported success but the branch is the old commit")
				}
			default:
				t.Fatalf("branch is %s, neither old %s nor new %s", ref, oldRev, newRev)
			}
			if tc.grace > time.Minute/4 && (pushErr != nil || strings.TrimSpace(ref) != newRev) {
				t.Fatalf("with a long grace the running push must finish: %v, ref %s", pushErr, ref)
			}
		})
	}
}
