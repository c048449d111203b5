package e2e

import (
	"bytes"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/sshd"
)

// TestIdentityIsTheVerifiedKey is CVE-2024-45337 with the real client: ssh
// offers alice's public key (which the server answers "maybe" to), cannot
// sign with it, then signs with the attacker's key. The session must be
// the attacker's.
func TestIdentityIsTheVerifiedKey(t *testing.T) {
	t.Parallel()
	e, aliceID, _ := newAlice(t)
	_, victimPub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, aliceID, victimPub, "", "")
	// Only victim.pub exists, and ssh is given that file: OpenSSH loads the
	// public key from it and offers it, then fails to load a private key
	// from it and moves on to its next identity.
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim+".pub", []byte(victimPub+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	malloryID, _ := e.createUser(t, "mallory")
	attacker, attackerPub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, malloryID, attackerPub, "", "")
	stranger, _ := e.sshKeygen(t, "ed25519", 0) // known to nobody

	for _, tc := range []struct {
		name       string
		second     string
		wantStdout string
		wantCode   int
	}{
		{"session-belongs-to-the-attacker", attacker, "Welcome to keygate, @mallory!\n", 0},
		{"unknown-second-key-gets-nothing", stranger, "", 255},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := e.ssh(t, []string{victim + ".pub", tc.second}, "git", "-v")
			// The trap is set only if the server accepted the victim's offer.
			if !strings.Contains(stderr, "Server accepts key: "+victim+".pub") {
				t.Fatalf("the server never accepted the offer of the victim's key, so this test proves nothing:\n%s", stderr)
			}
			if code != tc.wantCode || stdout != tc.wantStdout {
				t.Errorf("exit %d, stdout %q; want exit %d and %q\nstderr: %s", code, stdout, tc.wantCode, tc.wantStdout, stderr)
			}
		})
	}
}

func TestKeylessClientGetsNoSession(t *testing.T) {
	t.Parallel()
	e, aliceID, _ := newAlice(t)
	_, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, aliceID, pub, "", "")

	t.Run("openssh", func(t *testing.T) {
		t.Parallel()
		for _, login := range []string{"git", "alice"} {
			stdout, stderr, code := e.ssh(t, nil, login, "-o", "PubkeyAuthentication=no", "git-upload-pack 'eng/api.git'")
			if code != 255 || stdout != "" || !strings.Contains(stderr, "Permission denied") {
				t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 255 and permission denied", login, code, stdout, stderr)
			}
		}
	})
	t.Run("x-crypto", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name string
			auth []gossh.AuthMethod
		}{
			{"none", nil},
			{"password", []gossh.AuthMethod{gossh.Password("alice")}},
			{"keyboard-interactive", []gossh.AuthMethod{gossh.KeyboardInteractive(
				func(string, string, []string, []bool) ([]string, error) { return nil, nil })}},
		} {
			c, err := dialXCrypto(e, "git", tc.auth...)
			if err == nil {
				c.Close()
				t.Errorf("%s: authenticated without a key", tc.name)
			}
		}
	})
}

func TestSHA1RSASignaturesAreRefused(t *testing.T) {
	t.Parallel()
	e, aliceID, _ := newAlice(t)
	key, pub := e.sshKeygen(t, "rsa", 3072)
	e.addKey(t, aliceID, pub, "", "")

	t.Run("openssh", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name, algorithms, wantStdout string
			wantCode                     int
		}{
			{"rsa-sha2-512", "rsa-sha2-512", welcomeAlice, 0},
			{"rsa-sha2-256", "rsa-sha2-256", welcomeAlice, 0},
			{"ssh-rsa-sha1-only", "ssh-rsa", "", 255},
		} {
			stdout, stderr, code := e.ssh(t, []string{key}, "git", "-o", "PubkeyAcceptedAlgorithms="+tc.algorithms)
			if code != tc.wantCode || stdout != tc.wantStdout {
				t.Errorf("%s: exit %d, stdout %q; want exit %d and %q\nstderr: %s", tc.name, code, stdout, tc.wantCode, tc.wantStdout, stderr)
			}
		}
	})
	// OpenSSH will not even sign with ssh-rsa once the server lists only
	// SHA-2 algorithms; x/crypto's client falls back to the key's own
	// format and really sends a SHA-1 signature.
	t.Run("x-crypto-sends-sha1", func(t *testing.T) {
		t.Parallel()
		signer := loadSigner(t, key)
		for _, tc := range []struct {
			algorithm string
			wantOK    bool
		}{
			{gossh.KeyAlgoRSASHA256, true},
			{gossh.KeyAlgoRSASHA512, true},
			{gossh.KeyAlgoRSA, false},
		} {
			only, err := gossh.NewSignerWithAlgorithms(signer.(gossh.AlgorithmSigner), []string{tc.algorithm})
			if err != nil {
				t.Fatal(err)
			}
			c, err := dialXCrypto(e, "git", gossh.PublicKeys(only))
			if ok := err == nil; ok != tc.wantOK {
				t.Errorf("%s: authenticated = %v (%v), want %v", tc.algorithm, ok, err, tc.wantOK)
			}
			if c != nil {
				c.Close()
			}
		}
	})
}

