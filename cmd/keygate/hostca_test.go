package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testutil"
)

// findSSHD returns the sshd binary, or skips the test.
func findSSHD(t *testing.T) string {
	t.Helper()
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/sshd"); serr != nil {
			t.Skip("sshd not installed (Debian openssh-server; CI installs it)")
		}
		sshd = "/usr/sbin/sshd"
	}
	return sshd
}

// startLoopbackSSHD starts a real sshd as the test's user on a free
// loopback port with the given configuration lines (plus what a test
// instance needs) and returns its port and log.
func startLoopbackSSHD(t *testing.T, sshd, dir, config string) (int, *testutil.SyncBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := config + fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
PidFile none
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
LogLevel VERBOSE
`, port)
	cfgFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sshd, "-t", "-f", cfgFile).CombinedOutput(); err != nil {
		t.Fatalf("sshd -t: %v\n%s", err, out)
	}
	log := &testutil.SyncBuffer{}
	daemon := exec.Command(sshd, "-D", "-e", "-f", cfgFile)
	daemon.Stderr = log
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = daemon.Process.Kill()
		_ = daemon.Wait()
		if t.Failed() {
			t.Logf("sshd log:\n%s", log.String())
		}
	})
	testutil.WaitFor(t, "sshd to listen", 30*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return port, log
}

// sshRun runs the real ssh with args and returns whether it exited 0 and
// what it printed.
func sshRun(t *testing.T, args ...string) (bool, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", append([]string{"-F", "/dev/null", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "PasswordAuthentication=no", "-o", "LogLevel=DEBUG1"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return err == nil, out.String()
}

// TestManagedHostCA, with the real binaries: an admin generates a host CA
// through the API; without a restart keygate presents its certificate
// for --hostname and --host-certificate-names, and `keygate hostkeys`
// prints the @cert-authority line with which alone the real ssh connects
// under StrictHostKeyChecking=yes (another CA's line: refused); after a
// restart the certificate is there from the first connection, and no new
// one was signed. A fleet server's host key signed through the API is
// accepted by ssh against a real sshd on loopback; after a revocation, ssh
// with RevokedHostKeys= the host KRL (fetched without a token) refuses it.
func TestManagedHostCA(t *testing.T) {
	sshd := findSSHD(t)
	for _, b := range []string{"ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed", b)
		}
	}
	t.Parallel()
	dir := t.TempDir()
	dataDir := t.TempDir()
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	admin := randomToken("glpat-")
	opts := serveOpts{DataDir: dataDir, Env: []string{"KEYGATE_ADMIN_TOKEN=" + admin}, Args: []string{"--host-certificate-names", "127.0.0.1,Bastion.test"}}
	p := startServe(t, opts)
	_, sshPort, _ := net.SplitHostPort(p.SSHAddr)

	// A user and key to log in to keygate with.
	clientKey := filepath.Join(dir, "id_ed25519")
	run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", clientKey)
	clientPub, err := os.ReadFile(clientKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	uid := id(t, p.must("POST", "/api/v4/users", admin, map[string]any{"username": "alice", "email": "alice@example.com", "name": "Alice"}, 201).Object(t))
	p.must("POST", "/api/v4/users/"+strconv.FormatInt(uid, 10)+"/keys", admin, map[string]any{"title": "laptop", "key": string(clientPub)}, 201)

	ca := p.must("POST", "/api/v4/admin/ssh_host_certificate_authorities", admin, map[string]any{"title": "hosts"}, 201).Object(t)
	caKey := ca["key"].(string)
	code, out, stderr := runKeygate(t, []string{"KEYGATE_DATA_DIR=" + dataDir}, "hostkeys", "--hostname", "127.0.0.1", "--ssh-addr", ":"+sshPort)
	if code != 0 {
		t.Fatalf("hostkeys: exit %d\n%s", code, stderr)
	}
	var caLine string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "@cert-authority ") && strings.Contains(l, strings.Fields(caKey)[1]) {
			caLine = l
		}
	}
	if want := "@cert-authority [127.0.0.1]:" + sshPort + " " + strings.Join(strings.Fields(caKey)[:2], " "); !strings.HasPrefix(caLine, want) {
		t.Fatalf("hostkeys prints no @cert-authority line for the managed host CA (want %q):\n%s", want, out)
	}
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(caLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	toKeygate := func(knownHosts string) (bool, string) {
		return sshRun(t, "-p", sshPort, "-i", clientKey, "-o", "UserKnownHostsFile="+knownHosts, "-o", "UpdateHostKeys=yes", "git@127.0.0.1")
	}
	// No restart: keygate picks the new CA up within its check interval.
	var last string
	if !testutil.Poll(30*time.Second, 250*time.Millisecond, func() bool {
		ok, o := toKeygate(kh)
		last = o
		return ok
	}) {
		t.Fatalf("ssh with only the host CA's line never connected:\n%s\nkeygate log:\n%s", last, p.Stderr)
	}
	if !strings.Contains(last, "Welcome to keygate") || !strings.Contains(last, "Server host certificate: ") {
		t.Errorf("ssh did not verify a host certificate:\n%s", last)
	}
	if got, _ := os.ReadFile(kh); string(got) != caLine+"\n" {
		t.Errorf("known_hosts changed:\n%s", got)
	}
	// The metric the expiry alert reads covers the managed certificates.
	metrics := string(p.must("GET", "/metrics", "", nil, 200).Body)
	var notAfter float64
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, `keygate_certificate_not_after_timestamp_seconds{kind="ssh_host",name="ssh-ed25519"} `) {
			notAfter, _ = strconv.ParseFloat(strings.Fields(l)[1], 64)
		}
	}
	if left := time.Until(time.Unix(int64(notAfter), 0)); left < 29*24*time.Hour || left > 31*24*time.Hour {
		t.Errorf("keygate_certificate_not_after_timestamp_seconds for the managed ed25519 certificate: %v left", left)
	}
	otherCA := filepath.Join(dir, "other_ca")
	run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", otherCA)
	otherPub, _ := os.ReadFile(otherCA + ".pub")
	otherKH := filepath.Join(dir, "known_hosts_other")
	if err := os.WriteFile(otherKH, []byte("@cert-authority [127.0.0.1]:"+sshPort+" "+string(otherPub)), 0o600); err != nil {
		t.Fatal(err)
	}
	if ok, o := toKeygate(otherKH); ok || !strings.Contains(o, "Host key verification failed") {
		t.Fatalf("another CA's line: connected = %v\n%s", ok, o)
	}
	own := func() int {
		t.Helper()
		r := p.must("GET", "/api/v4/admin/ssh_host_certificates?own=true", admin, nil, 200)
		return len(bytes.Split(bytes.TrimSpace(r.Body), []byte(`"own":true`))) - 1
	}
	if n := own(); n != 3 {
		t.Errorf("%d own host certificates recorded, want 3 (one per host key)", n)
	}

	// At start: from the first connection, with the certificates recorded.
	p.stop()
	p = startServe(t, opts)
	_, sshPort, _ = net.SplitHostPort(p.SSHAddr) // new ports: the same CA line for the new one
	caLine = "@cert-authority [127.0.0.1]:" + sshPort + " " + strings.Join(strings.Fields(caKey)[:2], " ")
	if err := os.WriteFile(kh, []byte(caLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ok, o := toKeygate(kh); !ok {
		t.Fatalf("after a restart, the first ssh was refused:\n%s", o)
	}
	if n := own(); n != 3 {
		t.Errorf("a restart signed again: %d own host certificates", n)
	}

	// A fleet server: a real sshd presenting a certificate from the API.
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey)
	hostPub, _ := os.ReadFile(hostKey + ".pub")
	hc := p.must("POST", "/api/v4/admin/ssh_host_certificates", admin,
		map[string]any{"key": string(hostPub), "principals": []string{"127.0.0.1", "web1.test"}, "key_id": "web1"}, 201).Object(t)
	if err := os.WriteFile(hostKey+"-cert.pub", []byte(hc["certificate"].(string)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(run("ssh-keygen", "-L", "-f", hostKey+"-cert.pub"), "host certificate") {
		t.Fatal("ssh-keygen does not read a host certificate")
	}
	sshdPort, _ := startLoopbackSSHD(t, sshd, dir, fmt.Sprintf("HostKey %s\nHostCertificate %s\nAuthorizedKeysFile %s\n",
		hostKey, hostKey+"-cert.pub", clientKey+".pub"))
	fleetKH := filepath.Join(dir, "known_hosts_fleet")
	if err := os.WriteFile(fleetKH, []byte("@cert-authority [127.0.0.1]:"+strconv.Itoa(sshdPort)+" "+caKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fetchKRL := func(name string) string {
		t.Helper()
		resp, err := http.Get(p.URL("/api/v4/ssh_host_certificate_authorities/krl"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("host KRL: %d %s", resp.StatusCode, b)
		}
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	toFleet := func(krlFile string) (bool, string) {
		args := []string{"-p", strconv.Itoa(sshdPort), "-i", clientKey, "-o", "UserKnownHostsFile=" + fleetKH}
		if krlFile != "" {
			args = append(args, "-o", "RevokedHostKeys="+krlFile)
		}
		return sshRun(t, append(args, me.Username+"@127.0.0.1", "echo", "fleet-ok")...)
	}
	before := fetchKRL("before.krl")
	if ok, o := toFleet(before); !ok || !strings.Contains(o, "fleet-ok") || !strings.Contains(o, "Server host certificate: ") {
		t.Fatalf("ssh to the fleet server with its host certificate:\n%s", o)
	}
	p.must("POST", "/api/v4/admin/ssh_host_certificates/"+strconv.FormatInt(id(t, hc), 10)+"/revoke", admin,
		map[string]any{"reason": "host rebuilt"}, 200)
	after := fetchKRL("after.krl")
	if ok, o := toFleet(after); ok || !strings.Contains(o, "revoked by file") || !strings.Contains(o, "Host key verification failed") {
		t.Fatalf("ssh with RevokedHostKeys after the revocation: connected = %v\n%s", ok, o)
	}
	// The refusal is the KRL's: without it the certificate still verifies.
	if ok, o := toFleet(""); !ok {
		t.Fatalf("ssh without RevokedHostKeys:\n%s", o)
	}
	// ssh-keygen -Q agrees (exit 1: something revoked).
	q, _ := exec.Command("ssh-keygen", "-Q", "-f", after, hostKey+"-cert.pub").CombinedOutput()
	if !strings.Contains(string(q), "REVOKED") {
		t.Errorf("ssh-keygen -Q does not find the certificate revoked:\n%s", q)
	}
}
