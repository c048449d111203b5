package e2e

// Group-CA certificate logins (SPEC §5 "Certificate", §6) with the real
// tools: certificates are signed by the real `ssh-keygen -s` with a CA
// whose public key the group owner registered over REST, presented by the
// real `ssh` (-i key -o CertificateFile=cert, IdentitiesOnly=yes) and used
// by the real git.
//
// The certificate's key is never registered as a plain key, so a greeting
// proves the certificate was accepted and a refusal cannot be rescued by
// the plain-key fallback of the client.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testutil"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/sshd"
)

const certGreeting = "Welcome to keygate, @alice!\n"

// certWorld is the fixture of every certificate test: group owner "owner";
// alice, a developer in groups eng and ops, with a plain key; projects
// eng/api and ops/tools with one commit each; an ed25519 CA registered in
// eng.
type certWorld struct {
	e        *env
	ownerTok string
	aliceID  int64
	aliceKey string // alice's plain key (private key path)
	eng, ops int64
	caKey    string // the eng CA's private key path
	caID     int64
}

func certSetup(t *testing.T) *certWorld {
	t.Helper()
	return certSetupWith(t, nil)
}

// certSetupWith is certSetup on a server configured by tune.
func certSetupWith(t *testing.T, tune func(*sshd.Config)) *certWorld {
	t.Helper()
	e := newEnvWith(t, tune)
	w := &certWorld{e: e}
	_, w.ownerTok = e.createUser(t, "owner")
	w.aliceID, _ = e.createUser(t, "alice")
	w.eng = e.createGroup(t, "eng", w.ownerTok)
	w.ops = e.createGroup(t, "ops", w.ownerTok)
	// eng's CAs may vouch for alice: an admin made her an enterprise user
	// of eng (membership alone is never enough).
	e.mustAPI(t, http.MethodPut, "/users/"+itoa(w.aliceID), e.adminToken,
		url.Values{"enterprise_group_id": {itoa(w.eng)}}, http.StatusOK, nil)
	e.addMember(t, w.eng, w.aliceID, 30)
	e.addMember(t, w.ops, w.aliceID, 30)
	e.createProject(t, w.eng, "api")
	e.seedRepo(t, "eng/api")
	e.createProject(t, w.ops, "tools")
	e.seedRepo(t, "ops/tools")
	var pub string
	w.aliceKey, pub = e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, w.aliceID, pub, "", "")
	var caPub string
	w.caKey, caPub = e.sshKeygen(t, "ed25519", 0)
	w.caID = w.certAddCA(t, w.eng, caPub)
	return w
}

// certAddCA registers a CA public key in a group, as its owner, over REST.
func (w *certWorld) certAddCA(t *testing.T, groupID int64, caPub string) int64 {
	t.Helper()
	var ca idJSON
	w.e.mustAPI(t, http.MethodPost, "/groups/"+itoa(groupID)+"/ssh_certificates", w.ownerTok,
		url.Values{"title": {"e2e CA"}, "key": {caPub}}, http.StatusCreated, &ca)
	if ca.ID == 0 {
		t.Fatal("ssh_certificates: no id in answer")
	}
	return ca.ID
}

// certRevoke adds a revocation (kind serial, key_id or fingerprint) to the
// eng CA and returns its id.
func (w *certWorld) certRevoke(t *testing.T, kind, value string) int64 {
	t.Helper()
	var rv idJSON
	w.e.mustAPI(t, http.MethodPost, "/groups/"+itoa(w.eng)+"/ssh_certificates/"+itoa(w.caID)+"/revocations",
		w.ownerTok, url.Values{kind: {value}, "reason": {"e2e"}}, http.StatusCreated, &rv)
	if rv.ID == 0 {
		t.Fatal("revocations: no id in answer")
	}
	return rv.ID
}

// certDeleteCA deletes the eng CA over REST.
func (w *certWorld) certDeleteCA(t *testing.T) {
	t.Helper()
	w.e.mustAPI(t, http.MethodDelete, "/groups/"+itoa(w.eng)+"/ssh_certificates/"+itoa(w.caID), w.ownerTok,
		nil, http.StatusNoContent, nil)
}

// certStdArgs are the signing options of an ordinary certificate for
// alice: ssh-keygen -s ca -I alice -n git,alice -V -5m:+1h -z 42.
var certStdArgs = []string{"-I", "alice", "-n", "git,alice", "-V", "-5m:+1h", "-z", "42"}

