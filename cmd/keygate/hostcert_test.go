package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostCertificateServe: keygate serve presents
// DATA_DIR/ssh_host_ed25519_key-cert.pub (logged, and warned about when it
// does not name --hostname); keygate hostkeys prints the @cert-authority
// line of its CA; a --host-certificate that is not a host certificate of
// a host key stops serve at start, naming the file.
func TestHostCertificateServe(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	t.Parallel()
	dir := t.TempDir()
	p := startServe(t, serveOpts{DataDir: dir})
	p.stop()
	ca := filepath.Join(t.TempDir(), "host_ca")
	other := filepath.Join(t.TempDir(), "ssh_host_ecdsa_key.pub")
	if b, err := os.ReadFile(filepath.Join(dir, "ssh_host_ecdsa_key.pub")); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(other, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-q", "-t", "ed25519", "-N", "", "-C", "host-ca", "-f", ca},
		{"-q", "-s", ca, "-h", "-I", "keygate", "-n", "keygate.test", "-V", "-1m:+1h", filepath.Join(dir, "ssh_host_ed25519_key.pub")},
		{"-q", "-s", ca, "-I", "not-a-host", "-n", "x", "-O", "clear", other},
	} {
		if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
		}
	}
	caPub, err := os.ReadFile(ca + ".pub")
	if err != nil {
		t.Fatal(err)
	}

	p = startServe(t, serveOpts{DataDir: dir})
	if !strings.Contains(p.Stderr.String(), "host certificate") || strings.Contains(p.Stderr.String(), "does not name --hostname") {
		t.Errorf("serve did not log the host certificate (or warned):\n%s", p.Stderr)
	}
	_, port, _ := net.SplitHostPort(p.SSHAddr)
	code, out, stderr := runKeygate(t, []string{"KEYGATE_DATA_DIR=" + dir}, "hostkeys", "--hostname", "keygate.test", "--ssh-addr", ":"+port)
	if code != 0 {
		t.Fatalf("hostkeys: %d %s", code, stderr)
	}
	want := "@cert-authority [keygate.test]:" + port + " " + strings.Join(strings.Fields(string(caPub))[:2], " ")
	if !strings.Contains(out, want) {
		t.Errorf("hostkeys does not print %q:\n%s", want, out)
	}
	p.stop()

	// Another --hostname than the certificate's principal: a warning.
	p = startServe(t, serveOpts{DataDir: dir, Env: []string{"KEYGATE_HOSTNAME=other.example"}})
	if !strings.Contains(p.Stderr.String(), "does not name --hostname") {
		t.Errorf("no warning for a certificate without --hostname:\n%s", p.Stderr)
	}
	p.stop()

	userCert := strings.TrimSuffix(other, ".pub") + "-cert.pub" // a user certificate of a host key
	bad := launchServe(t, serveOpts{DataDir: dir, Args: []string{"--host-certificate", userCert}})
	if code := bad.wait(startDeadline); code == 0 || !strings.Contains(bad.Stderr.String(), "a user certificate") {
		t.Fatalf("serve with a user certificate as host certificate: exit %d\n%s", code, bad.Stderr)
	}
}
