package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGitRunsSealed plants configuration that would make git run code as
// keygate's account in every place git reads it from keygate's own
// environment: $TMPDIR/.gitconfig (any local account can create it),
// $HOME/.gitconfig, $XDG_CONFIG_HOME/git/config and GIT_CONFIG_COUNT
// variables. A push (receive-pack hooks through core.hooksPath), a clone
// (uploadpack.packObjectsHook), `git archive --remote` (tar.<fmt>.command)
// and project creation (init.templateDir) through keygate run none of it.
func TestGitRunsSealed(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"ssh", "git"} {
		if _, err := exec.LookPath(name); err != nil {
			t.Skipf("%s not installed", name)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := t.TempDir()
	markers := filepath.Join(base, "markers")
	for _, d := range []string{"markers", "tmp", "home", "xdg/git", "hooks", "templates/hooks"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// One hostile configuration per place, each leaving its own marker.
	script := func(name, tail string) string {
		p := filepath.Join(base, name)
		body := fmt.Sprintf("#!/bin/sh\ntouch %s/%s\n%s\n", markers, name, tail)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hostile := func(where string) string {
		return fmt.Sprintf("[uploadpack]\n\tpackObjectsHook = %s\n[core]\n\thooksPath = %s\n[tar \"evil\"]\n\tcommand = %s\n\tremote = true\n[init]\n\ttemplateDir = %s\n",
			script("pack-"+where, `exec "$@"`), filepath.Join(base, "hooks"), script("tar-"+where, "exec cat"), filepath.Join(base, "templates"))
	}
	for where, path := range map[string]string{
		"tmpdir": filepath.Join(base, "tmp", ".gitconfig"),
		"home":   filepath.Join(base, "home", ".gitconfig"),
		"xdg":    filepath.Join(base, "xdg", "git", "config"),
	} {
		if err := os.WriteFile(path, []byte(hostile(where)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, hook := range []string{"pre-receive", "update", "post-receive", "post-update", "reference-transaction"} {
		script("hooks/"+hook, "exit 0")
		script("templates/hooks/"+hook, "exit 0")
	}
	if err := os.MkdirAll(filepath.Join(markers, "hooks"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(markers, "templates", "hooks"), 0o755); err != nil {
		t.Fatal(err)
	}

	token := randomToken("sealed-admin-")
	dataDir := t.TempDir()
	p := startServe(t, serveOpts{DataDir: dataDir, Env: []string{
		"KEYGATE_ADMIN_TOKEN=" + token,
		"TMPDIR=" + filepath.Join(base, "tmp"),
		"HOME=" + filepath.Join(base, "home"),
		"XDG_CONFIG_HOME=" + filepath.Join(base, "xdg"),
		"GIT_CONFIG_COUNT=1",
		"GIT_CONFIG_KEY_0=uploadpack.packObjectsHook",
		"GIT_CONFIG_VALUE_0=" + script("pack-env", `exec "$@"`),
		"GIT_TEMPLATE_DIR=" + filepath.Join(base, "templates"),
	}})
	g := p.must("POST", "/api/v4/groups", token, map[string]any{"name": "sealed", "path": "sealed"}, 201).Object(t)
	p.must("POST", "/api/v4/projects", token, map[string]any{"namespace_id": id(t, g), "name": "repo", "path": "repo"}, 201)
	repo := filepath.Join(dataDir, "repositories", "sealed", "repo.git")
	hooks, _ := os.ReadDir(filepath.Join(repo, "hooks"))
	for _, h := range hooks {
		if !strings.HasSuffix(h.Name(), ".sample") {
			t.Errorf("new repository has hook %s: a template directory from keygate's environment was used", h.Name())
		}
	}

	work, sshEnv := p.gitKey(t, token, "sealed")
	_, port, _ := strings.Cut(p.SSHAddr, ":")
	url := "ssh://git@127.0.0.1:" + port + "/sealed/repo.git"

	src := filepath.Join(work, "src")
	must := func(dir string, args ...string) string {
		out, err := gitRun(ctx, dir, sshEnv, args...)
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return out
	}
	must(work, "init", "--quiet", "--initial-branch=main", src)
	if err := os.WriteFile(filepath.Join(src, "README"), []byte("sealed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	must(src, "add", "README")
	must(src, "commit", "--quiet", "-m", "first")
	must(src, "push", "--quiet", url, "HEAD:refs/heads/main")
	must(work, "clone", "--quiet", url, filepath.Join(work, "clone"))
	must(work, "archive", "--remote="+url, "--format=tar", "-o", filepath.Join(work, "a.tar"), "main")
	// The hostile format is unknown to a sealed git: refused, nothing runs.
	if out, err := gitRun(ctx, work, sshEnv, "archive", "--remote="+url, "--format=evil", "-o", filepath.Join(work, "b.out"), "main"); err == nil {
		t.Errorf("git archive --format=evil succeeded: keygate's git knows a format from planted config\n%s", out)
	}

	var ran []string
	_ = filepath.Walk(markers, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			rel, _ := filepath.Rel(markers, path)
			ran = append(ran, rel)
		}
		return nil
	})
	if len(ran) > 0 {
		t.Fatalf("planted configuration ran as keygate's account: %v", ran)
	}
	home := filepath.Join(dataDir, "git-home")
	fi, err := os.Stat(home)
	if err != nil {
		t.Fatalf("git's private HOME: %v", err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("git's private HOME %s has mode %v, want 0700", home, fi.Mode().Perm())
	}
}