// certIssue makes a new ed25519 key and signs it with the real
// `ssh-keygen -s caKey args…`. The certificate is moved away from
// KEY-cert.pub (which ssh would load by itself) to a name that only
// -o CertificateFile reaches. It returns the key and certificate paths.
func (w *certWorld) certIssue(t *testing.T, caKey string, args ...string) (string, string) {
	t.Helper()
	key, _ := w.e.sshKeygen(t, "ed25519", 0)
	all := append([]string{"-q", "-s", caKey}, args...)
	all = append(all, key+".pub")
	if _, stderr, code := w.e.run(t, "", nil, nil, "ssh-keygen", all...); code != 0 {
		t.Fatalf("ssh-keygen %s: exit %d: %s", strings.Join(all, " "), code, stderr)
	}
	cert := filepath.Join(filepath.Dir(key), "user.cert")
	if err := os.Rename(key+"-cert.pub", cert); err != nil {
		t.Fatal(err)
	}
	return key, cert
}

// certShow is `ssh-keygen -L -f cert`.
func (w *certWorld) certShow(t *testing.T, cert string) string {
	t.Helper()
	out, stderr, code := w.e.run(t, "", nil, nil, "ssh-keygen", "-L", "-f", cert)
	if code != 0 {
		t.Fatalf("ssh-keygen -L -f %s: exit %d: %s", cert, code, stderr)
	}
	return out
}

// certSSH runs the real ssh as login with the key and its certificate.
func (w *certWorld) certSSH(t *testing.T, key, cert, login string, extra ...string) (string, string, int) {
	t.Helper()
	return w.e.ssh(t, []string{key}, login, append([]string{"-o", "CertificateFile=" + cert}, extra...)...)
}

// certGit runs the real git with an ssh that presents the key and its
// certificate.
func (w *certWorld) certGit(t *testing.T, dir, key, cert string, args ...string) (string, string, int) {
	t.Helper()
	sshCmd := w.e.gitSSHCommand([]string{key}) + " -o " + shellQuote("CertificateFile="+cert)
	stdout, stderr, code := w.e.run(t, dir, []string{"GIT_SSH_COMMAND=" + sshCmd}, nil, "git", args...)
	return stdout, dropClientNoise(stderr), code
}

// certLogLines returns the server log lines containing every one of parts.
func (w *certWorld) certLogLines(parts ...string) []string {
	var out []string
	for _, l := range strings.Split(w.e.logs.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			out = append(out, l)
		}
	}
	return out
}

// certRequireGreeting asserts a successful certificate login as alice.
func (w *certWorld) certRequireGreeting(t *testing.T, key, cert, login string) {
	t.Helper()
	stdout, stderr, code := w.certSSH(t, key, cert, login)
	if code != 0 || stdout != certGreeting {
		t.Fatalf("ssh %s@ with certificate: exit %d, stdout %q, stderr %q; want 0 and %q", login, code, stdout, stderr, certGreeting)
	}
	if len(w.certLogLines(`msg="ssh auth accepted"`, "method=certificate")) == 0 {
		t.Fatalf("no certificate login in the server log")
	}
}

// certRequireRefused asserts that ssh could not log in: exit status 255
// and no session (no greeting on stdout).
func (w *certWorld) certRequireRefused(t *testing.T, key, cert, login string) string {
	t.Helper()
	stdout, stderr, code := w.certSSH(t, key, cert, login)
	if code != 255 || stdout != "" {
		t.Fatalf("ssh %s@ with certificate: exit %d, stdout %q, stderr %q; want 255 and no session", login, code, stdout, stderr)
	}
	return stderr
}

