package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// mountTmpfs mounts a tmpfs of size bytes on a new directory, or skips the
// test saying why it cannot.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes a file until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// Whatever is left is smaller than a block.
	small := make([]byte, 512)
	for {
		if _, err := f.Write(small); err != nil {
			return
		}
	}
}

// sshGreeting logs in with signer and returns the greeting.
func sshGreeting(addr string, signer gossh.Signer) (string, error) {
	c, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{User: "git", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		return "", err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.Output("")
	return string(out), err
}

// TestDiskFullWritesAnswer503: with the data directory on a full file
// system, writes answer 503 with a clear message (never 500), reads and SSH
// authentication of existing keys keep working from the index, and writes
// work again once there is space.
//
// A read-only remount is not possible while keygate holds the database
// open for writing (the kernel answers EBUSY), and root ignores file modes,
// so the fault here is ENOSPC on a small tmpfs mounted by the test.
func TestDiskFullWritesAnswer503(t *testing.T) {
	mnt := mountTmpfs(t, 8<<20)
	token := randomToken("diskfull-admin-")
	p := startServe(t, serveOpts{DataDir: filepath.Join(mnt, "data"), Env: []string{"KEYGATE_ADMIN_TOKEN=" + token}})

	u := p.must("POST", "/api/v4/users", token, map[string]any{"username": "alice", "email": "alice@example.com", "name": "Alice"}, 201).Object(t)
	uid := id(t, u)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := gossh.NewSignerFromKey(priv)
	line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey())))
	p.must("POST", fmt.Sprintf("/api/v4/users/%d/keys", uid), token, map[string]any{"title": "laptop", "key": line}, 201)
	if out, err := sshGreeting(p.SSHAddr, signer); err != nil || !strings.Contains(out, "Welcome to keygate, @alice!") {
		t.Fatalf("ssh before the fault: %q, %v", out, err)
	}

	fill(t, filepath.Join(mnt, "ballast"))
	got503 := false
	for i := range 50 {
		r, err := p.do(t.Context(), "POST", fmt.Sprintf("/api/v4/users/%d/keys", uid), token,
			map[string]any{"title": fmt.Sprintf("k%d", i), "key": sshKeyLine("")})
		if err != nil {
			t.Fatal(err)
		}
		switch r.Status {
		case 201:
			continue // still fit in space SQLite had already allocated
		case 503:
			msg, _ := r.Object(t)["message"].(string)
			if !strings.Contains(msg, "cannot accept writes") {
				t.Fatalf("503 without a clear message: %s", r.Body)
			}
			got503 = true
		default:
			t.Fatalf("write on a full disk: %d %s", r.Status, r.Body)
		}
		if got503 {
			break
		}
	}
	if !got503 {
		t.Fatal("50 writes on a full disk all succeeded")
	}
	// Other writes fail the same way; reads work.
	r, err := p.do(t.Context(), "POST", "/api/v4/users", token, map[string]any{"username": "bob", "email": "bob@example.com", "name": "Bob"})
	if err != nil || r.Status != 503 {
		t.Fatalf("create user on a full disk: %+v, %v", r, err)
	}
	p.must("GET", fmt.Sprintf("/api/v4/users/%d/keys", uid), token, nil, 200)
	// SSH authenticates from the index.
	for range 3 {
		if out, err := sshGreeting(p.SSHAddr, signer); err != nil || !strings.Contains(out, "Welcome to keygate, @alice!") {
			t.Fatalf("ssh on a full disk: %q, %v", out, err)
		}
	}
	// Space again: writes work.
	if err := os.Remove(filepath.Join(mnt, "ballast")); err != nil {
		t.Fatal(err)
	}
	p.must("POST", "/api/v4/users", token, map[string]any{"username": "bob", "email": "bob@example.com", "name": "Bob"}, 201)
	p.must("GET", "/-/readiness", "", nil, 200)
}
