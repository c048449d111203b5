package main

import (
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifySocket listens on a real unixgram socket, as systemd does for a
// Type=notify service, and returns its path and the messages received.
func notifySocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	// sun_path is short (108 bytes): not under t.TempDir's long names.
	dir, err := os.MkdirTemp("", "kgnotify")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	msgs := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return path, msgs
}

// nextNotify waits for the next sd_notify datagram.
func nextNotify(t *testing.T, msgs <-chan string, what string) string {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(30 * time.Second):
		t.Fatalf("no sd_notify message %s within 30s", what)
	}
	return ""
}

// TestSystemdNotifyAndCredentials: keygate run as systemd runs a Type=notify
// service with LoadCredential= for its TLS pair. READY=1 arrives on the
// NOTIFY_SOCKET once the listeners answer; the certificate is the one in
// $CREDENTIALS_DIRECTORY (no --tls-cert/--tls-key); SIGHUP (ExecReload)
// sends RELOADING=1 with MONOTONIC_USEC, reloads the certificate from the
// credentials, then READY=1; SIGTERM sends STOPPING=1.
func TestSystemdNotifyAndCredentials(t *testing.T) {
	t.Parallel()
	sock, msgs := notifySocket(t)
	ca := newTestCA(t)
	creds := t.TempDir()
	certFile, keyFile := filepath.Join(creds, "tls-cert.pem"), filepath.Join(creds, "tls-key.pem")
	ca.issue(t, "from-credentials", certFile, keyFile)
	p := launchServe(t, serveOpts{Env: []string{"NOTIFY_SOCKET=" + sock, "CREDENTIALS_DIRECTORY=" + creds},
		TLS: &tls.Config{RootCAs: ca.pool}})
	m := nextNotify(t, msgs, "READY=1")
	if !strings.HasPrefix(m, "READY=1\n") {
		t.Fatalf("first sd_notify message %q, want READY=1", m)
	}
	// READY=1 came after the listeners were bound and the index loaded:
	// readiness answers at once.
	p.must("GET", "/-/readiness", "", nil, 200)
	if cn := servedCN(t, p.HTTPAddr, ca.pool); cn != "from-credentials" {
		t.Fatalf("served certificate %q, want the one from $CREDENTIALS_DIRECTORY", cn)
	}

	ca.issue(t, "renewed-credential", certFile, keyFile)
	p.signal(syscall.SIGHUP)
	if m := nextNotify(t, msgs, "RELOADING=1"); !strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("after SIGHUP: %q, want RELOADING=1 with MONOTONIC_USEC", m)
	}
	if m := nextNotify(t, msgs, "READY=1 after the reload"); !strings.HasPrefix(m, "READY=1\n") {
		t.Fatalf("after the reload: %q, want READY=1", m)
	}
	if cn := servedCN(t, p.HTTPAddr, ca.pool); cn != "renewed-credential" {
		t.Fatalf("after SIGHUP served %q, want the renewed certificate", cn)
	}
	p.stop()
	if m := nextNotify(t, msgs, "STOPPING=1"); !strings.HasPrefix(m, "STOPPING=1\n") {
		t.Fatalf("on SIGTERM: %q, want STOPPING=1", m)
	}
	if strings.Contains(p.Stderr.String(), "sd_notify failed") {
		t.Fatalf("sd_notify failed:\n%s", p.Stderr)
	}

	// Without TLS, SIGHUP (systemctl reload) is answered, not fatal.
	sock2, msgs2 := notifySocket(t)
	q := launchServe(t, serveOpts{Env: []string{"NOTIFY_SOCKET=" + sock2}})
	nextNotify(t, msgs2, "READY=1")
	q.signal(syscall.SIGHUP)
	nextNotify(t, msgs2, "RELOADING=1")
	if m := nextNotify(t, msgs2, "READY=1 after the reload"); !strings.HasPrefix(m, "READY=1\n") {
		t.Fatalf("after SIGHUP without TLS: %q", m)
	}
	q.must("GET", "/-/readiness", "", nil, 200)
	q.stop()

	// Half a pair in the credentials is refused, naming both names.
	half := t.TempDir()
	ca.issue(t, "half", filepath.Join(half, "tls-cert.pem"), filepath.Join(t.TempDir(), "elsewhere.pem"))
	code, _, stderr := runKeygate(t, []string{"CREDENTIALS_DIRECTORY=" + half, "KEYGATE_DATA_DIR=" + t.TempDir()},
		"serve", "--ssh-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	if code == 0 || !strings.Contains(stderr, "tls-cert.pem and tls-key.pem go together") {
		t.Fatalf("half a TLS pair in the credentials: exit %d\n%s", code, stderr)
	}
}

// TestSystemdTLSDropInVerifies: contrib/keygate-tls.conf, dropped in beside
// the unit, passes `systemd-analyze verify` (and a misspelt directive in a
// drop-in fails it, so the drop-in is really read).
func TestSystemdTLSDropInVerifies(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (.ci/run installs systemd)")
	}
	unit, err := os.ReadFile(filepath.Join("..", "..", "contrib", "keygate.service"))
	if err != nil {
		t.Fatal(err)
	}
	dropIn, err := os.ReadFile(filepath.Join("..", "..", "contrib", "keygate-tls.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"LoadCredential=tls-cert.pem:", "LoadCredential=tls-key.pem:"} {
		if !strings.Contains(string(dropIn), want) {
			t.Errorf("the drop-in lacks %s", want)
		}
	}
	verify := func(dropInText string) (string, error) {
		dir := t.TempDir()
		text := strings.Replace(string(unit), "ExecStart=/usr/local/bin/keygate serve", "ExecStart="+keygateBin+" serve", 1)
		if err := os.WriteFile(filepath.Join(dir, "keygate.service"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(dir, "keygate.service.d"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "keygate.service.d", "tls.conf"), []byte(dropInText), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("systemd-analyze", "verify", filepath.Join(dir, "keygate.service")).CombinedOutput()
		return string(out), err
	}
	if out, err := verify(string(dropIn)); err != nil || strings.Contains(out, "keygate.service") || strings.Contains(out, "tls.conf") {
		t.Fatalf("systemd-analyze verify with the TLS drop-in: %v\n%s", err, out)
	}
	bad := strings.Replace(string(dropIn), "LoadCredential=tls-key.pem", "LoadCredentail=tls-key.pem", 1)
	if out, _ := verify(bad); !strings.Contains(out, "LoadCredentail") {
		t.Fatalf("a misspelt directive in the drop-in went unnoticed: the drop-in is not verified\n%s", out)
	}
}
