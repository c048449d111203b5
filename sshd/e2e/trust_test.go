package e2e

// Trust boundaries, tried as an attacker with an ordinary user's token:
// none of these may widen what an admin granted.

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/sshd"
)

// ssW runs `ssh -W dest alice@keygate` with key and stdin, and returns
// stdout, stderr and the exit status.
func (e *env) sshW(t *testing.T, key, dest, stdin string) (string, string, int) {
	t.Helper()
	args := append(e.sshBaseArgs([]string{key}), "-W", dest, "alice@127.0.0.1")
	return e.run(t, "", nil, strings.NewReader(stdin), "ssh", args...)
}

// nonLoopbackIPv4 returns an IPv4 address of this host's interfaces that is
// not loopback, or "" if there is none.
func nonLoopbackIPv4() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}

// TestBastionIsNotAnOpenProxy: an ordinary user who creates a top-level
// group (and so owns it) cannot point the bastion anywhere: not at
// keygate's own HTTP port (the reproduced /metrics read), not with "*:*".
// Even an admin's wildcard target never reaches loopback, link-local
// (cloud metadata) or a name that resolves to loopback; only an admin's
// target naming the exact address does. Inside an admin's allowance the
// owner may add targets, and those work, except towards restricted
// addresses.
func TestBastionIsNotAnOpenProxy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	aliceID, aliceTok := e.createUser(t, "alice")
	key, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, aliceID, pub, "", "")
	mine := e.createGroup(t, "alices", aliceTok) // alice owns it
	httpAddr := strings.TrimPrefix(e.http.URL, "http://")
	_, httpPort, _ := net.SplitHostPort(httpAddr)

	// The reproduction: her own target at keygate's HTTP port.
	for _, pattern := range []string{"127.0.0.1:" + httpPort, "*:*", "*:" + httpPort, "localhost:" + httpPort} {
		code, body := e.api(t, http.MethodPost, "/groups/"+itoa(mine)+"/bastion_targets", aliceTok, url.Values{"pattern": {pattern}})
		if code != http.StatusForbidden || !strings.Contains(string(body), "outside what admins allowed") {
			t.Fatalf("owner target %s: %d %s, want 403 naming the policy", pattern, code, body)
		}
	}
	var ts []map[string]any
	e.mustAPI(t, http.MethodGet, "/groups/"+itoa(mine)+"/bastion_targets", aliceTok, nil, http.StatusOK, &ts)
	if len(ts) != 0 {
		t.Fatalf("refused targets were stored: %v", ts)
	}
	if out, stderr, code := e.sshW(t, key, httpAddr, "GET /metrics HTTP/1.0\r\n\r\n"); code == 0 || strings.Contains(out, "keygate_") {
		t.Fatalf("ssh -W %s: exit %d, read %q (%s)", httpAddr, code, out, stderr)
	} else if strings.Count(stderr, "administratively prohibited") != 1 || !strings.Contains(stderr, "no bastion target allows "+httpAddr) {
		t.Fatalf("ssh -W %s: the refusal should say once why: %q", httpAddr, stderr)
	}

	// An admin's wildcard opens the network behind the bastion, never the
	// bastion host itself or its metadata service.
	e.addTarget(t, mine, "*:*", 0)
	for _, dest := range []string{httpAddr, "localhost:" + httpPort, "169.254.169.254:80", "[::1]:" + httpPort, "0.0.0.0:" + httpPort} {
		out, stderr, code := e.sshW(t, key, dest, "GET /metrics HTTP/1.0\r\n\r\n")
		if code == 0 || strings.Contains(out, "keygate_") {
			t.Fatalf("ssh -W %s with an admin's *:*: exit %d, read %q", dest, code, out)
		}
		if !strings.Contains(stderr, "administratively prohibited") {
			t.Errorf("ssh -W %s: refusal does not say why: %s", dest, stderr)
		}
	}
	// The admin naming the exact address opens it (here an echo server).
	port := echoServer(t)
	e.addTarget(t, mine, dest(port), 0)
	if out, stderr, code := e.sshW(t, key, dest(port), "hello\n"); code != 0 || out != "hello\n" {
		t.Fatalf("admin's exact target: %q, exit %d: %s", out, code, stderr)
	}
	// An owner's target inside an admin's allowance: a localhost name could
	// never forward, so it is refused at creation, and the name still
	// never reaches loopback.
	e.mustAPI(t, http.MethodPost, "/groups/"+itoa(mine)+"/bastion_allowances", e.adminToken,
		url.Values{"pattern": {"localhost:*"}}, http.StatusCreated, nil)
	if code, body := e.api(t, http.MethodPost, "/groups/"+itoa(mine)+"/bastion_targets", aliceTok,
		url.Values{"pattern": {"localhost:" + strconv.Itoa(port)}}); code != http.StatusForbidden || !strings.Contains(string(body), "could never forward") {
		t.Fatalf("owner target localhost:%d: %d %s, want 403 saying it could never forward", port, code, body)
	}
	if out, stderr, code := e.sshW(t, key, "localhost:"+strconv.Itoa(port), "hello\n"); code == 0 || !strings.Contains(stderr, "restricted address") {
		t.Fatalf("owner target resolving to loopback: %q, exit %d: %s", out, code, stderr)
	}
	// The bastion host's own addresses on every interface are restricted
	// like loopback: an owner's target inside a CIDR allowance that
	// contains the host's LAN address does not reach its listeners (its
	// sshd, its database); an admin's target naming the address does.
	ip := nonLoopbackIPv4()
	if ip == "" {
		t.Fatal("no non-loopback IPv4 address on this host")
	}
	target := lanEcho(t, ip)
	e.mustAPI(t, http.MethodPost, "/groups/"+itoa(mine)+"/bastion_allowances", e.adminToken,
		url.Values{"pattern": {ip + "/32:*"}}, http.StatusCreated, nil)
	e.mustAPI(t, http.MethodPost, "/groups/"+itoa(mine)+"/bastion_targets", aliceTok,
		url.Values{"pattern": {target}}, http.StatusCreated, nil)
	if out, stderr, code := e.sshW(t, key, target, "ping"); code == 0 || !strings.Contains(stderr, "restricted address "+ip) && !strings.Contains(stderr, "resolves to a restricted address") {
		t.Fatalf("owner target at the host's own LAN address (%s): %q, exit %d: %s", target, out, code, stderr)
	}
	e.addTarget(t, mine, target, 0)
	if out, stderr, code := e.sshW(t, key, target, "ping"); code != 0 || out != "ping" {
		t.Fatalf("admin's exact target at the host's LAN address (%s): %q, exit %d: %s", target, out, code, stderr)
	}
}

