package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/sshd"
)

// hostCertEnv starts keygate presenting a host certificate for its ed25519
// host key, signed by a host CA made with the real ssh-keygen (-h, the
// principal 127.0.0.1), and returns the CA's public key line.
func hostCertEnv(t *testing.T) (*env, string) {
	t.Helper()
	requireBinaries(t, "ssh-keygen")
	dir := t.TempDir()
	caPath := filepath.Join(dir, "host_ca")
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
		}
	}
	run("-q", "-t", "ed25519", "-N", "", "-C", "host-ca", "-f", caPath)
	var ed gossh.PublicKey
	for _, k := range hostKeys {
		if k.PublicKey().Type() == gossh.KeyAlgoED25519 {
			ed = k.PublicKey()
		}
	}
	hostPub := filepath.Join(dir, "ssh_host_ed25519_key.pub")
	if err := os.WriteFile(hostPub, gossh.MarshalAuthorizedKey(ed), 0o600); err != nil {
		t.Fatal(err)
	}
	run("-q", "-s", caPath, "-h", "-I", "keygate-e2e", "-n", "127.0.0.1", "-V", "-5m:+1h", hostPub)
	// LoadHostCertificates finds DATA_DIR/ssh_host_ed25519_key-cert.pub by
	// OpenSSH's name.
	certs, err := sshd.LoadHostCertificates(dir, nil, hostKeys)
	if err != nil || len(certs) != 1 {
		t.Fatalf("LoadHostCertificates = %d certificates, %v", len(certs), err)
	}
	e := newEnvWith(t, func(c *sshd.Config) { c.HostCertificates = certs })
	ca, err := os.ReadFile(caPath + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return e, strings.TrimSpace(string(ca))
}

// TestHostCertificate: with only an @cert-authority line for keygate's
// host CA in known_hosts, the real ssh connects under
// StrictHostKeyChecking=yes without a prompt and without learning a key;
// an @cert-authority line for another CA is refused (the check can fail).
func TestHostCertificate(t *testing.T) {
	t.Parallel()
	e, caLine := hostCertEnv(t)
	id, _ := e.createUser(t, "alice")
	key, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, id, pub, "", "")
	_, otherCA := e.sshKeygen(t, "ed25519", 0)
	host := "[127.0.0.1]:" + strconv.Itoa(e.sshPort)
	for _, c := range []struct {
		name, ca string
		ok       bool
	}{{"keygate's host CA", caLine, true}, {"another CA", otherCA, false}} {
		kh := filepath.Join(t.TempDir(), "known_hosts")
		line := "@cert-authority " + host + " " + c.ca + "\n"
		if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"-F", "/dev/null", "-p", strconv.Itoa(e.sshPort), "-i", key, "-o", "IdentitiesOnly=yes",
			"-o", "IdentityAgent=none", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
			"-o", "UserKnownHostsFile=" + kh, "-o", "GlobalKnownHostsFile=/dev/null", "-o", "UpdateHostKeys=yes",
			"-o", "LogLevel=DEBUG1", "git@127.0.0.1"}
		stdout, stderr, code := e.run(t, "", nil, nil, "ssh", args...)
		if c.ok {
			if code != 0 || !strings.Contains(stdout, "Welcome to keygate") {
				t.Fatalf("%s: exit %d, %q\n%s", c.name, code, stdout, stderr)
			}
			if !strings.Contains(stderr, "Server host certificate: ssh-ed25519-cert-v01@openssh.com") {
				t.Errorf("%s: ssh did not verify a host certificate:\n%s", c.name, stderr)
			}
			if got := readFile(t, kh); got+"\n" != line {
				t.Errorf("%s: known_hosts changed:\n%s", c.name, got)
			}
		} else if code == 0 || !strings.Contains(stderr, "Host key verification failed") {
			t.Fatalf("%s: exit %d, want a host key verification failure\n%s", c.name, code, stderr)
		}
	}
}

// TestUpdateHostKeysWithHostCertificate: presenting a certificate changes
// nothing for a client that trusts the plain ed25519 key: OpenSSH finds no
// CA for the certificate, falls back to the key, and UpdateHostKeys still
// learns the ECDSA and RSA keys (the announcement carries the plain keys,
// never the certificate).
func TestUpdateHostKeysWithHostCertificate(t *testing.T) {
	t.Parallel()
	e, _ := hostCertEnv(t)
	id, _ := e.createUser(t, "alice")
	key, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, id, pub, "", "")
	var ed string
	for _, k := range hostKeys {
		if k.PublicKey().Type() == gossh.KeyAlgoED25519 {
			ed = strings.TrimSpace(string(gossh.MarshalAuthorizedKey(k.PublicKey())))
		}
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	host := "[127.0.0.1]:" + strconv.Itoa(e.sshPort)
	if err := os.WriteFile(kh, []byte(host+" "+ed+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-F", "/dev/null", "-p", strconv.Itoa(e.sshPort), "-i", key, "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + kh,
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "UpdateHostKeys=yes", "-o", "LogLevel=DEBUG1", "git@127.0.0.1"}
	var got, stderr string
	for attempt := 1; ; attempt++ { // see TestUpdateHostKeys: the proof may arrive after a short session
		stdout, serr, code := e.run(t, "", nil, nil, "ssh", args...)
		if code != 0 || !strings.Contains(stdout, "Welcome to keygate") {
			t.Fatalf("ssh: exit %d, %q\n%s", code, stdout, serr)
		}
		got, stderr = readFile(t, kh), serr
		if strings.Contains(got, "ecdsa-sha2-nistp256") && strings.Contains(got, "ssh-rsa") || attempt == 5 {
			break
		}
	}
	for _, typ := range []string{"ecdsa-sha2-nistp256", "ssh-rsa"} {
		if !strings.Contains(got, typ) {
			t.Fatalf("known_hosts did not learn the %s host key in 5 connections:\n%s\nssh said:\n%s", typ, got, stderr)
		}
	}
	if strings.Contains(got, "cert-v01") {
		t.Errorf("known_hosts learned a certificate:\n%s", got)
	}
}
