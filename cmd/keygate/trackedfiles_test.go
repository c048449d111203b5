package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckTrackedFiles: scripts/check-tracked-files.sh (run by .ci/run)
// passes on this repository and fails, naming the file, on a committed
// binary, a non-script with the executable bit, or a file over 1 MB
// outside testdata/ (allowed inside it).
func TestCheckTrackedFiles(t *testing.T) {
	t.Parallel()
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "check-tracked-files.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(script).CombinedOutput(); err != nil {
		t.Fatalf("this repository fails the check: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(keygateBin)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 1_000_001)
	for _, c := range []struct {
		name, path string
		data       []byte
		mode       os.FileMode
		fails      bool
	}{
		{"go-binary", "keygate", bin, 0o644, true},
		{"executable-bit-not-a-script", "tool.dat", []byte("data\n"), 0o755, true},
		{"large-file", "docs/big.bin", big, 0o644, true},
		{"large-file-in-testdata", "sshd/testdata/big.bin", big, 0o644, false},
		{"script", "scripts/run.sh", []byte("#!/bin/sh\necho hi\n"), 0o755, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			repo := t.TempDir()
			git := func(args ...string) {
				cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
				cmd.Env = childEnv("GIT_CONFIG_NOSYSTEM=1", "HOME="+repo)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("git %v: %v\n%s", args, err, out)
				}
			}
			git("init", "-q")
			p := filepath.Join(repo, filepath.FromSlash(c.path))
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, c.data, c.mode); err != nil {
				t.Fatal(err)
			}
			git("add", ".")
			out, err := exec.Command(script, repo).CombinedOutput()
			if failed := err != nil; failed != c.fails || (c.fails && !strings.Contains(string(out), c.path)) {
				t.Fatalf("check on a repository with %s: %v\n%s", c.path, err, out)
			}
		})
	}
}
