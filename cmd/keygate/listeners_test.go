package main

import (
	"bufio"
	"bytes"
	"crypto/rsa"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// TestReadyMeansBothListeners checks SPEC §2: once /-/readiness answers
// 200, the SSH listener speaks SSH too, and health and metrics answer.
func TestReadyMeansBothListeners(t *testing.T) {
	t.Parallel()
	p := startServe(t, serveOpts{Env: []string{"KEYGATE_ADMIN_TOKEN=" + randomToken("listeners-admin-token-")}})
	c, err := net.DialTimeout("tcp", p.SSHAddr, 10*time.Second)
	if err != nil {
		t.Fatalf("readiness was 200 but the SSH listener refuses: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	banner, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(banner, "SSH-2.0-") {
		t.Errorf("SSH listener greeted with %q (%v), want SSH-2.0-…", banner, err)
	}
	p.must("GET", "/-/health", "", nil, 200)
	r := p.must("GET", "/metrics", "", nil, 200)
	if !bytes.Contains(r.Body, []byte("# TYPE ")) || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("/metrics is not Prometheus text: %s %.200s", r.Header.Get("Content-Type"), r.Body)
	}
}

// hostKeys returns the host key the SSH listener presents for each
// algorithm, from a handshake that stops at user authentication.
func hostKeys(t *testing.T, addr string, algos []string) map[string]gossh.PublicKey {
	t.Helper()
	out := map[string]gossh.PublicKey{}
	for _, algo := range algos {
		var got gossh.PublicKey
		cfg := &gossh.ClientConfig{
			User:              "git",
			HostKeyAlgorithms: []string{algo},
			HostKeyCallback: func(_ string, _ net.Addr, key gossh.PublicKey) error {
				got = key
				return nil
			},
			Timeout: 30 * time.Second,
		}
		c, err := gossh.Dial("tcp", addr, cfg)
		if err == nil {
			c.Close()
			t.Fatalf("%s: a client without any credential got in", algo)
		}
		if got == nil {
			t.Fatalf("%s: no host key presented: %v", algo, err)
		}
		out[algo] = got
	}
	return out
}

// TestHostKeysGeneratedOnceAndKept checks SPEC §2 and §8: ed25519, ecdsa and
// rsa-3072 host keys are generated on first start, stored 0600, and reused.
func TestHostKeysGeneratedOnceAndKept(t *testing.T) {
	t.Parallel()
	algos := []string{gossh.KeyAlgoED25519, gossh.KeyAlgoECDSA256, gossh.KeyAlgoRSASHA256}
	opts := serveOpts{DataDir: t.TempDir(), Env: []string{"KEYGATE_ADMIN_TOKEN=" + randomToken("hostkeys-admin-token-")}}
	p := startServe(t, opts)
	first := hostKeys(t, p.SSHAddr, algos)
	p.stop()
	if k, ok := first[gossh.KeyAlgoRSASHA256].(gossh.CryptoPublicKey); ok {
		if n := k.CryptoPublicKey().(*rsa.PublicKey).N.BitLen(); n != 3072 {
			t.Errorf("RSA host key has %d bits, want 3072", n)
		}
	}
	private := 0
	err := filepath.WalkDir(opts.DataDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte("PRIVATE KEY")) {
			private++
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s holds a private key with mode %v, want 0600", path, fi.Mode().Perm())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if private < len(algos) {
		t.Errorf("%d private key files in the data dir, want at least %d", private, len(algos))
	}

	p = startServe(t, opts)
	again := hostKeys(t, p.SSHAddr, algos)
	p.stop()
	for _, algo := range algos {
		if !bytes.Equal(first[algo].Marshal(), again[algo].Marshal()) {
			t.Errorf("%s host key changed across a restart: %s → %s", algo,
				gossh.FingerprintSHA256(first[algo]), gossh.FingerprintSHA256(again[algo]))
		}
	}
}
