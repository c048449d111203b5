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
	"unsafe"

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
// open for writing (the kernel answers EBUSY, also for a bind mount), and
// root ignores file modes; TestStorageShutdownWritesAnswer503 covers a file
// system that refuses all I/O, TestReadOnlySQLiteAtStart a keystore that is
// read-only when keygate starts, and TestReadOnlyPostgresWritesAnswer503 a
// PostgreSQL database turning read-only under keygate.
func TestDiskFullWritesAnswer503(t *testing.T) {
	mnt := mountTmpfs(t, 8<<20)
	storageFault(t, mnt, true,
		func() { fill(t, filepath.Join(mnt, "ballast")) },
		func() {
			if err := os.Remove(filepath.Join(mnt, "ballast")); err != nil {
				t.Fatal(err)
			}
		})
}

// TestStorageShutdownWritesAnswer503: the data directory's ext4 file system
// (on a loop device) is shut down under keygate (EXT4_IOC_SHUTDOWN, as a
// failing disk does): every write answers 503, SSH keeps authenticating
// existing keys from the index.
func TestStorageShutdownWritesAnswer503(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	for _, b := range []string{"losetup", "mkfs.ext4"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed", b)
		}
	}
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	out, err := exec.Command("losetup", "-f", "--show", img).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device here: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	_ = exec.Command("blockdev", "--setrw", dev).Run() // a reused loop device may keep a read-only flag
	mnt := t.TempDir()
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount ext4 here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	storageFault(t, mnt, false, func() {
		f, err := os.Open(mnt)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		const ext4IOCShutdown = 0x8004587d // _IOR('X', 125, __u32)
		flags := uint32(2)                 // EXT4_GOING_FLAGS_NOLOGFLUSH
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), ext4IOCShutdown, uintptr(unsafe.Pointer(&flags))); errno != 0 {
			t.Skipf("EXT4_IOC_SHUTDOWN: %v", errno)
		}
	}, nil)
}

// storageFault runs keygate with its data directory under mnt, makes a user
// with a key, calls induce, and checks that writes answer 503 with a clear
// message, never 500, and that SSH still authenticates the key. With reads,
// REST reads keep working too. recover, if not nil, ends the fault: writes
// work again.
func storageFault(t *testing.T, mnt string, reads bool, induce, recover func()) {
	t.Helper()
	token := randomToken("storagefault-admin-")
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

	induce()
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
			t.Fatalf("write during the storage fault: %d %s", r.Status, r.Body)
		}
		if got503 {
			break
		}
	}
	if !got503 {
		t.Fatal("50 writes during the storage fault all succeeded")
	}
	// Other writes fail the same way (on a file system that fails every read
	// too, SQLite reports its pages as malformed: still 503, never 500).
	r, err := p.do(t.Context(), "POST", "/api/v4/users", token, map[string]any{"username": "bob", "email": "bob@example.com", "name": "Bob"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 503 {
		t.Fatalf("create user during the storage fault: %d %s\nstderr:\n%s", r.Status, r.Body, p.Stderr)
	}
	if reads {
		p.must("GET", fmt.Sprintf("/api/v4/users/%d/keys", uid), token, nil, 200)
	}
	// SSH authenticates from the index.
	for range 3 {
		if out, err := sshGreeting(p.SSHAddr, signer); err != nil || !strings.Contains(out, "Welcome to keygate, @alice!") {
			t.Fatalf("ssh during the storage fault: %q, %v", out, err)
		}
	}
	if recover == nil {
		return
	}
	recover()
	p.must("POST", "/api/v4/users", token, map[string]any{"username": "bob", "email": "bob@example.com", "name": "Bob"}, 201)
	p.must("GET", "/-/readiness", "", nil, 200)
}
