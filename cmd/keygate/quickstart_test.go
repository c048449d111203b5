package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestREADMEQuickStart runs the README's quick start as written: the shell
// blocks between its quickstart markers, extracted from README.md (not
// copied), in a scratch HOME, with the keygate binary under test on PATH.
// It uses the quick start's own ports (8080 and 2222).
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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = home
	cmd.Env = childEnv("HOME="+home, "PATH="+filepath.Dir(keygateBin)+":"+os.Getenv("PATH"),
		"GIT_CONFIG_NOSYSTEM=1", "SSH_AUTH_SOCK=")
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	log, _ := os.ReadFile(filepath.Join(home, "keygate-quickstart", "keygate.log"))
	if err != nil {
		t.Fatalf("the quick start failed: %v\n%s\nkeygate.log:\n%s", err, out, log)
	}
	text := string(out)
	for _, want := range []string{"ssh://git@localhost:2222/eng/api.git", "refused"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if n := strings.Count(text, "Welcome to keygate, @alice!"); n != 2 {
		t.Errorf("%d greetings, want 2 (key and certificate):\n%s", n, text)
	}
	if !strings.Contains(text, "your certificate has been revoked") {
		t.Errorf("the revoked certificate was not refused with its banner:\n%s", text)
	}
	signers, err := os.ReadFile(filepath.Join(home, ".config", "git", "allowed_signers"))
	if err != nil || !strings.Contains(string(signers), "alice@example.com ") {
		t.Errorf("allowed_signers: %v\n%s", err, signers)
	}
}
