package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
)

// echoServer listens on 127.0.0.1 and echoes every connection, half-closing
// its side after the client's end of file. It returns the port.
func echoServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// addTarget adds a bastion target to a group as an admin over REST (where
// the bastion reaches is admin policy; the owner's path is in
// trust_test.go).
func (e *env) addTarget(t *testing.T, groupID int64, pattern string, minLevel int) int64 {
	t.Helper()
	form := url.Values{"pattern": {pattern}, "description": {"e2e"}}
	if minLevel != 0 {
		form.Set("min_access_level", strconv.Itoa(minLevel))
	}
	var b idJSON
	e.mustAPI(t, http.MethodPost, "/groups/"+itoa(groupID)+"/bastion_targets", e.adminToken, form, http.StatusCreated, &b)
	return b.ID
}

// forwardEvents returns the bastion_forward audit events, newest first.
func (e *env) forwardEvents(t *testing.T, action string) []map[string]any {
	t.Helper()
	evs, _, err := e.store.ListAuditEvents(e.ctx, keystore.AuditFilter{TargetType: "bastion_target"}, keystore.Page{PerPage: 100})
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, ev := range evs {
		if ev.Action != action {
			continue
		}
		var d map[string]any
		if err := json.Unmarshal([]byte(ev.Details), &d); err != nil {
			t.Fatal(err)
		}
		d["actor_id"] = ev.ActorID
		out = append(out, d)
	}
	return out
}