// TestCertLogin: a certificate whose Key ID names a member logs in, greets
// @alice (as git and as alice, both principals) and clones a project of
// the CA's group, but not one of another group where alice's plain key
// has access.
func TestCertLogin(t *testing.T) {
	w := certSetup(t)
	e := w.e
	key, cert := w.certIssue(t, w.caKey, certStdArgs...)
	if show := w.certShow(t, cert); !strings.Contains(show, "user certificate") || !strings.Contains(show, `Key ID: "alice"`) ||
		!strings.Contains(show, "Serial: 42") {
		t.Fatalf("ssh-keygen -L:\n%s", show)
	}

	w.certRequireGreeting(t, key, cert, "git")
	w.certRequireGreeting(t, key, cert, "alice")
	if l := w.certLogLines(`msg="ssh auth accepted"`, "method=certificate", "cert_key_id=alice"); len(l) < 2 {
		t.Fatalf("certificate logins in the log: %q", l)
	}
	// The certificate alone is what logs in: without it the key is unknown.
	if stdout, stderr, code := e.ssh(t, []string{key}, "git"); code != 255 || stdout != "" {
		t.Fatalf("ssh with the bare certificate key: exit %d, stdout %q, stderr %q; want 255", code, stdout, stderr)
	}

	dir := t.TempDir()
	if _, stderr, code := w.certGit(t, dir, key, cert, "clone", "--quiet", e.cloneURL("eng/api"), "api"); code != 0 {
		t.Fatalf("clone eng/api with certificate: exit %d: %s", code, stderr)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "api", "README")); err != nil || string(b) != "seed of eng/api\n" {
		t.Fatalf("cloned README = %q, %v", b, err)
	}

	_, stderr, code := w.certGit(t, dir, key, cert, "clone", "--quiet", e.cloneURL("ops/tools"), "tools")
	if code == 0 {
		t.Fatal("clone ops/tools with an eng certificate succeeded")
	}
	if !strings.Contains(stderr, "Your certificate does not allow access to projects in this namespace") {
		t.Fatalf("clone ops/tools with an eng certificate: exit %d, stderr %q; want the certificate scope message", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "tools", "README")); err == nil {
		t.Fatal("ops/tools was cloned")
	}
	// Control: alice's plain key reaches ops/tools.
	if _, stderr, code := e.git(t, dir, []string{w.aliceKey}, "clone", "--quiet", e.cloneURL("ops/tools"), "tools-plain"); code != 0 {
		t.Fatalf("clone ops/tools with alice's plain key: exit %d: %s", code, stderr)
	}
}

// TestCertAcceptedVariants: other ways a certificate names alice or binds
// itself, each accepted.
func TestCertAcceptedVariants(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"key id is the email", []string{"-I", "alice@example.com", "-n", "git,alice", "-V", "-5m:+1h", "-z", "42"}},
		{"login extension", []string{"-I", "nobody-by-this-name", "-O", "extension:login@localhost=alice",
			"-n", "git,alice", "-V", "-5m:+1h", "-z", "43"}},
		{"source-address matches", []string{"-I", "alice", "-n", "git,alice", "-V", "-5m:+1h", "-z", "44",
			"-O", "source-address=127.0.0.1/32"}},
		{"source-address list", []string{"-I", "alice", "-n", "git", "-V", "-5m:+1h", "-z", "45",
			"-O", "source-address=10.0.0.0/8,127.0.0.1"}},
		{"no principals", []string{"-I", "alice", "-V", "-5m:+1h", "-z", "46"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := certSetup(t)
			key, cert := w.certIssue(t, w.caKey, tc.args...)
			w.certRequireGreeting(t, key, cert, "git")
			dir := t.TempDir()
			if _, stderr, code := w.certGit(t, dir, key, cert, "clone", "--quiet", w.e.cloneURL("eng/api"), "api"); code != 0 {
				t.Fatalf("clone eng/api: exit %d: %s", code, stderr)
			}
		})
	}
}

