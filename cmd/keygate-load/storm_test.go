package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
)

// TestStormBothModes: a storm of real git clones and one at the protocol
// level against an in-process keygate; every clone completes and the
// bytes add up.
func TestStormBothModes(t *testing.T) {
	t.Parallel()
	for _, bin := range []string{"git", "ssh"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	ctx := context.Background()
	dir := t.TempDir()
	s := startServer(t, dir)
	signer, priv := newSigner(t)
	keyPath := writeKey(t, priv)
	name, email := "stormer", "stormer@example.com"
	u, err := s.store.CreateUser(ctx, keystore.Actor{}, keystore.UserInput{Username: &name, Email: &email})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey())))
	if _, err := s.store.CreateKey(ctx, keystore.Actor{}, u.ID, keystore.KeyInput{Title: "k", Key: line, UsageType: "auth"}); err != nil {
		t.Fatal(err)
	}
	gname := "grp"
	g, err := s.store.CreateGroup(ctx, keystore.Actor{}, keystore.GroupInput{Name: &gname, Path: &gname}, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.store.CreateProject(ctx, keystore.Actor{}, keystore.ProjectInput{GroupID: g.ID, Name: "repo", Path: "repo"}); err != nil {
		t.Fatal(err)
	}
	repos := keystore.Repos{Root: filepath.Join(dir, "repositories")}
	if err := repos.Create(ctx, "grp/repo"); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "HOME="+work,
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "--quiet", "--initial-branch=main", ".")
	if err := os.WriteFile(filepath.Join(work, "data"), bytes.Repeat([]byte("storm\n"), 20000), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "data")
	git("commit", "--quiet", "-m", "one")
	git("tag", "v1")
	git("push", "--quiet", repos.Path("grp/repo"), "main", "v1")

	_, port, _ := strings.Cut(s.addr, ":")
	for _, args := range [][]string{
		{"storm", "--clients", "3", "--key", keyPath, "--url", "ssh://git@127.0.0.1:" + port + "/grp/repo.git", "--dir", t.TempDir(), "--json"},
		{"storm", "--clients", "3", "--mode", "upload-pack", "--key", keyPath, "--addr", s.addr, "--path", "grp/repo.git",
			"--host-key-check=false", "--json"},
	} {
		var out, errb bytes.Buffer
		if code := cli(ctx, args, &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out.String(), errb.String())
		}
		var r StormResult
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.OK != 3 || len(r.Errors) != 0 || r.Bytes <= 0 || r.WallS <= 0 || r.FirstS > r.WallS {
			t.Errorf("%s storm: %+v", r.Mode, r)
		}
	}
	// A repository the key cannot read: every clone fails, and says so.
	var out, errb bytes.Buffer
	code := cli(ctx, []string{"storm", "--clients", "2", "--mode", "upload-pack", "--key", keyPath, "--addr", s.addr,
		"--path", "grp/missing.git", "--host-key-check=false", "--json"}, &out, &errb)
	var r StormResult
	_ = json.Unmarshal(out.Bytes(), &r)
	if code != 1 || r.OK != 0 || len(r.Errors) == 0 {
		t.Errorf("storm of a missing repository: exit %d, %+v", code, r)
	}
}
