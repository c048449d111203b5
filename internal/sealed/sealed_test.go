package sealed

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "ca.key")
	k, created, err := LoadOrCreateKeyFile(path)
	if err != nil || !created {
		t.Fatalf("LoadOrCreateKeyFile = %v, %v", created, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	again, created, err := LoadOrCreateKeyFile(path)
	if err != nil || created || again.ID() != k.ID() {
		t.Fatalf("reload = %v %v %v, want the same key", again.ID(), created, err)
	}
	secret := []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
	s, err := k.Seal(secret, []byte("SHA256:ca1"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s, "secret") || !strings.HasPrefix(s, "kgsealed1:"+k.ID()+":") {
		t.Fatalf("sealed value %q", s)
	}
	got, err := again.Open(s, []byte("SHA256:ca1"))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := k.Open(s, []byte("SHA256:ca2")); err == nil {
		t.Fatal("opened under another context")
	}
	other, _ := NewKey(bytes.Repeat([]byte{7}, 32))
	if _, err := other.Open(s, []byte("SHA256:ca1")); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("another key: %v, want ErrWrongKey", err)
	}
	tampered := s[:len(s)-4] + "AAA="
	if _, err := k.Open(tampered, []byte("SHA256:ca1")); err == nil {
		t.Fatal("opened a tampered value")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(path, true); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key file: %v", err)
	}
	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("short\n"), 0o600)
	if _, err := LoadKey(bad, true); err == nil {
		t.Fatal("loaded a key file without a key")
	}
}
