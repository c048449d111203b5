package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestREADMEQuickStart runs the README's quick start as written: the shell
// blocks between its quickstart markers, extracted from README.md (not
// copied), in a scratch HOME, with the keygate binary under test on PATH.
// It uses the quick start's own ports (8080 and 2222), runs it twice in a
// row, and checks that it wrote nothing outside its scratch directories.
func TestREADMEQuickStart(t *testing.T) {
	for _, bin := range []string{"bash", "curl", "jq", "ssh", "ssh-keygen", "git"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (.ci/run installs it)", bin)
		}
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)<!-- quickstart:begin -->(.*)<!-- quickstart:end -->`).FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no quickstart markers")
	}
	var script strings.Builder
	// The harness, not the quick start: stop on the first failure, and stop
	// the keygate the quick start put in the background.
	script.WriteString("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n")
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllSubmatch(m[1], -1)
	if len(blocks) < 6 {
		t.Fatalf("only %d shell blocks in the quick start", len(blocks))
	}
	for _, b := range blocks {
		script.Write(b[1])
	}
	home := t.TempDir()
	// Twice in a row, as a newcomer would: each run makes its own scratch
	// directory (under TMPDIR) and stops its keygate at the end.
	for run := 1; run <= 2; run++ {
		before, _ := filepath.Glob(filepath.Join(home, "tmp", "keygate-quickstart.*"))
		if err := os.MkdirAll(filepath.Join(home, "tmp"), 0o700); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
		cmd.Dir = home
		cmd.Env = childEnv("HOME="+home, "TMPDIR="+filepath.Join(home, "tmp"), "PATH="+filepath.Dir(keygateBin)+":"+os.Getenv("PATH"),
			"GIT_CONFIG_NOSYSTEM=1", "SSH_AUTH_SOCK=")
		cmd.WaitDelay = 10 * time.Second
		out, err := cmd.CombinedOutput()
		cancel()
		after, _ := filepath.Glob(filepath.Join(home, "tmp", "keygate-quickstart.*"))
		if len(after) != len(before)+1 {
			t.Fatalf("run %d: scratch directories %v, want one more than %v\n%s", run, after, before, out)
		}
		var scratch string // the one directory this run made
		for _, d := range after {
			if !slices.Contains(before, d) {
				scratch = d
			}
		}
		log, _ := os.ReadFile(filepath.Join(scratch, "keygate.log"))
		if err != nil {
			t.Fatalf("run %d: the quick start failed: %v\n%s\nkeygate.log:\n%s", run, err, out, log)
		}
		text := string(out)
		for _, want := range []string{"ssh://git@localhost:2222/eng/api.git", "refused"} {
			if !strings.Contains(text, want) {
				t.Errorf("run %d: output lacks %q:\n%s", run, want, text)
			}
		}
		if n := strings.Count(text, "Welcome to keygate, @alice!"); n != 2 {
			t.Errorf("run %d: %d greetings, want 2 (key and certificate):\n%s", run, n, text)
		}
		if !strings.Contains(text, "your certificate has been revoked") {
			t.Errorf("run %d: the revoked certificate was not refused with its banner:\n%s", run, text)
		}
		signers, err := os.ReadFile(filepath.Join(scratch, "allowed_signers"))
		if err != nil || !strings.Contains(string(signers), "alice@example.com ") {
			t.Errorf("run %d: allowed_signers: %v\n%s", run, err, signers)
		}
	}
	// Nothing global: HOME holds only the scratch directories' parent.
	entries, err := os.ReadDir(home)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "tmp" {
			t.Errorf("the quick start left %s in HOME (no ~/.ssh, no global git config, nothing outside its scratch directory)", e.Name())
		}
	}
}