// TestLoginNameMustBeGitOrTheKeyOwner: a valid key of alice logs in only
// as the git user or as alice.
func TestLoginNameMustBeGitOrTheKeyOwner(t *testing.T) {
	t.Parallel()
	e, aliceID, _ := newAlice(t)
	key, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, aliceID, pub, "", "")
	e.createUser(t, "mallory")
	signer := loadSigner(t, key)

	for _, tc := range []struct {
		login  string
		wantOK bool
	}{
		{"git", true},
		{"alice", true},
		{"mallory-login", false},
		{"mallory", false}, // another user's name
		{"root", false},
		{"", false},
	} {
		t.Run("login-"+tc.login, func(t *testing.T) {
			t.Parallel()
			c, err := dialXCrypto(e, tc.login, gossh.PublicKeys(signer))
			if ok := err == nil; ok != tc.wantOK {
				t.Fatalf("authenticated = %v (%v), want %v", ok, err, tc.wantOK)
			}
			if c == nil {
				return
			}
			defer c.Close()
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var stdout bytes.Buffer
			s.Stdout = &stdout
			if err := s.Shell(); err != nil {
				t.Fatal(err)
			}
			if err := s.Wait(); err != nil || stdout.String() != welcomeAlice {
				t.Errorf("session: %v, stdout %q; want %q", err, stdout.String(), welcomeAlice)
			}
		})
	}
}

func TestNoSubsystems(t *testing.T) {
	t.Parallel()
	e, aliceID, _ := newAlice(t)
	key, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, aliceID, pub, "", "")
	for _, name := range []string{"sftp", "git-upload-pack"} {
		stdout, stderr, code := e.ssh(t, []string{key}, "git", "-s", name)
		if code == 0 || stdout != "" {
			t.Errorf("subsystem %s: exit %d, stdout %q, stderr %q; want a refusal", name, code, stdout, stderr)
		}
	}
}

func TestHostKeysAreCreatedOnceAndReused(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	first, err := sshd.LoadOrCreateHostKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"ssh_host_ed25519_key", "ssh_host_ecdsa_key", "ssh_host_rsa_key"}
	wantTypes := []string{gossh.KeyAlgoED25519, gossh.KeyAlgoECDSA256, gossh.KeyAlgoRSA}
	if len(first) != len(files) {
		t.Fatalf("got %d host keys, want %d", len(first), len(files))
	}
	contents := map[string][]byte{}
	for i, name := range files {
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatalf("host key file: %v", err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, perm)
		}
		if contents[name], err = os.ReadFile(path); err != nil {
			t.Fatal(err)
		}
		if got := first[i].PublicKey().Type(); got != wantTypes[i] {
			t.Errorf("host key %d is %s, want %s", i, got, wantTypes[i])
		}
	}
	if pk, ok := first[2].PublicKey().(gossh.CryptoPublicKey); !ok {
		t.Errorf("RSA host key has no crypto key")
	} else if rk, ok := pk.CryptoPublicKey().(*rsa.PublicKey); !ok || rk.N.BitLen() != 3072 {
		t.Errorf("RSA host key is not 3072 bits")
	}

	second, err := sshd.LoadOrCreateHostKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range files {
		if !bytes.Equal(first[i].PublicKey().Marshal(), second[i].PublicKey().Marshal()) {
			t.Errorf("%s changed on the second load", name)
		}
		if data, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(data, contents[name]) {
			t.Errorf("%s was rewritten on the second load", name)
		}
	}

	// A key others can read is refused rather than used.
	if err := os.Chmod(filepath.Join(dir, files[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sshd.LoadOrCreateHostKeys(dir); err == nil {
		t.Errorf("a host key with mode 0644 was accepted")
	}
}

// dialXCrypto connects with x/crypto's client as login.
func dialXCrypto(e *env, login string, auth ...gossh.AuthMethod) (*gossh.Client, error) {
	return gossh.Dial("tcp", e.sshAddr, &gossh.ClientConfig{
		User:            login,
		Auth:            auth,
		HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		Timeout:         30 * time.Second,
	})
}

// loadSigner reads a private key written by ssh-keygen.
func loadSigner(t *testing.T, path string) gossh.Signer {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