// lanEcho runs an echo server on ip and returns its address.
func lanEcho(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
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
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// TestOwnerTargetInsideAllowanceForwards: an owner's target inside an
// admin's CIDR allowance forwards to a host behind the bastion. The test
// has no second host, so the server is told its only addresses are
// loopback: the LAN address then stands for a machine behind it.
func TestOwnerTargetInsideAllowanceForwards(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, func(c *sshd.Config) {
		c.HostAddrs = func() ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}, nil
		}
	})
	aliceID, aliceTok := e.createUser(t, "alice")
	key, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, aliceID, pub, "", "")
	mine := e.createGroup(t, "alices", aliceTok)
	ip := nonLoopbackIPv4()
	if ip == "" {
		t.Fatal("no non-loopback IPv4 address on this host")
	}
	target := lanEcho(t, ip)
	e.mustAPI(t, http.MethodPost, "/groups/"+itoa(mine)+"/bastion_allowances", e.adminToken,
		url.Values{"pattern": {ip + "/32:*"}}, http.StatusCreated, nil)
	e.mustAPI(t, http.MethodPost, "/groups/"+itoa(mine)+"/bastion_targets", aliceTok,
		url.Values{"pattern": {target}}, http.StatusCreated, nil)
	if out, stderr, code := e.sshW(t, key, target, "ping"); code != 0 || out != "ping" {
		t.Fatalf("owner target inside an allowance (%s): %q, exit %d: %s", target, out, code, stderr)
	}
}

