package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/oidcprovider"
	"github.com/keygate/keygate/internal/testutil"
)

// startAgent runs the real ssh-agent in the foreground on a socket in a
// temporary directory; it is killed when the test ends.
func startAgent(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("ssh-agent"); err != nil {
		t.Skipf("ssh-agent not installed: %v", err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command("ssh-agent", "-D", "-a", sock)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if !testutil.Poll(10*time.Second, 20*time.Millisecond, func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatal("ssh-agent did not listen")
	}
	return sock
}

// TestLogin: `keygate login` completes the device flow against a test
// OpenID provider on loopback, writes the key and the certificate, adds
// them to the real ssh-agent, and git (through the agent alone) reads a
// project; with a personal access token, the same without the browser.
func TestLogin(t *testing.T) {
	t.Parallel()
	for _, bin := range []string{"ssh", "ssh-add", "git"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed: %v", bin, err)
		}
	}
	admin := randomToken("kgpat-")
	p := startServe(t, serveOpts{Env: []string{"KEYGATE_ADMIN_TOKEN=" + admin}})
	if fi, err := os.Stat(filepath.Join(p.DataDir, defaultCAKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA encryption key file: %v", err)
	}
	alice := p.must("POST", "/api/v4/users", admin, map[string]any{"username": "alice", "email": "alice@example.com", "name": "Alice"}, 201).Object(t)
	aliceTok := p.must("POST", "/api/v4/users/"+itoa64(id(t, alice))+"/personal_access_tokens", admin,
		map[string]any{"name": "cli", "scopes": []string{"api"}}, 201).Object(t)["token"].(string)
	g := id(t, p.must("POST", "/api/v4/groups", admin, map[string]any{"name": "eng", "path": "eng"}, 201).Object(t))
	p.must("POST", "/api/v4/groups/"+itoa64(g)+"/members", admin, map[string]any{"user_id": id(t, alice), "access_level": 30}, 201)
	p.must("PUT", "/api/v4/users/"+itoa64(id(t, alice)), admin, map[string]any{"enterprise_group_id": g}, 200)
	ca := p.must("POST", "/api/v4/groups/"+itoa64(g)+"/ssh_certificates", admin, map[string]any{"title": "eng", "generate": true}, 201)
	if strings.Contains(string(ca.Body), "PRIVATE") || ca.Object(t)["managed"] != true {
		t.Fatalf("managed CA: %s", ca.Body)
	}
	p.must("POST", "/api/v4/projects", admin, map[string]any{"namespace_id": g, "path": "api", "name": "api"}, 201)

	idp := oidcprovider.Start(t.Cleanup)
	idp.SetDeviceClaims(map[string]any{"sub": "alice-1", "preferred_username": "alice"})
	p.must("POST", "/api/v4/admin/oidc_issuers", admin, map[string]any{"issuer": idp.Issuer, "client_id": "keygate-cli",
		"username_claim": "preferred_username"}, 201)

	sock := startAgent(t)
	home := t.TempDir()
	keyPath := filepath.Join(home, ".ssh", "keygate_ed25519")
	env := childEnv("HOME="+home, "SSH_AUTH_SOCK="+sock)

	// The device flow: keygate prints the URL; "the browser" opens it.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, keygateBin, "login", "--server", p.URL(""), "--create-key", "--ttl", "10m")
	cmd.Env = env
	stderr := &testutil.SyncBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var printed strings.Builder
	sc := bufio.NewScanner(out)
	complete := regexp.MustCompile(`open (http\S+user_code=\S+)\)`)
	approved := false
	for sc.Scan() {
		line := sc.Text()
		printed.WriteString(line + "\n")
		if m := complete.FindStringSubmatch(line); m != nil && !approved {
			resp, err := http.Get(m[1])
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("approving at %s: %v %v", m[1], resp, err)
			}
			resp.Body.Close()
			approved = true
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("keygate login: %v\nstdout:\n%s\nstderr:\n%s", err, printed.String(), stderr)
	}
	if !approved || !strings.Contains(printed.String(), "Certificate for alice") || !strings.Contains(printed.String(), "ssh-agent:   added") {
		t.Fatalf("keygate login printed:\n%s", printed.String())
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("created key: %v", err)
	}
	if _, err := os.Stat(keyPath + "-cert.pub"); err != nil {
		t.Fatalf("certificate file: %v", err)
	}
	sshAdd := func(args ...string) ([]byte, error) {
		c := exec.Command("ssh-add", args...)
		c.Env = env
		return c.CombinedOutput()
	}
	list, err := sshAdd("-l")
	if err != nil || !strings.Contains(string(list), "ED25519-CERT") {
		t.Fatalf("ssh-add -l: %v %s", err, list)
	}
	// git through the agent alone: no -i, no certificate file.
	git := func() (string, error) {
		c := exec.Command("git", "ls-remote", "ssh://git@"+p.SSHAddr+"/eng/api.git")
		c.Env = append(childEnv("HOME="+home, "SSH_AUTH_SOCK="+sock, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"),
			"GIT_SSH_COMMAND=ssh -F /dev/null -o IdentityAgent="+sock+" -o IdentityFile=none -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes")
		b, err := c.CombinedOutput()
		return string(b), err
	}
	if o, err := git(); err != nil {
		t.Fatalf("git ls-remote through the agent: %v\n%s", err, o)
	}

	// With a personal access token: no browser; the existing key is used.
	if b, err := sshAdd("-D"); err != nil {
		t.Fatalf("ssh-add -D: %v %s", err, b)
	}
	cmd = exec.Command(keygateBin, "login", "--server", p.URL(""), "--key", keyPath)
	cmd.Env = append(env, "KEYGATE_TOKEN="+aliceTok)
	b, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(b), "To sign in") || !strings.Contains(string(b), "ssh-agent:   added") {
		t.Fatalf("keygate login with a token: %v\n%s", err, b)
	}
	if o, err := git(); err != nil {
		t.Fatalf("git ls-remote after the token login: %v\n%s", err, o)
	}
	// No private key reached the log.
	if strings.Contains(p.Stderr.String(), "PRIVATE KEY") {
		t.Fatal("a private key reached the log")
	}
}