// TestCertRefused: each certificate is refused at authentication: ssh
// exits 255 and no session starts. reason is what the server logs; ""
// where the client gives up in the unverified query phase (a CA that is
// not registered is never even "maybe").
func TestCertRefused(t *testing.T) {
	type issueFunc func(t *testing.T, w *certWorld) (key, cert string)
	std := func(args ...string) issueFunc {
		return func(t *testing.T, w *certWorld) (string, string) { return w.certIssue(t, w.caKey, args...) }
	}
	for _, tc := range []struct {
		name   string
		login  string // "" means git
		issue  issueFunc
		after  func(t *testing.T, w *certWorld, key, cert string)
		reason string
		banner string // in ssh's stderr
		// goClient: OpenSSH's client does not offer such a certificate at
		// all, so it is also presented with x/crypto's client to reach the
		// server's check.
		goClient bool
	}{
		{name: "expired", issue: std("-I", "alice", "-n", "git,alice", "-V", "20200101:20200102", "-z", "42"),
			reason: "certificate expired", banner: "keygate: your certificate expired at 2020-01-0"},
		{name: "not yet valid", issue: std("-I", "alice", "-n", "git,alice", "-V", "+1d:+2d", "-z", "42"),
			reason: "certificate not yet valid", banner: "keygate: your certificate is not valid before"},
		{name: "host certificate", issue: std("-h", "-I", "alice", "-n", "git,alice", "-V", "-5m:+1h", "-z", "42"),
			reason: "not a user certificate", goClient: true},
		{name: "CA not registered", issue: func(t *testing.T, w *certWorld) (string, string) {
			stranger, _ := w.e.sshKeygen(t, "ed25519", 0)
			return w.certIssue(t, stranger, certStdArgs...)
		}},
		{name: "CA deleted after issue", issue: std(certStdArgs...),
			after: func(t *testing.T, w *certWorld, _, _ string) { w.certDeleteCA(t) }},
		{name: "serial revoked", issue: std(certStdArgs...),
			after:  func(t *testing.T, w *certWorld, _, _ string) { w.certRevoke(t, "serial", "42") },
			reason: "certificate revoked", banner: "keygate: your certificate has been revoked"},
		{name: "key id revoked", issue: std(certStdArgs...),
			after:  func(t *testing.T, w *certWorld, _, _ string) { w.certRevoke(t, "key_id", "alice") },
			reason: "certificate revoked", banner: "keygate: your certificate has been revoked"},
		{name: "certificate key fingerprint revoked", issue: std(certStdArgs...),
			after: func(t *testing.T, w *certWorld, key, _ string) {
				out, stderr, code := w.e.run(t, "", nil, nil, "ssh-keygen", "-l", "-E", "sha256", "-f", key+".pub")
				fields := strings.Fields(out)
				if code != 0 || len(fields) < 2 || !strings.HasPrefix(fields[1], "SHA256:") {
					t.Fatalf("ssh-keygen -l: exit %d, %q %q", code, out, stderr)
				}
				w.certRevoke(t, "fingerprint", fields[1])
			},
			reason: "certificate revoked", banner: "keygate: your certificate has been revoked"},
		{name: "principals exclude the login", issue: std("-I", "alice", "-n", "root", "-V", "-5m:+1h", "-z", "42"),
			reason: "login name not among the certificate's principals", banner: `keygate: your certificate is for "root", not for login "git"`},
		{name: "login is another user, though a principal", login: "bob",
			issue: func(t *testing.T, w *certWorld) (string, string) {
				w.e.createUser(t, "bob")
				return w.certIssue(t, w.caKey, "-I", "alice", "-n", "git,alice,bob", "-V", "-5m:+1h", "-z", "42")
			},
			reason: "login name is neither the git user nor the certificate's user",
			banner: `keygate: this certificate logs in only as git or alice, not as "bob"`},
		{name: "source-address does not match", issue: std("-I", "alice", "-n", "git,alice", "-V", "-5m:+1h", "-z", "42",
			"-O", "source-address=10.1.2.3/32"),
			reason: "source-address: 127.0.0.1 is not allowed",
			banner: `keygate: your certificate may be used only from source-address "10.1.2.3/32", and this connection comes from 127.0.0.1`},
		{name: "unknown critical option", issue: std("-I", "alice", "-n", "git,alice", "-V", "-5m:+1h", "-z", "42",
			"-O", "force-command=/bin/true"),
			reason: "unsupported critical option force-command",
			banner: `keygate: your certificate has the critical option "force-command", which this server does not support`},
		{name: "verify-required", issue: std("-I", "alice", "-n", "git,alice", "-V", "-5m:+1h", "-z", "42",
			"-O", "verify-required"),
			reason: "unsupported critical option verify-required",
			banner: `keygate: your certificate has the critical option "verify-required"`},
		{name: "key id names no user", issue: std("-I", "nobody-by-this-name", "-n", "git,alice", "-V", "-5m:+1h", "-z", "42"),
			reason: "certificate identity names no user", banner: `may not vouch for "nobody-by-this-name"`},
		{name: "user not an enterprise user of the CA's group", issue: func(t *testing.T, w *certWorld) (string, string) {
			w.e.createUser(t, "bob")
			return w.certIssue(t, w.caKey, "-I", "bob", "-n", "git,bob", "-V", "-5m:+1h", "-z", "42")
		}, reason: "certificate user is not an enterprise user of a group with this CA", banner: `may not vouch for "bob"`},
		{name: "enterprise user not a member of the CA's group", issue: func(t *testing.T, w *certWorld) (string, string) {
			bob, _ := w.e.createUser(t, "bob")
			w.e.mustAPI(t, http.MethodPut, "/users/"+itoa(bob), w.e.adminToken, url.Values{"enterprise_group_id": {itoa(w.eng)}}, http.StatusOK, nil)
			return w.certIssue(t, w.caKey, "-I", "bob", "-n", "git,bob", "-V", "-5m:+1h", "-z", "42")
		}, reason: "certificate user is not a member of the CA's group", banner: `may not vouch for "bob"`},
		{name: "blocked user", issue: std(certStdArgs...),
			after:  func(t *testing.T, w *certWorld, _, _ string) { certBlockAlice(t, w) },
			reason: "blocked user", banner: "keygate: your account is blocked"},
		{name: "CA signature ssh-rsa SHA-1", issue: func(t *testing.T, w *certWorld) (string, string) {
			caRSA, caRSAPub := w.e.sshKeygen(t, "rsa", 3072)
			w.certAddCA(t, w.eng, caRSAPub)
			key, cert := w.certIssue(t, caRSA, append([]string{"-t", "ssh-rsa"}, certStdArgs...)...)
			if !strings.Contains(w.certShow(t, cert), "(using ssh-rsa)") {
				t.Logf("this ssh-keygen did not sign with ssh-rsa; signing the certificate in Go")
				certSignSHA1(t, caRSA, key+".pub", cert, "alice", []string{"git", "alice"}, 42)
			}
			if show := w.certShow(t, cert); !strings.Contains(show, "(using ssh-rsa)") {
				t.Fatalf("certificate is not signed with ssh-rsa:\n%s", show)
			}
			return key, cert
		}, reason: "certificate signed with SHA-1", banner: "keygate: your certificate was signed with ssh-rsa (SHA-1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := certSetup(t)
			key, cert := tc.issue(t, w)
			if tc.after != nil {
				tc.after(t, w, key, cert)
			}
			login := tc.login
			if login == "" {
				login = "git"
			}
			stderr := w.certRequireRefused(t, key, cert, login)
			if tc.goClient {
				if err := w.certGoDial(t, key, cert, login); err == nil {
					t.Fatal("x/crypto client: the certificate logged in")
				}
			}
			if l := w.certLogLines(`msg="ssh auth accepted"`); len(l) != 0 {
				t.Fatalf("the server accepted a login: %q", l)
			}
			if tc.reason != "" {
				if len(w.certLogLines(`msg="ssh auth rejected"`, "method=certificate", `reason="`+tc.reason)) == 0 {
					t.Fatalf("no certificate rejection with reason %q in the log; rejections: %q", tc.reason,
						w.certLogLines(`msg="ssh auth rejected"`))
				}
			}
			if tc.banner != "" && !strings.Contains(stderr, tc.banner) {
				t.Fatalf("ssh stderr %q does not contain %q", stderr, tc.banner)
			}
		})
	}
}

