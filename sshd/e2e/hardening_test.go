package e2e

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/sshd"
)

// TestManyKeysMaxAuthTries: x/crypto (v0.59) lets a client's first
// MaxAuthTries (6) refused key offers go uncounted, as OpenSSH does not
// count offers either, so a client with many agent keys gets further: the
// real ssh offering 7 keys logs in with the 7th. Offering 12 unregistered
// keys is disconnected with "too many authentication failures"; 11 end in
// a plain refusal.
func TestManyKeysMaxAuthTries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var keys []string
	for range 12 {
		k, _ := e.sshKeygen(t, "ed25519", 0)
		keys = append(keys, k)
	}
	_, stderr, code := e.ssh(t, keys, "git")
	if code != 255 || !strings.Contains(stderr, "too many authentication failures") {
		t.Fatalf("12 keys: exit %d, stderr:\n%s\nwant exit 255 and \"too many authentication failures\"", code, stderr)
	}
	_, stderr, code = e.ssh(t, keys[:11], "git")
	if code != 255 || strings.Contains(stderr, "too many") || !strings.Contains(stderr, "Permission denied") {
		t.Fatalf("11 keys: exit %d, stderr:\n%s", code, stderr)
	}
	id, _ := e.createUser(t, "alice")
	seventh, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, id, pub, "", "")
	stdout, stderr, code := e.ssh(t, append(append([]string{}, keys[:6]...), seventh), "git")
	if code != 0 || !strings.Contains(stdout, "Welcome to keygate, @alice!") {
		t.Fatalf("the 7th key: exit %d, %q, stderr:\n%s", code, stdout, stderr)
	}
}