func dest(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

func TestBastionForwardTransfersIntact(t *testing.T) {
	t.Parallel()
	w := certSetup(t)
	e := w.e
	port := echoServer(t)
	e.addTarget(t, w.eng, dest(port), 0)

	data := make([]byte, 5<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	args := append(e.sshBaseArgs([]string{w.aliceKey}), "-W", dest(port), "alice@127.0.0.1")
	stdout, stderr, code := e.run(t, "", nil, bytes.NewReader(data), "ssh", args...)
	if code != 0 {
		t.Fatalf("ssh -W: exit %d: %s", code, stderr)
	}
	if len(stdout) != len(data) || sha256.Sum256([]byte(stdout)) != sha256.Sum256(data) {
		t.Fatalf("echo: got %d bytes, want %d intact", len(stdout), len(data))
	}
	var ev map[string]any
	if !waitFor(5*time.Second, func() bool {
		evs := e.forwardEvents(t, "bastion_forward")
		if len(evs) == 1 {
			ev = evs[0]
		}
		return ev != nil
	}) {
		t.Fatal("no bastion_forward audit event")
	}
	n := float64(len(data))
	if ev["bytes_in"] != n || ev["bytes_out"] != n || ev["destination"] != dest(port) || ev["key_fingerprint"] == "" ||
		ev["login"] != "alice" || *(ev["actor_id"].(*int64)) != w.aliceID {
		t.Fatalf("audit event = %v", ev)
	}
	if _, ok := ev["duration_ms"]; !ok {
		t.Fatalf("audit event without duration: %v", ev)
	}

	// A certificate with permit-port-forwarding (ssh-keygen's default) works too.
	key, cert := w.certIssue(t, w.caKey, "-I", "alice", "-n", "alice", "-V", "-5m:+1h", "-z", "7")
	stdout, stderr, code = e.run(t, "", nil, strings.NewReader("hello\n"), "ssh",
		append(e.sshBaseArgs([]string{key}), "-o", "CertificateFile="+cert, "-W", dest(port), "alice@127.0.0.1")...)
	if code != 0 || stdout != "hello\n" {
		t.Fatalf("certificate ssh -W = %q, exit %d: %s", stdout, code, stderr)
	}
	if !waitFor(5*time.Second, func() bool {
		for _, ev := range e.forwardEvents(t, "bastion_forward") {
			if ev["cert_key_id"] == "alice" && ev["cert_serial"] == "7" && ev["bytes_in"] == float64(6) {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no certificate forward event: %v", e.forwardEvents(t, "bastion_forward"))
	}
}

func TestBastionForwardRefused(t *testing.T) {
	t.Parallel()
	w := certSetup(t)
	e := w.e
	engPort, opsPort, nonePort := echoServer(t), echoServer(t), echoServer(t)
	e.addTarget(t, w.eng, dest(engPort), 0)
	e.addTarget(t, w.ops, dest(opsPort), 0)
	e.addTarget(t, w.eng, "db.eng.internal:5432", 40) // maintainers only
	sec := e.createGroup(t, "sec", w.ownerTok)        // alice is not a member
	e.addTarget(t, sec, "vault.sec.internal:8200", 0)
	wild := echoServer(t)
	e.addTarget(t, w.eng, "*:"+strconv.Itoa(wild), 0) // loopback is not named literally

	noFwd, noFwdCert := w.certIssue(t, w.caKey, "-I", "alice", "-n", "alice", "-V", "-5m:+1h", "-O", "no-port-forwarding")
	engKey, engCert := w.certIssue(t, w.caKey, "-I", "alice", "-n", "alice", "-V", "-5m:+1h")

	forward := func(keys []string, cert, login, to string) (string, int) {
		args := e.sshBaseArgs(keys)
		if cert != "" {
			args = append(args, "-o", "CertificateFile="+cert)
		}
		args = append(args, "-W", to, login+"@127.0.0.1")
		stdout, stderr, code := e.run(t, "", nil, strings.NewReader("x\n"), "ssh", args...)
		if code == 0 && stdout == "x\n" {
			return "", 0
		}
		return stderr, code
	}
	// Sanity: the allowed ones work.
	if stderr, code := forward([]string{w.aliceKey}, "", "alice", dest(engPort)); code != 0 {
		t.Fatalf("plain key to eng target: exit %d: %s", code, stderr)
	}
	if stderr, code := forward([]string{w.aliceKey}, "", "alice", dest(opsPort)); code != 0 {
		t.Fatalf("plain key to ops target: exit %d: %s", code, stderr)
	}
	if stderr, code := forward([]string{engKey}, engCert, "alice", dest(engPort)); code != 0 {
		t.Fatalf("eng certificate to eng target: exit %d: %s", code, stderr)
	}

	cases := []struct {
		name        string
		keys        []string
		cert, login string
		to          string
	}{
		{"no matching target", []string{w.aliceKey}, "", "alice", dest(nonePort)},
		{"target of a group alice is not in", []string{w.aliceKey}, "", "alice", "vault.sec.internal:8200"},
		{"level below the target's minimum", []string{w.aliceKey}, "", "alice", "db.eng.internal:5432"},
		{"git login", []string{w.aliceKey}, "", "git", dest(engPort)},
		{"certificate without permit-port-forwarding", []string{noFwd}, noFwdCert, "alice", dest(engPort)},
		{"eng certificate to an ops target", []string{engKey}, engCert, "alice", dest(opsPort)},
		{"wildcard target resolving to loopback", []string{w.aliceKey}, "", "alice", dest(wild)},
		{"port 0", []string{w.aliceKey}, "", "alice", "127.0.0.1:0"},
	}
	for _, c := range cases {
		stderr, code := forward(c.keys, c.cert, c.login, c.to)
		if code == 0 {
			t.Errorf("%s: forwarding to %s succeeded", c.name, c.to)
			continue
		}
		if !strings.Contains(stderr, "administratively prohibited") && c.to != "127.0.0.1:0" {
			t.Errorf("%s: exit %d, stderr %q; want administratively prohibited", c.name, code, stderr)
		}
	}
	if !waitFor(5*time.Second, func() bool { return len(e.forwardEvents(t, "bastion_forward_refused")) >= len(cases)-1 }) {
		t.Errorf("refusal audit events = %d, want >= %d", len(e.forwardEvents(t, "bastion_forward_refused")), len(cases)-1)
	}

	// Remote forwarding (tcpip-forward) is refused.
	args := append(e.sshBaseArgs([]string{w.aliceKey}), "-N", "-o", "ExitOnForwardFailure=yes",
		"-R", "127.0.0.1:0:"+dest(engPort), "alice@127.0.0.1")
	if _, stderr, code := e.run(t, "", nil, nil, "ssh", args...); code == 0 || !strings.Contains(stderr, "forwarding failed") {
		t.Errorf("ssh -R: exit %d, stderr %q", code, stderr)
	}
	// No pty and no shell (just the welcome line), also with agent and X11
	// forwarding asked for: no agent or X11 channel is ever opened.
	if stdout, stderr, code := e.ssh(t, []string{w.aliceKey}, "alice", "-tt"); code == 0 || stdout != "" ||
		!strings.Contains(stderr, "PTY allocation request failed") {
		t.Errorf("forced pty: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for _, opt := range []string{"-A", "-X"} {
		if stdout, stderr, code := e.ssh(t, []string{w.aliceKey}, "alice", opt); code != 0 || stdout != "Welcome to keygate, @alice!\n" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", opt, code, stdout, stderr)
		}
	}
}

func TestBastionForwardClosedWhenAccessRevoked(t *testing.T) {
	t.Parallel()
	w := certSetup(t)
	e := w.e
	port := echoServer(t)
	e.addTarget(t, w.eng, dest(port), 0)
	var keys []struct {
		ID int64 `json:"id"`
	}
	e.mustAPI(t, http.MethodGet, "/users/"+itoa(w.aliceID)+"/keys", e.adminToken, nil, http.StatusOK, &keys)
	if len(keys) != 1 {
		t.Fatalf("keys = %v", keys)
	}

	s := e.startSession(t, []string{w.aliceKey}, "alice", "-W", dest(port))
	if _, err := s.stdin.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if !s.waitOutput("ping\n", 10*time.Second) {
		t.Fatalf("no echo; stderr %s", s.stderr.String())
	}
	e.mustAPI(t, http.MethodDelete, "/users/"+itoa(w.aliceID)+"/keys/"+itoa(keys[0].ID), e.adminToken, nil, http.StatusNoContent, nil)
	if !s.waitExit(5 * time.Second) {
		t.Fatal("forwarded connection still open 5s after the key was deleted")
	}

	// Plain key: removing the member (the key stays valid) or deleting the
	// target closes the forward.
	key2, pub2 := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, w.aliceID, pub2, "", "")
	opsPort := echoServer(t)
	opsTarget := e.addTarget(t, w.ops, dest(opsPort), 0)
	for _, revoke := range []func(){
		func() {
			e.mustAPI(t, http.MethodDelete, "/groups/"+itoa(w.ops)+"/bastion_targets/"+itoa(opsTarget), w.ownerTok, nil, http.StatusNoContent, nil)
		},
		func() {
			e.mustAPI(t, http.MethodDelete, "/groups/"+itoa(w.ops)+"/members/"+itoa(w.aliceID), w.ownerTok, nil, http.StatusNoContent, nil)
		},
	} {
		s = e.startSession(t, []string{key2}, "alice", "-W", dest(opsPort))
		if _, err := s.stdin.Write([]byte("ops\n")); err != nil {
			t.Fatal(err)
		}
		if !s.waitOutput("ops\n", 10*time.Second) {
			t.Fatalf("no echo; stderr %s", s.stderr.String())
		}
		revoke()
		if !s.waitExit(5 * time.Second) {
			t.Fatal("plain-key forward still open 5s after access was revoked")
		}
		opsTarget = e.addTarget(t, w.ops, dest(opsPort), 0)
	}

	// Removing the member closes a certificate login's forward too.
	key, cert := w.certIssue(t, w.caKey, "-I", "alice", "-n", "alice", "-V", "-5m:+1h")
	s = e.startSession(t, []string{key}, "alice", "-o", "CertificateFile="+cert, "-W", dest(port))
	if _, err := s.stdin.Write([]byte("pong\n")); err != nil {
		t.Fatal(err)
	}
	if !s.waitOutput("pong\n", 10*time.Second) {
		t.Fatalf("no echo; stderr %s", s.stderr.String())
	}
	e.mustAPI(t, http.MethodDelete, "/groups/"+itoa(w.eng)+"/members/"+itoa(w.aliceID), w.ownerTok, nil, http.StatusNoContent, nil)
	if !s.waitExit(5 * time.Second) {
		t.Fatal("forwarded connection still open 5s after the member was removed")
	}
}

// TestBastionProxyJumpGitClone clones from a second keygate through the
// first one used as a jump host (ssh -J).
func TestBastionProxyJumpGitClone(t *testing.T) {
	t.Parallel()
	w := certSetup(t)
	jump := w.e
	inner := newEnv(t)
	_, innerOwner := inner.createUser(t, "owner")
	innerAlice, _ := inner.createUser(t, "alice")
	g := inner.createGroup(t, "eng", innerOwner)
	inner.addMember(t, g, innerAlice, 30)
	inner.createProject(t, g, "api")
	head := inner.seedRepo(t, "eng/api")
	pub, err := os.ReadFile(w.aliceKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	inner.addKey(t, innerAlice, strings.TrimSpace(string(pub)), "", "")

	cfg := filepath.Join(t.TempDir(), "ssh_config")
	common := "  IdentityFile " + w.aliceKey + "\n  IdentitiesOnly yes\n  IdentityAgent none\n  StrictHostKeyChecking no\n" +
		"  UserKnownHostsFile /dev/null\n  GlobalKnownHostsFile /dev/null\n  BatchMode yes\n  LogLevel ERROR\n"
	conf := "Host keygate-bastion\n  HostName 127.0.0.1\n  Port " + strconv.Itoa(jump.sshPort) + "\n  User alice\n" + common +
		"Host *\n" + common
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	sshCmd := "ssh -F " + shellQuote(cfg) + " -J keygate-bastion"
	dir := filepath.Join(t.TempDir(), "clone")

	// No target yet: refused.
	if _, stderr, code := jump.run(t, "", []string{"GIT_SSH_COMMAND=" + sshCmd}, nil, "git", "clone", "--quiet", inner.cloneURL("eng/api"), dir); code == 0 {
		t.Fatal("clone through the jump host without a target succeeded")
	} else if !strings.Contains(stderr, "administratively prohibited") && !strings.Contains(stderr, "stdio forwarding failed") {
		t.Errorf("clone without target: %s", stderr)
	}
	jump.addTarget(t, w.eng, dest(inner.sshPort), 0)
	if _, stderr, code := jump.run(t, "", []string{"GIT_SSH_COMMAND=" + sshCmd}, nil, "git", "clone", "--quiet", inner.cloneURL("eng/api"), dir); code != 0 {
		t.Fatalf("clone through the jump host: exit %d: %s", code, stderr)
	}
	if got := strings.TrimSpace(inner.mustGit(t, dir, nil, "rev-parse", "HEAD")); got != head {
		t.Fatalf("cloned HEAD %s, want %s", got, head)
	}

	// The same with a group-CA certificate on the jump host; without
	// permit-port-forwarding it is refused.
	for _, c := range []struct {
		opts []string
		ok   bool
	}{{nil, true}, {[]string{"-O", "no-port-forwarding"}, false}} {
		key, cert := w.certIssue(t, w.caKey, append([]string{"-I", "alice", "-n", "alice", "-V", "-5m:+1h"}, c.opts...)...)
		certConf := "Host keygate-bastion\n  HostName 127.0.0.1\n  Port " + strconv.Itoa(jump.sshPort) + "\n  User alice\n" +
			"  IdentityFile " + key + "\n  CertificateFile " + cert + "\n" + strings.ReplaceAll(common, "  IdentityFile "+w.aliceKey+"\n", "") +
			"Host *\n" + common
		if err := os.WriteFile(cfg, []byte(certConf), 0o600); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "clone")
		_, stderr, code := jump.run(t, "", []string{"GIT_SSH_COMMAND=" + sshCmd}, nil, "git", "clone", "--quiet", inner.cloneURL("eng/api"), dir)
		if (code == 0) != c.ok {
			t.Fatalf("certificate %v: clone through the jump host: exit %d: %s", c.opts, code, stderr)
		}
	}
}

// TestBastionForwardLimitPerConnection opens more forwarded channels than
// one connection may hold (x/crypto client): the extra one is refused as a
// resource shortage, and a slot frees up when a channel closes.
func TestBastionForwardLimitPerConnection(t *testing.T) {
	t.Parallel()
	w := certSetup(t)
	e := w.e
	port := echoServer(t)
	e.addTarget(t, w.eng, dest(port), 0)
	pem, err := os.ReadFile(w.aliceKey)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	client, err := gossh.Dial("tcp", e.sshAddr, &gossh.ClientConfig{
		User: "alice", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var conns []net.Conn
	for i := 0; i < 10; i++ {
		c, err := client.Dial("tcp", dest(port))
		if err != nil {
			t.Fatalf("forward %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	_, err = client.Dial("tcp", dest(port))
	var oce *gossh.OpenChannelError
	if !errors.As(err, &oce) || oce.Reason != gossh.ResourceShortage {
		t.Fatalf("11th forward: %v, want resource shortage", err)
	}
	conns[0].Close()
	if !waitFor(5*time.Second, func() bool {
		c, err := client.Dial("tcp", dest(port))
		if err != nil {
			return false
		}
		conns = append(conns, c)
		return true
	}) {
		t.Fatal("no slot after closing a forward")
	}
	for _, c := range conns {
		c.Close()
	}
	// A refused destination through the Go client: Prohibited.
	_, err = client.Dial("tcp", "10.255.255.1:22")
	if !errors.As(err, &oce) || oce.Reason != gossh.Prohibited {
		t.Fatalf("unknown destination: %v, want prohibited", err)
	}
}

// TestBastionLocalForward runs `ssh -N -L` and moves data both ways at once
// through the local port.
func TestBastionLocalForward(t *testing.T) {
	t.Parallel()
	w := certSetup(t)
	e := w.e
	port := echoServer(t)
	e.addTarget(t, w.eng, dest(port), 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local := l.Addr().String()
	l.Close()
	s := e.startSession(t, []string{w.aliceKey}, "alice", "-N", "-o", "ExitOnForwardFailure=yes", "-L", local+":"+dest(port))
	var c net.Conn
	if !waitFor(10*time.Second, func() bool {
		c, err = net.Dial("tcp", local)
		return err == nil
	}) {
		t.Fatalf("local forward not listening: %v; stderr %s", err, s.stderr.String())
	}
	defer c.Close()
	data := make([]byte, 50<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("echo through -L: %d bytes, want %d intact", len(got), len(data))
	}
}