// TestCAVouchesOnlyForEnterpriseUsers: an owner adds alice to their group
// without her consent, registers a CA and signs a certificate naming her.
// It does not log in as alice (a banner says why), until an admin makes
// alice an enterprise user of that group. Certificate logins and git
// operations are then audit events naming the CA and certificate.
func TestCAVouchesOnlyForEnterpriseUsers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, malTok := e.createUser(t, "mallory")
	aliceID, _ := e.createUser(t, "alice")
	grp := e.createGroup(t, "mal", malTok)
	e.mustAPI(t, http.MethodPost, "/groups/"+itoa(grp)+"/members", malTok,
		url.Values{"user_id": {itoa(aliceID)}, "access_level": {"30"}}, http.StatusCreated, nil)
	e.createProject(t, grp, "repo")
	e.seedRepo(t, "mal/repo")
	caKey, caPub := e.sshKeygen(t, "ed25519", 0)
	var ca idJSON
	e.mustAPI(t, http.MethodPost, "/groups/"+itoa(grp)+"/ssh_certificates", malTok,
		url.Values{"title": {"mallory's CA"}, "key": {caPub}}, http.StatusCreated, &ca)
	w := &certWorld{e: e}
	key, cert := w.certIssue(t, caKey, "-I", "alice", "-n", "git,alice", "-V", "-5m:+1h", "-z", "99")

	stderr := w.certRequireRefused(t, key, cert, "alice")
	if !strings.Contains(stderr, `may not vouch for "alice"`) || !strings.Contains(stderr, "enterprise user") {
		t.Fatalf("refusal banner = %q", stderr)
	}
	w.certRequireRefused(t, key, cert, "git")
	// Only admins set enterprise_group_id.
	code, _ := e.api(t, http.MethodPut, "/users/"+itoa(aliceID), malTok, url.Values{"enterprise_group_id": {itoa(grp)}})
	if code != http.StatusForbidden {
		t.Fatalf("an owner set enterprise_group_id: %d", code)
	}
	var u map[string]any
	e.mustAPI(t, http.MethodPut, "/users/"+itoa(aliceID), e.adminToken, url.Values{"enterprise_group_id": {itoa(grp)}}, http.StatusOK, &u)
	if u["enterprise_group_id"] != float64(grp) {
		t.Fatalf("user after PUT = %v", u)
	}
	w.certRequireGreeting(t, key, cert, "alice")
	dir := t.TempDir()
	if _, stderr, code := w.certGit(t, dir, key, cert, "clone", "--quiet", e.cloneURL("mal/repo"), "c"); code != 0 {
		t.Fatalf("certificate clone: %s", stderr)
	}

	caFP := fingerprintOf(t, caPub)
	for _, action := range []string{"ssh_certificate_login", "git_pull"} {
		var d map[string]any
		if !waitFor(5*time.Second, func() bool {
			evs, _, err := e.store.ListAuditEvents(e.ctx, keystore.AuditFilter{}, keystore.Page{PerPage: 100})
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				if ev.Action == action && ev.ActorID != nil && *ev.ActorID == aliceID {
					_ = json.Unmarshal([]byte(ev.Details), &d)
					return true
				}
			}
			return false
		}) {
			t.Fatalf("no %s audit event", action)
		}
		if d["ca_id"] != float64(ca.ID) || d["ca_group_id"] != float64(grp) || d["ca_fingerprint"] != caFP ||
			d["cert_key_id"] != "alice" || d["cert_serial"] != "99" {
			t.Fatalf("%s audit event does not name the CA and certificate: %v", action, d)
		}
	}
}