// certGoDial logs in with x/crypto's client presenting the certificate
// (for certificates OpenSSH's client refuses to offer); it returns the
// handshake error, or nil after a session that ran no command.
func (w *certWorld) certGoDial(t *testing.T, key, cert, login string) error {
	t.Helper()
	keyPEM, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	certText, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := gossh.ParseAuthorizedKey(certText)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := pub.(*gossh.Certificate)
	if !ok {
		t.Fatalf("%s is not a certificate", cert)
	}
	certSigner, err := gossh.NewCertSigner(c, signer)
	if err != nil {
		t.Fatal(err)
	}
	client, err := gossh.Dial("tcp", w.e.sshAddr, &gossh.ClientConfig{
		User: login, Auth: []gossh.AuthMethod{gossh.PublicKeys(certSigner)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 30 * time.Second,
	})
	if err != nil {
		return err
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	out, err := sess.Output("")
	t.Logf("x/crypto client session: %q, %v", out, err)
	return nil
}

// TestCertRevocationLifted: a revoked certificate is refused at once and
// accepted again once the revocation is deleted.
func TestCertRevocationLifted(t *testing.T) {
	w := certSetup(t)
	key, cert := w.certIssue(t, w.caKey, certStdArgs...)
	w.certRequireGreeting(t, key, cert, "git")

	rv := w.certRevoke(t, "serial", "42")
	w.certRequireRefused(t, key, cert, "git")

	w.e.mustAPI(t, http.MethodDelete, "/groups/"+itoa(w.eng)+"/ssh_certificates/"+itoa(w.caID)+"/revocations/"+itoa(rv),
		w.ownerTok, nil, http.StatusNoContent, nil)
	w.certRequireGreeting(t, key, cert, "git")
}

// TestCertSessionClosedWhenCADeleted: an open certificate session (a
// git-upload-pack waiting for the client's wants) is closed within a few
// seconds after its CA is deleted.
func TestCertSessionClosedWhenCADeleted(t *testing.T) {
	w := certSetup(t)
	key, cert := w.certIssue(t, w.caKey, certStdArgs...)

	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	cmd := w.e.sshCmd(ctx, []string{key}, "git", "-o", "CertificateFile="+cert, "git-upload-pack 'eng/api.git'")
	stdin, err := cmd.StdinPipe() // kept open: upload-pack waits for wants
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	var stdout, stderr testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	if !waitFor(10*time.Second, func() bool { return strings.Contains(stdout.String(), "refs/heads/main") }) {
		t.Fatalf("the session did not start: stdout %q, stderr %q", stdout.String(), stderr.String())
	}
	select {
	case err := <-done:
		t.Fatalf("ssh ended before the CA was deleted: %v; stderr %q", err, stderr.String())
	default:
	}

	w.certDeleteCA(t)
	deleted := time.Now()
	select {
	case err := <-done:
		t.Logf("session closed %v after the CA was deleted (ssh: %v)", time.Since(deleted).Round(time.Millisecond), err)
		if err == nil {
			t.Fatalf("ssh exited 0 after its CA was deleted; stderr %q", stderr.String())
		}
	case <-time.After(10 * time.Second):
		cancel()
		<-done
		t.Fatalf("the session was still open 10s after its CA was deleted")
	}
	if l := w.certLogLines("closing connection", `reason="certificate authority deleted"`); len(l) == 0 {
		t.Fatalf("no log of closing the connection because the CA was deleted")
	}
	// And the certificate no longer logs in.
	w.certRequireRefused(t, key, cert, "git")
}

// TestCertForgedSignatureGetsNoBanner: SPEC §5 sends the reasons of a
// refusal (blocked account, revoked certificate) only to a client that
// proved its right to them. A certificate that names a registered CA but
// carries a signature that CA never made proves nothing: it must be refused
// like a certificate of an unknown CA, without a banner; otherwise anyone
// can ask the server whether a username or email is blocked, or whether a
// serial or key id is revoked. OpenSSH's client verifies the CA signature
// of its own certificates before offering them, so the forgery is
// presented with x/crypto's client. The control subtest shows the banner
// does reach this client for the genuine certificate.
func TestCertForgedSignatureGetsNoBanner(t *testing.T) {
	for _, tc := range []struct {
		name   string
		forged bool
		setup  func(t *testing.T, w *certWorld)
		banner string // for the genuine certificate
		bug    bool   // fails today: see the t.Skip
	}{
		{"control: genuine certificate, blocked user", false, certBlockAlice, "keygate: your account is blocked", false},
		{"forged signature", true, func(*testing.T, *certWorld) {}, "", false},
		{"forged signature, blocked user", true, certBlockAlice, "", true},
		{"forged signature, revoked serial", true, func(t *testing.T, w *certWorld) { w.certRevoke(t, "serial", "42") }, "", true},
		{"forged signature, revoked key id", true, func(t *testing.T, w *certWorld) { w.certRevoke(t, "key_id", "alice") }, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := certSetup(t)
			tc.setup(t, w)
			caPEM, err := os.ReadFile(w.caKey)
			if err != nil {
				t.Fatal(err)
			}
			ca, err := gossh.ParsePrivateKey(caPEM)
			if err != nil {
				t.Fatal(err)
			}
			authority := ca
			if tc.forged {
				if authority, err = certNewEd25519Signer(); err != nil {
					t.Fatal(err)
				}
			}
			userKey, err := certNewEd25519Signer()
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			c := &gossh.Certificate{
				Key: userKey.PublicKey(), Serial: 42, CertType: gossh.UserCert, KeyId: "alice",
				ValidPrincipals: []string{"git", "alice"},
				ValidAfter:      uint64(now.Add(-5 * time.Minute).Unix()), ValidBefore: uint64(now.Add(time.Hour).Unix()),
			}
			if err := c.SignCert(rand.Reader, authority); err != nil {
				t.Fatal(err)
			}
			c.SignatureKey = ca.PublicKey() // names the registered CA; the signature is not its
			certSigner, err := gossh.NewCertSigner(c, userKey)
			if err != nil {
				t.Fatal(err)
			}
			var banners testutil.SyncBuffer
			client, err := gossh.Dial("tcp", w.e.sshAddr, &gossh.ClientConfig{
				User: "git", Auth: []gossh.AuthMethod{gossh.PublicKeys(certSigner)},
				HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 30 * time.Second,
				BannerCallback: func(m string) error { _, _ = banners.Write([]byte(m)); return nil },
			})
			if err == nil {
				client.Close()
				t.Fatal("the certificate logged in")
			}
			if tc.banner != "" {
				if !strings.Contains(banners.String(), tc.banner) {
					t.Fatalf("banner %q, want %q", banners.String(), tc.banner)
				}
				return
			}
			if banners.String() != "" {
				t.Fatalf("a certificate with a forged CA signature got the banner %q", banners.String())
			}
		})
	}
}

func certBlockAlice(t *testing.T, w *certWorld) {
	t.Helper()
	w.e.mustAPI(t, http.MethodPost, "/users/"+itoa(w.aliceID)+"/block", w.e.adminToken, nil, http.StatusCreated, nil)
}

func certNewEd25519Signer() (gossh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return gossh.NewSignerFromKey(priv)
}

// TestCertGoSHA1Signer checks the Go fallback that signs a certificate with
// ssh-rsa (SHA-1) for the case of an ssh-keygen that no longer can: the
// real ssh-keygen reads it as signed "using ssh-rsa".
func TestCertGoSHA1Signer(t *testing.T) {
	requireBinaries(t, "ssh-keygen")
	dir := t.TempDir()
	for _, args := range [][]string{
		{"-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", filepath.Join(dir, "ca")},
		{"-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "key")},
	} {
		if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %v: %v %s", args, err, out)
		}
	}
	cert := filepath.Join(dir, "key.cert")
	certSignSHA1(t, filepath.Join(dir, "ca"), filepath.Join(dir, "key.pub"), cert, "alice", []string{"git"}, 7)
	out, err := exec.Command("ssh-keygen", "-L", "-f", cert).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("(using ssh-rsa)")) || !bytes.Contains(out, []byte(`Key ID: "alice"`)) {
		t.Fatalf("ssh-keygen -L: %v\n%s", err, out)
	}
}

