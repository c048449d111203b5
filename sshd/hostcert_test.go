package sshd_test

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/internal/testutil"
	"github.com/keygate/keygate/sshd"
)

// TestLoadHostCertificates: a host certificate of a host key is loaded
// from DATA_DIR by OpenSSH's name or from a named file, and offered under
// its certificate algorithm; anything else is refused by name at start.
func TestLoadHostCertificates(t *testing.T) {
	t.Parallel()
	host, other, ca := testutil.NewSigner(t), testutil.NewSigner(t), testutil.NewSigner(t)
	keys := []gossh.Signer{host}
	write := func(dir, name string, pub gossh.PublicKey) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, gossh.MarshalAuthorizedKey(pub), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert := func(key gossh.PublicKey, typ uint32) *gossh.Certificate {
		c := &gossh.Certificate{Key: key, CertType: typ, KeyId: "h", ValidPrincipals: []string{"keygate.example"}, ValidBefore: gossh.CertTimeInfinity}
		if err := c.SignCert(rand.Reader, ca); err != nil {
			t.Fatal(err)
		}
		return c
	}

	dir := t.TempDir()
	write(dir, "ssh_host_ed25519_key-cert.pub", cert(host.PublicKey(), gossh.HostCert))
	got, err := sshd.LoadHostCertificates(dir, nil, keys)
	if err != nil || len(got) != 1 || got[0].PublicKey().Type() != gossh.CertAlgoED25519v01 {
		t.Fatalf("by OpenSSH's name: %v, %v", got, err)
	}
	named := write(t.TempDir(), "any-name.pub", cert(host.PublicKey(), gossh.HostCert))
	if got, err := sshd.LoadHostCertificates(t.TempDir(), []string{named}, keys); err != nil || len(got) != 1 {
		t.Fatalf("--host-certificate: %v, %v", got, err)
	}
	if got, err := sshd.LoadHostCertificates(t.TempDir(), nil, keys); err != nil || len(got) != 0 {
		t.Fatalf("none: %v, %v", got, err)
	}
	for _, c := range []struct {
		name string
		pub  gossh.PublicKey
		want string
	}{
		{"user-certificate", cert(host.PublicKey(), gossh.UserCert), "a user certificate"},
		{"plain-key", host.PublicKey(), "not a certificate"},
		{"another-key", cert(other.PublicKey(), gossh.HostCert), "none of the host keys"},
	} {
		f := write(t.TempDir(), "cert.pub", c.pub)
		if _, err := sshd.LoadHostCertificates(t.TempDir(), []string{f}, keys); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	twice := write(t.TempDir(), "twice.pub", cert(host.PublicKey(), gossh.HostCert))
	if _, err := sshd.LoadHostCertificates(dir, []string{twice}, keys); err == nil || !strings.Contains(err.Error(), "same host key") {
		t.Errorf("two certificates for one key: %v", err)
	}
	if _, err := sshd.LoadHostCertificates(t.TempDir(), []string{filepath.Join(dir, "missing")}, keys); err == nil {
		t.Error("a missing --host-certificate file was accepted")
	}
}