// proxyDial connects from local (e.g. 127.0.0.2), sends a PROXY header
// naming src (version 1 or 2; 0: no header), then runs an SSH handshake
// with auth and one greeting session. It returns the greeting.
func proxyDial(e *env, local string, version byte, src string, login string, auth gossh.AuthMethod) (string, error) {
	c, err := proxyClient(e, local, version, src, login, auth)
	if err != nil {
		return "", err
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	out, err := sess.Output("")
	return string(out), err
}

// proxyClient is an authenticated SSH client behind a PROXY header (see
// proxyDial).
func proxyClient(e *env, local string, version byte, src string, login string, auth gossh.AuthMethod) (*gossh.Client, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	raw, err := d.Dial("tcp", e.sshAddr)
	if err != nil {
		return nil, err
	}
	_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
	if version != 0 {
		h := &proxyproto.Header{
			Version: version, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
			SourceAddr:      &net.TCPAddr{IP: net.ParseIP(src), Port: 40000},
			DestinationAddr: raw.RemoteAddr(),
		}
		if _, err := h.WriteTo(raw); err != nil {
			raw.Close()
			return nil, err
		}
	}
	conn, chans, reqs, err := gossh.NewClientConn(raw, e.sshAddr, &gossh.ClientConfig{
		User: login, Auth: []gossh.AuthMethod{auth}, HostKeyCallback: gossh.InsecureIgnoreHostKey(),
	})
	if err != nil {
		raw.Close()
		return nil, err
	}
	_ = raw.SetDeadline(time.Time{})
	return gossh.NewClient(conn, chans, reqs), nil
}

func certAuth(t *testing.T, key, cert string) gossh.AuthMethod {
	t.Helper()
	signer := loadSigner(t, key)
	text, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := gossh.ParseAuthorizedKey(text)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := gossh.NewCertSigner(pub.(*gossh.Certificate), signer)
	if err != nil {
		t.Fatal(err)
	}
	return gossh.PublicKeys(cs)
}

// TestProxyProtocolUse: behind a trusted proxy (127.0.0.1), a v1 or v2
// header's source is the client address that source-address sees (a
// certificate bound to 203.0.113.7 authenticates only through a header
// naming it), and logs name it; a header from an untrusted source
// (127.0.0.2) is refused, while that source without a header is served.
func TestProxyProtocolUse(t *testing.T) {
	t.Parallel()
	w := certSetupWith(t, func(c *sshd.Config) {
		c.ProxyProtocol = sshd.ProxyUse
		c.ProxyTrusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	e := w.e
	args := append([]string{"-O", "source-address=203.0.113.7/32"}, certStdArgs...)
	key, cert := w.certIssue(t, w.caKey, args...)
	auth := certAuth(t, key, cert)

	for _, v := range []byte{1, 2} {
		out, err := proxyDial(e, "127.0.0.1", v, "203.0.113.7", "git", auth)
		if err != nil || out != certGreeting {
			t.Fatalf("v%d header naming the bound address: %q, %v", v, out, err)
		}
		if out, err := proxyDial(e, "127.0.0.1", v, "198.51.100.9", "git", auth); err == nil {
			t.Fatalf("v%d header naming another address: logged in: %q", v, out)
		}
	}
	if out, err := proxyDial(e, "127.0.0.1", 0, "", "git", auth); err == nil {
		t.Fatalf("trusted source without a header: the certificate bound to 203.0.113.7 logged in: %q", out)
	}
	if !strings.Contains(e.logs.String(), "remote=203.0.113.7:40000") {
		t.Fatal("logs do not name the client address from the PROXY header")
	}
	plain := gossh.PublicKeys(loadSigner(t, w.aliceKey))
	if _, err := proxyDial(e, "127.0.0.2", 1, "203.0.113.7", "git", plain); err == nil {
		t.Fatal("a PROXY header from an untrusted source was accepted")
	}
	if out, err := proxyDial(e, "127.0.0.2", 0, "", "git", plain); err != nil || out != certGreeting {
		t.Fatalf("untrusted source without a header: %q, %v", out, err)
	}
	if !strings.Contains(e.logs.String(), "reason=proxy_protocol") {
		t.Fatal("the refused header is not logged")
	}

	// The bastion audit event names the client from the header.
	port := echoServer(t)
	e.addTarget(t, w.eng, dest(port), 0)
	c, err := proxyClient(e, "127.0.0.1", 2, "203.0.113.7", "alice", plain)
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := c.Dial("tcp", dest(port))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fwd.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(fwd, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("echo through the forward: %q, %v", buf, err)
	}
	fwd.Close()
	c.Close()
	if !waitFor(10*time.Second, func() bool {
		evs, _, err := e.store.ListAuditEvents(e.ctx, keystore.AuditFilter{TargetType: "bastion_target"}, keystore.Page{PerPage: 100})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if ev.Action == "bastion_forward" {
				if ev.RemoteIP != "203.0.113.7" {
					t.Fatalf("bastion_forward audit event from %q, want the PROXY header's 203.0.113.7", ev.RemoteIP)
				}
				return true
			}
		}
		return false
	}) {
		t.Fatal("no bastion_forward audit event")
	}
}

// TestProxyProtocolRequire: a trusted source must send a header.
func TestProxyProtocolRequire(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, func(c *sshd.Config) {
		c.ProxyProtocol = sshd.ProxyRequire
		c.ProxyTrusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	uid, _ := e.createUser(t, "alice")
	key, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, uid, pub, "", "")
	auth := gossh.PublicKeys(loadSigner(t, key))
	if out, err := proxyDial(e, "127.0.0.1", 0, "", "git", auth); err == nil {
		t.Fatalf("require mode, trusted source without a header: logged in: %q", out)
	}
	for _, v := range []byte{1, 2} {
		if out, err := proxyDial(e, "127.0.0.1", v, "192.0.2.50", "git", auth); err != nil || !strings.Contains(out, "Welcome to keygate, @alice!") {
			t.Fatalf("require mode, v%d header: %q, %v", v, out, err)
		}
	}
}

// TestStalledGitClientIsCutOff: a client that starts a large fetch and
// stops reading (while its SSH transport still answers keepalives) has its
// connection closed after the idle timeout, and git is reaped.
func TestStalledGitClientIsCutOff(t *testing.T) {
	t.Parallel()
	const idle = 2 * time.Second
	e := newEnvWith(t, func(c *sshd.Config) { c.IdleTimeout = idle })
	uid, tok := e.createUser(t, "alice")
	key, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, uid, pub, "", "")
	g := e.createGroup(t, "big", tok)
	e.createProject(t, g, "repo")
	// 24 MB of incompressible data: far more than an SSH channel window.
	work := filepath.Join(t.TempDir(), "work")
	e.mustGit(t, "", nil, "init", "--quiet", "--initial-branch=main", work)
	blob := make([]byte, 24<<20)
	_, _ = rand.Read(blob)
	if err := os.WriteFile(filepath.Join(work, "blob"), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	e.mustGit(t, work, nil, "add", "blob")
	e.mustGit(t, work, nil, "commit", "--quiet", "-m", "big")
	e.mustGit(t, work, nil, "push", "--quiet", e.repoPath("big/repo"), "HEAD:refs/heads/main")

	c, err := dialXCrypto(e, "git", gossh.PublicKeys(loadSigner(t, key)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdin, _ := sess.StdinPipe()
	stdout, _ := sess.StdoutPipe()
	if err := sess.Start("git-upload-pack 'big/repo.git'"); err != nil {
		t.Fatal(err)
	}
	// Read the ref advertisement, ask for the tip, then stop reading.
	br := bufio.NewReader(stdout)
	var tip string
	for {
		var n int
		hdr := make([]byte, 4)
		if _, err := io.ReadFull(br, hdr); err != nil {
			t.Fatalf("advertisement: %v", err)
		}
		if _, err := fmt.Sscanf(string(hdr), "%04x", &n); err != nil {
			t.Fatalf("pkt-line header %q: %v", hdr, err)
		}
		if n == 0 {
			break
		}
		line := make([]byte, n-4)
		if _, err := io.ReadFull(br, line); err != nil {
			t.Fatal(err)
		}
		if tip == "" {
			tip = string(line[:40])
		}
	}
	fmt.Fprintf(stdin, "%04xwant %s\n00000009done\n", 4+5+40+1, tip)
	started := time.Now()
	if !waitFor(10*time.Second, func() bool { return gitProcesses(e.repoPath("big/repo")) > 0 }) {
		t.Fatal("git upload-pack never ran")
	}
	waited := make(chan error, 1)
	go func() { waited <- c.Wait() }()
	select {
	case <-waited:
		t.Logf("connection closed %v after the client stopped reading (idle timeout %v)", time.Since(started).Round(time.Millisecond), idle)
	case <-time.After(idle + 20*time.Second):
		t.Fatal("the stalled client's connection is still open")
	}
	if !waitFor(10*time.Second, func() bool { return gitProcesses(e.repoPath("big/repo")) == 0 }) {
		t.Fatal("git processes of the stalled fetch are still running")
	}
	if !strings.Contains(e.logs.String(), "moved no data for the idle timeout") {
		t.Fatal("the stall is not logged")
	}
}

// gitProcesses counts live git processes whose command line names repo or
// that run in it (pack-objects) (zombies have an empty command line and do not count).
func gitProcesses(repo string) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		cwd, _ := os.Readlink(filepath.Join("/proc", ent.Name(), "cwd"))
		if strings.Contains(string(b), "git") && (strings.Contains(string(b), repo) || cwd == repo) {
			n++
		}
	}
	return n
}

// TestSlowlorisRealSSH: while 200 unauthenticated connections trickle a
// byte every 100 ms, the real ssh client logs in, and every slow
// connection is closed by the login grace time (plus slack). The
// revalidation tick is an hour: only the connection deadline cuts them off.
func TestSlowlorisRealSSH(t *testing.T) {
	t.Parallel()
	const grace = 3 * time.Second
	const n = 200
	e := newEnvWith(t, func(c *sshd.Config) {
		c.LoginGraceTime = grace
		c.RevalidateInterval = time.Hour
		c.MaxStartups = sshd.MaxStartups{Start: 400, Rate: 100, Full: 400}
		c.PerSourceMaxStartups = -1
		c.PerSourceMaxAuthFailures = -1
	})
	uid, _ := e.createUser(t, "alice")
	key, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, uid, pub, "", "")

	held := make(chan time.Duration, n)
	stop := make(chan struct{})
	defer close(stop)
	for range n {
		c, err := net.Dial("tcp", e.sshAddr)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		go func() {
			defer c.Close()
			closed := make(chan struct{})
			go func() {
				_, _ = io.Copy(io.Discard, c)
				close(closed)
			}()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-closed:
					held <- time.Since(start)
					return
				case <-stop:
					return
				case <-tick.C:
					_, _ = c.Write([]byte("S"))
				}
			}
		}()
	}
	stdout, stderr, code := e.ssh(t, []string{key}, "git")
	if code != 0 || !strings.Contains(stdout, "Welcome to keygate, @alice!") {
		t.Fatalf("real ssh while %d slow connections are open: exit %d, %q, %s", n, code, stdout, stderr)
	}
	var worst time.Duration
	for range n {
		select {
		case d := <-held:
			worst = max(worst, d)
		case <-time.After(grace + 20*time.Second):
			t.Fatal("slow connections still open long after the login grace time")
		}
	}
	t.Logf("longest-held slow connection: %v (grace %v)", worst, grace)
	if worst > grace+2*time.Second {
		t.Fatalf("a slow connection was held %v, past the grace time %v", worst, grace)
	}
}