// certSignSHA1 writes to certPath a user certificate of the public key in
// pubPath signed by the RSA CA in caPath with an ssh-rsa (SHA-1) signature,
// valid from 5 minutes ago for an hour.
func certSignSHA1(t *testing.T, caPath, pubPath, certPath, keyID string, principals []string, serial uint64) {
	t.Helper()
	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := gossh.ParsePrivateKey(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	as, ok := ca.(gossh.AlgorithmSigner)
	if !ok {
		t.Fatalf("CA signer %T cannot choose its algorithm", ca)
	}
	sha1CA, err := gossh.NewSignerWithAlgorithms(as, []string{gossh.KeyAlgoRSA})
	if err != nil {
		t.Fatal(err)
	}
	pubText, err := os.ReadFile(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := gossh.ParseAuthorizedKey(pubText)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c := &gossh.Certificate{
		Key: pub, Serial: serial, CertType: gossh.UserCert, KeyId: keyID, ValidPrincipals: principals,
		ValidAfter: uint64(now.Add(-5 * time.Minute).Unix()), ValidBefore: uint64(now.Add(time.Hour).Unix()),
		Permissions: gossh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if err := c.SignCert(rand.Reader, sha1CA); err != nil {
		t.Fatal(err)
	}
	if c.Signature.Format != gossh.KeyAlgoRSA {
		t.Fatalf("signature format %q, want ssh-rsa", c.Signature.Format)
	}
	if err := os.WriteFile(certPath, gossh.MarshalAuthorizedKey(c), 0o644); err != nil {
		t.Fatal(err)
	}
}
