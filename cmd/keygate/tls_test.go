package main

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  ed25519.PrivateKey
	pool *x509.CertPool
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keygate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a server certificate for 127.0.0.1 named cn (fixed-length
// names give files of equal size) and its key to certFile and keyFile.
func (ca *testCA) issue(t *testing.T, cn, certFile, keyFile string) {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca.issueFor(t, key, cn, certFile, keyFile)
}

// issueFor is issue with the server's key given (an RSA key for the
// ECDHE_RSA suites).
func (ca *testCA) issueFor(t *testing.T, key crypto.Signer, cn, certFile, keyFile string) {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(100), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost", "keygate.test"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Write to a temporary name and rename, as certbot and cert-manager do.
	for f, b := range map[string][]byte{
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	} {
		if err := os.WriteFile(f+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f+".tmp", f); err != nil {
			t.Fatal(err)
		}
	}
}

// servedCN is the common name of the certificate a new TLS connection sees.
func servedCN(t *testing.T, addr string, pool *x509.CertPool) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestNativeTLS serves the REST API over HTTPS from --tls-cert/--tls-key:
// TLS 1.2+, HTTP/2, https links, and a renewed certificate picked up on
// change and on SIGHUP without a restart.
func TestNativeTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.issue(t, "keygate-1", certFile, keyFile)
	token := randomToken("kgadmin-")
	p := startServe(t, serveOpts{Env: []string{"KEYGATE_ADMIN_TOKEN=" + token, "KEYGATE_TLS_KEY=" + keyFile},
		Args: []string{"--tls-cert", certFile}, TLS: &tls.Config{RootCAs: ca.pool}})

	req := mustRequest(t, "GET", p.URL("/api/v4/users?per_page=1"), nil)
	req.Header.Set("PRIVATE-TOKEN", token)
	res, err := p.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.ProtoMajor != 2 || res.TLS == nil || res.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("GET /users over TLS: %d %s tls %v", res.StatusCode, res.Proto, res.TLS != nil)
	}
	if l := res.Header.Get("Link"); !strings.Contains(l, "<https://"+p.HTTPAddr+"/api/v4/users?") {
		t.Errorf("Link over native TLS = %q, want https links", l)
	}
	if _, err := tls.Dial("tcp", p.HTTPAddr, &tls.Config{RootCAs: ca.pool, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("a TLS 1.1 client was accepted")
	}
	if res, err := http.Get("http://" + p.HTTPAddr + "/-/health"); err == nil {
		res.Body.Close()
		if res.StatusCode < 400 {
			t.Errorf("plain HTTP on the TLS listener answered %d", res.StatusCode)
		}
	}
	if curl, err := exec.LookPath("curl"); err == nil {
		caFile := filepath.Join(dir, "ca.pem")
		os.WriteFile(caFile, ca.pem, 0o600)
		out, err := exec.Command(curl, "-sS", "--fail", "--cacert", caFile, "-H", "PRIVATE-TOKEN: "+token,
			"-o", "/dev/null", "-w", "%{http_code} %{scheme}", p.URL("/api/v4/user")).CombinedOutput()
		if err != nil || !strings.HasPrefix(strings.ToLower(string(out)), "200 https") {
			t.Errorf("curl --cacert over HTTPS: %v %s", err, out)
		}
	}

	// Renewal: new files are picked up on the next handshake.
	if cn := servedCN(t, p.HTTPAddr, ca.pool); cn != "keygate-1" {
		t.Fatalf("served %q", cn)
	}
	ca.issue(t, "keygate-2", certFile, keyFile)
	deadline := time.Now().Add(10 * time.Second)
	for servedCN(t, p.HTTPAddr, ca.pool) != "keygate-2" {
		if time.Now().After(deadline) {
			t.Fatalf("renewed certificate not served after 10s; stderr:\n%s", p.Stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A broken pair is refused and the old certificate kept.
	os.WriteFile(keyFile, []byte("not a key\n"), 0o600)
	time.Sleep(1100 * time.Millisecond)
	if cn := servedCN(t, p.HTTPAddr, ca.pool); cn != "keygate-2" {
		t.Errorf("after a broken key file, served %q; want the old keygate-2", cn)
	}
	// The warning travels through keygate's stderr pipe: give it a moment.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(p.Stderr.String(), "TLS certificate reload failed"); {
		if time.Now().After(deadline) {
			t.Fatalf("no warning about the broken key; stderr:\n%s", p.Stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// SIGHUP reloads even when the files look unchanged (same size and
	// modification time as the stamp keygate holds).
	ca.issue(t, "keygate-2", certFile, keyFile) // valid again, loads by stamp change
	time.Sleep(1100 * time.Millisecond)
	servedCN(t, p.HTTPAddr, ca.pool)
	st1, _ := os.Stat(certFile)
	st2, _ := os.Stat(keyFile)
	ca.issue(t, "keygate-3", certFile, keyFile)
	os.Chtimes(certFile, st1.ModTime(), st1.ModTime())
	os.Chtimes(keyFile, st2.ModTime(), st2.ModTime())
	time.Sleep(1100 * time.Millisecond)
	if cn := servedCN(t, p.HTTPAddr, ca.pool); cn != "keygate-2" {
		t.Fatalf("without SIGHUP served %q; the test needs the stamp unchanged", cn)
	}
	p.signal(syscall.SIGHUP)
	deadline = time.Now().Add(10 * time.Second)
	for servedCN(t, p.HTTPAddr, ca.pool) != "keygate-3" {
		if time.Now().After(deadline) || p.exited() {
			t.Fatalf("SIGHUP did not reload the certificate; stderr:\n%s", p.Stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTLSFlagErrors: a missing half or an unreadable pair stops keygate
// before it serves, naming the flag.
func TestTLSFlagErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", filepath.Join(dir, "x.crt")}, "--tls-cert and --tls-key go together"},
		{[]string{"--tls-cert", filepath.Join(dir, "x.crt"), "--tls-key", filepath.Join(dir, "x.key")}, "--tls-cert"},
		{[]string{"--external-url", "keys.example.com"}, "--external-url"},
		{[]string{"--trusted-proxies", "10.0.0.0/33"}, "--trusted-proxies"},
	} {
		p := launchServe(t, serveOpts{Args: tc.args})
		if code := p.wait(30 * time.Second); code == 0 || !strings.Contains(p.Stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want failure naming %s", tc.args, code, p.Stderr, tc.want)
		}
	}
}

// TestTLS12OnlyAEAD: over TLS 1.2, keygate offers only ECDHE with AEAD
// ciphers (Mozilla's "intermediate"): a client that offers only a CBC
// suite (or only RSA key exchange) fails the handshake, AES-GCM and
// ChaCha20-Poly1305 work, and TLS 1.3 is untouched. Checked with Go's TLS
// client and, when installed, `openssl s_client`.
func TestTLS12OnlyAEAD(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ca.issueFor(t, key, "keygate-rsa", certFile, keyFile)
	p := startServe(t, serveOpts{Args: []string{"--tls-cert", certFile, "--tls-key", keyFile}, TLS: &tls.Config{RootCAs: ca.pool}})

	dial := func(suite uint16) error {
		c, err := tls.Dial("tcp", p.HTTPAddr, &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{suite}})
		if err != nil {
			return err
		}
		defer c.Close()
		if got := c.ConnectionState().CipherSuite; got != suite {
			t.Errorf("asked for %s, got %s", tls.CipherSuiteName(suite), tls.CipherSuiteName(got))
		}
		return nil
	}
	for _, s := range []uint16{
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
		tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,
	} {
		if err := dial(s); err == nil {
			t.Errorf("TLS 1.2 with %s was accepted", tls.CipherSuiteName(s))
		}
	}
	for _, s := range []uint16{
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	} {
		if err := dial(s); err != nil {
			t.Errorf("TLS 1.2 with %s: %v", tls.CipherSuiteName(s), err)
		}
	}
	if c, err := tls.Dial("tcp", p.HTTPAddr, &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS13}); err != nil {
		t.Errorf("TLS 1.3: %v", err)
	} else {
		c.Close()
	}

	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("openssl not installed: checked with Go's TLS client only")
		return
	}
	sClient := func(cipher string) (string, error) {
		cmd := exec.Command(openssl, "s_client", "-connect", p.HTTPAddr, "-tls1_2", "-cipher", cipher)
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := sClient("ECDHE-RSA-AES128-SHA"); err == nil {
		t.Errorf("openssl s_client -tls1_2 -cipher ECDHE-RSA-AES128-SHA connected:\n%s", out)
	}
	if out, err := sClient("ECDHE-RSA-AES128-GCM-SHA256"); err != nil || !strings.Contains(out, "ECDHE-RSA-AES128-GCM-SHA256") {
		t.Errorf("openssl s_client -tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256: %v\n%s", err, out)
	}
}