// TestRevocationsMatchWhatTheySay: serial "07" revokes serial 7, 0x hex
// is accepted, a malformed fingerprint is refused (400) and a padded one
// matches; key_id=bob revokes certificates with key id "Bob" and
// "bob@example.com" that log in as bob. Deleting the CA and registering
// the same key again in the same group keeps every revocation listed and
// in force; another group registering the key sees none of them, and they
// refuse none of its logins.
func TestRevocationsMatchWhatTheySay(t *testing.T) {
	t.Parallel()
	w := certSetup(t)
	e := w.e
	bobID, _ := e.createUser(t, "bob")
	e.addMember(t, w.eng, bobID, 30)
	e.mustAPI(t, http.MethodPut, "/users/"+itoa(bobID), e.adminToken, url.Values{"enterprise_group_id": {itoa(w.eng)}}, http.StatusOK, nil)
	revs := "/groups/" + itoa(w.eng) + "/ssh_certificates/" + itoa(w.caID) + "/revocations"

	for _, bad := range []url.Values{
		{"fingerprint": {"SHA256:garbage"}}, {"fingerprint": {"SHA256:"}}, {"serial": {"7x"}}, {"serial": {"-7"}},
		{"serial": {"18446744073709551616"}},
	} {
		if code, body := e.api(t, http.MethodPost, revs, w.ownerTok, bad); code != http.StatusBadRequest {
			t.Fatalf("revocation %v: %d %s, want 400", bad, code, body)
		}
	}
	k7, c7 := w.certIssue(t, w.caKey, "-I", "alice", "-n", "git,alice", "-V", "-5m:+1h", "-z", "7")
	k255, c255 := w.certIssue(t, w.caKey, "-I", "alice", "-n", "git,alice", "-V", "-5m:+1h", "-z", "255")
	kfp, cfp := w.certIssue(t, w.caKey, "-I", "alice", "-n", "git,alice", "-V", "-5m:+1h", "-z", "1")
	kBob, cBob := w.certIssue(t, w.caKey, "-I", "Bob", "-n", "git,bob", "-V", "-5m:+1h", "-z", "2")
	kMail, cMail := w.certIssue(t, w.caKey, "-I", "bob@example.com", "-n", "git,bob", "-V", "-5m:+1h", "-z", "3")
	for _, c := range [][2]string{{k7, c7}, {k255, c255}, {kfp, cfp}} {
		w.certRequireGreeting(t, c[0], c[1], "git")
	}
	for _, c := range [][2]string{{kBob, cBob}, {kMail, cMail}} {
		if stdout, stderr, code := w.certSSH(t, c[0], c[1], "git"); code != 0 || stdout != "Welcome to keygate, @bob!\n" {
			t.Fatalf("bob's certificate before revocation: %q %d %s", stdout, code, stderr)
		}
	}

	w.certRevoke(t, "serial", "07")
	w.certRevoke(t, "serial", "0xff")
	certFP := fingerprintOf(t, readFile(t, kfp+".pub"))
	w.certRevoke(t, "fingerprint", certFP+"=")
	w.certRevoke(t, "key_id", "bob")
	for _, c := range [][2]string{{k7, c7}, {k255, c255}, {kfp, cfp}, {kBob, cBob}, {kMail, cMail}} {
		if stderr := w.certRequireRefused(t, c[0], c[1], "git"); !strings.Contains(stderr, "revoked") {
			t.Fatalf("revoked certificate %s: %s", c[1], stderr)
		}
	}
	var listed []map[string]any
	e.mustAPI(t, http.MethodGet, revs, w.ownerTok, nil, http.StatusOK, &listed)
	values := map[string]bool{}
	for _, r := range listed {
		values[r["type"].(string)+"="+r["value"].(string)] = true
	}
	for _, want := range []string{"serial=7", "serial=255", "fingerprint=" + certFP, "key_id=bob"} {
		if !values[want] {
			t.Fatalf("revocation %s not listed canonically: %v", want, values)
		}
	}

	// The CA row goes; the same key comes back in the same group: the
	// revocations still hold, and only eng's owner can lift them.
	w.certDeleteCA(t)
	caPub := readFile(t, w.caKey+".pub")
	again := w.certAddCA(t, w.eng, caPub)
	var relisted []map[string]any
	e.mustAPI(t, http.MethodGet, "/groups/"+itoa(w.eng)+"/ssh_certificates/"+itoa(again)+"/revocations", w.ownerTok, nil, http.StatusOK, &relisted)
	if len(relisted) != len(listed) {
		t.Fatalf("the re-added key lists %d revocations, want %d", len(relisted), len(listed))
	}
	if stderr := w.certRequireRefused(t, k7, c7, "git"); !strings.Contains(stderr, "revoked") {
		t.Fatalf("serial 7 under the re-added key: %s", stderr)
	}

	// ops registers the same key: eng's revocations are not ops's. They
	// are not listed there, cannot be lifted from there, and do not
	// refuse ops's logins (alice, now an enterprise user of ops).
	var inOps idJSON
	_, opsTok := e.createUser(t, "ops-owner")
	opsOwned := e.createGroup(t, "ops2", opsTok)
	e.addMember(t, opsOwned, w.aliceID, 30)
	e.mustAPI(t, http.MethodPost, "/groups/"+itoa(opsOwned)+"/ssh_certificates", opsTok,
		url.Values{"title": {"same key"}, "key": {caPub}}, http.StatusCreated, &inOps)
	var opsList []map[string]any
	e.mustAPI(t, http.MethodGet, "/groups/"+itoa(opsOwned)+"/ssh_certificates/"+itoa(inOps.ID)+"/revocations", opsTok, nil, http.StatusOK, &opsList)
	if len(opsList) != 0 {
		t.Fatalf("another group registering the key reads %d of eng's revocations: %v", len(opsList), opsList)
	}
	code, body := e.api(t, http.MethodDelete, "/groups/"+itoa(opsOwned)+"/ssh_certificates/"+itoa(inOps.ID)+"/revocations/"+
		strconv.FormatInt(int64(relisted[0]["id"].(float64)), 10), opsTok, nil)
	if code != http.StatusNotFound {
		t.Fatalf("another group lifted a revocation: %d %s", code, body)
	}
	e.mustAPI(t, http.MethodPut, "/users/"+itoa(w.aliceID), e.adminToken, url.Values{"enterprise_group_id": {itoa(opsOwned)}}, http.StatusOK, nil)
	w.certRequireGreeting(t, k7, c7, "git")
	// Back in eng, they hold again.
	e.mustAPI(t, http.MethodPut, "/users/"+itoa(w.aliceID), e.adminToken, url.Values{"enterprise_group_id": {itoa(w.eng)}}, http.StatusOK, nil)
	if stderr := w.certRequireRefused(t, k7, c7, "git"); !strings.Contains(stderr, "revoked") {
		t.Fatalf("serial 7 in eng after ops's login: %s", stderr)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestUpdateHostKeys: after authentication keygate announces all its host
// keys (hostkeys-00@openssh.com) and proves them on request, so the real
// ssh with UpdateHostKeys=yes, whose known_hosts held only the ed25519
// key (so it negotiates ed25519), learns the ECDSA and RSA keys too (for clients like go-git that
// trust one known_hosts line and may negotiate another type).
func TestUpdateHostKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, _ := e.createUser(t, "alice")
	key, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, id, pub, "", "")
	var ed string
	for _, k := range hostKeys {
		if k.PublicKey().Type() == "ssh-ed25519" {
			ed = strings.TrimSpace(string(gossh.MarshalAuthorizedKey(k.PublicKey())))
		}
	}
	kh := e.dir + "/known_hosts"
	host := "[127.0.0.1]:" + strconv.Itoa(e.sshPort)
	if err := os.WriteFile(kh, []byte(host+" "+ed+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-F", "/dev/null", "-p", strconv.Itoa(e.sshPort), "-i", key, "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + kh,
		"-o", "UpdateHostKeys=yes", "-o", "LogLevel=DEBUG1", "git@127.0.0.1"}
	// ssh learns the keys only once keygate's hostkeys-prove reply arrives;
	// a session as short as the welcome banner can end first (OpenSSH's
	// client does not wait for it), so a few connections are allowed.
	var got, stderr string
	for attempt := 1; ; attempt++ {
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
	// The learned keys are real: connecting with only ECDSA, then only RSA
	// (rsa-sha2-512) allowed succeeds under StrictHostKeyChecking.
	for _, alg := range []string{"ecdsa-sha2-nistp256", "rsa-sha2-512"} {
		// UpdateHostKeys off: with one algorithm allowed, OpenSSH would
		// drop the other types from known_hosts as no longer offered.
		a := append([]string{"-o", "HostKeyAlgorithms=" + alg, "-o", "UpdateHostKeys=no"}, args...)
		if _, stderr, code := e.run(t, "", nil, nil, "ssh", a...); code != 0 {
			t.Fatalf("ssh with only %s after the update: exit %d\n%s", alg, code, stderr)
		}
	}
}

// TestNoSHA1HostKeySignatures: like OpenSSH ≥ 8.8, keygate's RSA host key
// signs only with SHA-2; a client that accepts nothing but ssh-rsa fails.
func TestNoSHA1HostKeySignatures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, c := range []struct {
		alg string
		ok  bool
	}{{gossh.KeyAlgoRSA, false}, {gossh.KeyAlgoRSASHA256, true}, {gossh.KeyAlgoRSASHA512, true}} {
		cfg := &gossh.ClientConfig{User: "git", HostKeyCallback: gossh.InsecureIgnoreHostKey(),
			HostKeyAlgorithms: []string{c.alg}, Timeout: 10 * time.Second}
		conn, err := net.DialTimeout("tcp", e.sshAddr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, _, _, err = gossh.NewClientConn(conn, e.sshAddr, cfg)
		conn.Close()
		// Without credentials the handshake ends in an auth error once the
		// host key was accepted; a refused host key algorithm fails kex.
		kexOK := err == nil || strings.Contains(err.Error(), "unable to authenticate")
		if kexOK != c.ok {
			t.Errorf("host key algorithm %s: %v, want accepted=%v", c.alg, err, c.ok)
		}
	}
}

// TestRefusalsLoggedAtInfo: an admin sees at INFO why a client could not
// log in: the real ssh signing only with ssh-rsa (SHA-1, like libssh2 <=
// 1.10 or JSch) is told nothing useful by the protocol, but the server log
// says what to change; an unknown key is logged too. A certificate whose
// principals do not include the login gets a banner naming them.
func TestRefusalsLoggedAtInfo(t *testing.T) {
	t.Parallel()
	w := certSetup(t)
	e := w.e
	rsaKey, rsaPub := e.sshKeygen(t, "rsa", 3072)
	e.addKey(t, w.aliceID, rsaPub, "", "")
	if stdout, stderr, code := e.ssh(t, []string{rsaKey}, "git"); code != 0 || stdout != certGreeting {
		t.Fatalf("RSA key with SHA-2 signatures: exit %d %q %s", code, stdout, stderr)
	}
	if _, _, code := e.ssh(t, []string{rsaKey}, "git", "-o", "PubkeyAcceptedAlgorithms=ssh-rsa"); code != 255 {
		t.Fatalf("ssh-rsa (SHA-1) only: exit %d, want 255", code)
	}
	stranger, _ := e.sshKeygen(t, "ed25519", 0)
	if _, _, code := e.ssh(t, []string{stranger}, "git"); code != 255 {
		t.Fatalf("unknown key: exit %d", code)
	}
	if !waitFor(5*time.Second, func() bool {
		return len(w.certLogLines("level=INFO", `msg="ssh login failed"`, `client="SSH-2.0-OpenSSH`, "ssh-rsa (SHA-1)")) > 0 &&
			len(w.certLogLines("level=INFO", `msg="ssh login failed"`, "unknown key")) > 0
	}) {
		t.Fatalf("no INFO log of the SHA-1 and unknown-key refusals:\n%s", strings.Join(w.certLogLines("ssh login failed"), "\n"))
	}

	key, cert := w.certIssue(t, w.caKey, "-I", "alice", "-n", "deploy,ci", "-V", "-5m:+1h")
	stderr := w.certRequireRefused(t, key, cert, "git")
	if !strings.Contains(stderr, `your certificate is for "deploy,ci", not for login "git"`) || !strings.Contains(stderr, "log in as deploy@") {
		t.Fatalf("principals banner = %q", stderr)
	}
}

// TestCertPrincipalsPolicy: a certificate without principals (ssh-keygen
// without -n) logs in, as in GitLab, although x/crypto v0.59's CheckCert
// would refuse it; with CertRequirePrincipals it is refused with a banner.
func TestCertPrincipalsPolicy(t *testing.T) {
	t.Parallel()
	w := certSetup(t)
	key, cert := w.certIssue(t, w.caKey, "-I", "alice", "-V", "-5m:+1h")
	if show := w.certShow(t, cert); !strings.Contains(show, "Principals: (none)") {
		t.Fatalf("ssh-keygen made a certificate with principals:\n%s", show)
	}
	w.certRequireGreeting(t, key, cert, "git")

	strict := certSetupWith(t, func(c *sshd.Config) { c.CertRequirePrincipals = true })
	key, cert = strict.certIssue(t, strict.caKey, "-I", "alice", "-V", "-5m:+1h")
	if stderr := strict.certRequireRefused(t, key, cert, "git"); !strings.Contains(stderr, "lists no principals") {
		t.Fatalf("banner = %q", stderr)
	}
	key, cert = strict.certIssue(t, strict.caKey, certStdArgs...)
	strict.certRequireGreeting(t, key, cert, "git")
}
