package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// The key policy (issue 26) with the real ssh, ssh-keygen and git: an
// admin's application settings apply at every login and end the open
// sessions they now refuse; a top-level group's owners add a stricter
// policy for git in their projects; certificates, the keys inside them and
// the CA keys that signed them answer to it too.

type violationsJSON []struct {
	Kind        string `json:"kind"`
	ID          int64  `json:"id"`
	Fingerprint string `json:"fingerprint"`
	Setting     string `json:"setting"`
	Reason      string `json:"reason"`
}

func (e *env) setPolicy(t *testing.T, settings url.Values) map[string]any {
	t.Helper()
	var out map[string]any
	e.mustAPI(t, http.MethodPut, "/application/settings", e.adminToken, settings, http.StatusOK, &out)
	return out
}

func TestKeyPolicyAtLoginAndOnOpenSessions(t *testing.T) {
	t.Parallel()
	e, aliceID, aliceTok := newAlice(t)
	rsaKey, rsaPub := e.sshKeygen(t, "rsa", 2048)
	edKey, edPub := e.sshKeygen(t, "ed25519", 0)
	rsaID := e.addKey(t, aliceID, rsaPub, "", "")
	e.addKey(t, aliceID, edPub, "", "")
	if stdout, stderr, code := e.ssh(t, []string{rsaKey}, "git"); code != 0 || stdout != welcomeAlice {
		t.Fatalf("RSA 2048 before any policy: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	// Announced before it is switched on: today nothing violates; with
	// rsa_key_restriction=3072 the RSA key would.
	var v violationsJSON
	e.mustAPI(t, http.MethodGet, "/application/settings/key_policy_violations", e.adminToken, nil, http.StatusOK, &v)
	if len(v) != 0 {
		t.Fatalf("violations of no policy: %+v", v)
	}
	e.mustAPI(t, http.MethodGet, "/application/settings/key_policy_violations", e.adminToken,
		url.Values{"rsa_key_restriction": {"3072"}}, http.StatusOK, &v)
	if len(v) != 1 || v[0].ID != rsaID || v[0].Kind != "user_key" || v[0].Setting != "rsa_key_restriction" ||
		v[0].Fingerprint != fingerprintOf(t, rsaPub) {
		t.Fatalf("violations of rsa_key_restriction=3072: %+v", v)
	}
	// Only admins.
	if code, body := e.api(t, http.MethodGet, "/application/settings", aliceTok, nil); code != http.StatusForbidden {
		t.Fatalf("alice GET /application/settings = %d %s, want 403", code, body)
	}
	if code, body := e.api(t, http.MethodPut, "/application/settings", aliceTok, url.Values{"rsa_key_restriction": {"-1"}}); code != http.StatusForbidden {
		t.Fatalf("alice PUT /application/settings = %d %s, want 403", code, body)
	}

	// An open fetch with the RSA key ends when the restriction is switched on.
	s := e.startSession(t, []string{rsaKey}, "git", "git-upload-pack 'eng/api.git'")
	if !s.waitOutput(" refs/heads/main\n0000", 30*time.Second) {
		t.Fatalf("no ref advertisement; stderr %q", s.stderr.String())
	}
	got := e.setPolicy(t, url.Values{"rsa_key_restriction": {"3072"}})
	if got["rsa_key_restriction"] != float64(3072) || got["ed25519_key_restriction"] != float64(0) || got["dsa_key_restriction"] != float64(-1) {
		t.Fatalf("PUT answered %v", got)
	}
	if !s.waitExit(10 * time.Second) {
		t.Fatal("an open fetch with an RSA 2048 key went on after rsa_key_restriction=3072")
	}
	if !waitFor(5*time.Second, func() bool {
		return strings.Contains(e.logs.String(), "instance key policy: key breaks key_too_small")
	}) {
		t.Error("no log line names the policy that ended the session")
	}

	// New logins with it: refused, with a banner naming the rule.
	stdout, stderr, code := e.ssh(t, []string{rsaKey}, "git")
	banner := "keygate: key " + fingerprintOf(t, rsaPub) + " is refused by this server's key policy: " +
		"RSA keys must be at least 3072 bits, this one has 2048 (rsa_key_restriction); add a key that meets it"
	if code != 255 || stdout != "" || !strings.Contains(stderr, banner) {
		t.Fatalf("RSA 2048 after rsa_key_restriction=3072: exit %d, stdout %q, stderr %q; want the banner %q", code, stdout, stderr, banner)
	}
	if stdout, stderr, code := e.ssh(t, []string{edKey}, "git"); code != 0 || stdout != welcomeAlice {
		t.Fatalf("ed25519 under rsa_key_restriction=3072: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// Adding another: GitLab's 400.
	_, rsa2 := e.sshKeygen(t, "rsa", 2048)
	code2, body := e.api(t, http.MethodPost, "/users/"+itoa(aliceID)+"/keys", e.adminToken, url.Values{"title": {"rsa"}, "key": {rsa2}})
	if code2 != http.StatusBadRequest || strings.TrimSpace(string(body)) != `{"message":{"key":["must be at least 3072 bits"]}}` {
		t.Fatalf("adding an RSA 2048 key = %d %s", code2, body)
	}
	e.mustAPI(t, http.MethodGet, "/application/settings/key_policy_violations", e.adminToken, nil, http.StatusOK, &v)
	if len(v) != 1 || v[0].ID != rsaID {
		t.Fatalf("violations of the policy in force: %+v", v)
	}
	// The refusal is an audit event with the key's fingerprint and the rule.
	var events []struct {
		Action  string          `json:"event_name"`
		Details json.RawMessage `json:"details"`
	}
	if !waitFor(5*time.Second, func() bool {
		e.mustAPI(t, http.MethodGet, "/audit_events", e.adminToken, url.Values{"entity_type": {"key"}}, http.StatusOK, &events)
		for _, ev := range events {
			if ev.Action == "ssh_login_refused_by_key_policy" && strings.Contains(string(ev.Details), `"setting":"rsa_key_restriction"`) &&
				strings.Contains(string(ev.Details), fingerprintOf(t, rsaPub)) {
				return true
			}
		}
		return false
	}) {
		t.Errorf("no ssh_login_refused_by_key_policy audit event: %+v", events)
	}

	// Forbidding ed25519 too: GitLab's message lists what is left.
	e.setPolicy(t, url.Values{"ed25519_key_restriction": {"-1"}})
	_, ed2 := e.sshKeygen(t, "ed25519", 0)
	code2, body = e.api(t, http.MethodPost, "/user/keys", aliceTok, url.Values{"title": {"ed"}, "key": {ed2}})
	if code2 != http.StatusBadRequest || strings.TrimSpace(string(body)) != `{"message":{"key":["type is forbidden. Must be RSA, ECDSA, ECDSA_SK, or ED25519_SK"]}}` {
		t.Fatalf("adding an ed25519 key with ed25519 forbidden = %d %s", code2, body)
	}
	if _, stderr, code := e.ssh(t, []string{edKey}, "git"); code != 255 || !strings.Contains(stderr, "ED25519 keys are not allowed (ed25519_key_restriction)") {
		t.Fatalf("ed25519 forbidden: exit %d, stderr %q", code, stderr)
	}

	// Lifted: both log in again (nothing was deleted).
	e.setPolicy(t, url.Values{"rsa_key_restriction": {"0"}, "ed25519_key_restriction": {"0"}})
	for _, k := range []string{rsaKey, edKey} {
		if stdout, stderr, code := e.ssh(t, []string{k}, "git"); code != 0 || stdout != welcomeAlice {
			t.Fatalf("after lifting the policy: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	}
}

func TestKeyPolicyLifetime(t *testing.T) {
	t.Parallel()
	e, aliceID, _ := newAlice(t)
	forever, foreverPub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, aliceID, foreverPub, "", "")
	short, shortPub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, aliceID, shortPub, "", time.Now().Add(10*24*time.Hour).UTC().Format("2006-01-02"))
	long, longPub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, aliceID, longPub, "", time.Now().Add(100*24*time.Hour).UTC().Format("2006-01-02"))

	got := e.setPolicy(t, url.Values{"max_ssh_key_lifetime": {"30"}})
	if got["max_ssh_key_lifetime"] != float64(30) {
		t.Fatalf("PUT answered %v", got)
	}
	for _, c := range []struct {
		name, key, want string
	}{
		{"no-expiry", forever, "keys must have an expiry date at most 30 days after they were added (max_ssh_key_lifetime); add a key with an expiry date"},
		{"100-days", long, "keys may live at most 30 days from when they were added (max_ssh_key_lifetime)"},
	} {
		if _, stderr, code := e.ssh(t, []string{c.key}, "git"); code != 255 || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want %q", c.name, code, stderr, c.want)
		}
	}
	if stdout, stderr, code := e.ssh(t, []string{short}, "git"); code != 0 || stdout != welcomeAlice {
		t.Fatalf("a key living 10 days: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// When added: GitLab's rule and messages.
	_, pub := e.sshKeygen(t, "ed25519", 0)
	for _, c := range []struct {
		expires, want string
	}{
		{"", `{"message":{"key":["has no expiration date but an expiration date is required for SSH keys on this instance. Contact the instance administrator."]}}`},
		{time.Now().Add(31 * 24 * time.Hour).UTC().Format(time.RFC3339), "has an invalid expiration date. Set a shorter lifetime for the key (at most 30 days"},
	} {
		form := url.Values{"title": {"t"}, "key": {pub}}
		if c.expires != "" {
			form.Set("expires_at", c.expires)
		}
		code, body := e.api(t, http.MethodPost, "/users/"+itoa(aliceID)+"/keys", e.adminToken, form)
		if code != http.StatusBadRequest || !strings.Contains(string(body), c.want) {
			t.Errorf("adding a key expiring %q under max_ssh_key_lifetime=30 = %d %s", c.expires, code, body)
		}
	}
	// Out of range: a clear 400.
	code, body := e.api(t, http.MethodPut, "/application/settings", e.adminToken, url.Values{"max_ssh_key_lifetime": {"366"}})
	if code != http.StatusBadRequest || !strings.Contains(string(body), "max_ssh_key_lifetime") {
		t.Fatalf("max_ssh_key_lifetime=366 = %d %s", code, body)
	}
}

func TestGroupKeyPolicyIsStricterOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ownerID, ownerTok := e.createUser(t, "owner")
	_ = ownerID
	aliceID, aliceTok := e.createUser(t, "alice")
	eng := e.createGroup(t, "eng", ownerTok)
	ops := e.createGroup(t, "ops", ownerTok)
	sub := e.createSubgroup(t, eng, "web", ownerTok)
	for _, g := range []int64{eng, ops} {
		e.addMember(t, g, aliceID, keystore.Developer)
	}
	e.createProject(t, eng, "api")
	e.seedRepo(t, "eng/api")
	e.createProject(t, sub, "site")
	e.seedRepo(t, "eng/web/site")
	e.createProject(t, ops, "tools")
	e.seedRepo(t, "ops/tools")
	edKey, edPub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, aliceID, edPub, "", "")
	ecKey, ecPub := e.sshKeygen(t, "ecdsa", 256)
	e.addKey(t, aliceID, ecPub, "", "")

	// Only the top-level group's owners; admins are owners everywhere.
	if code, body := e.api(t, http.MethodPut, "/groups/"+itoa(eng)+"/key_policy", aliceTok, url.Values{"ed25519_key_restriction": {"-1"}}); code != http.StatusForbidden {
		t.Fatalf("a developer's PUT key_policy = %d %s, want 403", code, body)
	}
	if code, body := e.api(t, http.MethodPut, "/groups/"+itoa(sub)+"/key_policy", ownerTok, url.Values{"ed25519_key_restriction": {"-1"}}); code != http.StatusForbidden {
		t.Fatalf("a subgroup's PUT key_policy = %d %s, want 403", code, body)
	}
	if code, body := e.api(t, http.MethodPut, "/groups/"+itoa(eng)+"/key_policy", ownerTok, url.Values{"frobnicate": {"1"}}); code != http.StatusBadRequest ||
		!strings.Contains(string(body), "frobnicate") {
		t.Fatalf("an unknown setting = %d %s, want 400 naming it", code, body)
	}

	// An open fetch of eng/api with the ed25519 key ends when eng forbids
	// ed25519; the same key keeps fetching from ops.
	s := e.startSession(t, []string{edKey}, "git", "git-upload-pack 'eng/api.git'")
	if !s.waitOutput(" refs/heads/main\n0000", 30*time.Second) {
		t.Fatalf("no ref advertisement; stderr %q", s.stderr.String())
	}
	var pol map[string]any
	e.mustAPI(t, http.MethodPut, "/groups/"+itoa(eng)+"/key_policy", ownerTok, url.Values{"ed25519_key_restriction": {"-1"}}, http.StatusOK, &pol)
	if pol["ed25519_key_restriction"] != float64(-1) || pol["effective"].(map[string]any)["ed25519_key_restriction"] != float64(-1) {
		t.Fatalf("PUT key_policy answered %v", pol)
	}
	if !s.waitExit(10 * time.Second) {
		t.Fatal("an open fetch with an ed25519 key went on after its group forbade ed25519")
	}
	clone := func(key, path string) (string, int) {
		_, stderr, code := e.git(t, "", []string{key}, "clone", "--quiet", e.cloneURL(path), filepath.Join(t.TempDir(), "c"))
		return stderr, code
	}
	for _, path := range []string{"eng/api", "eng/web/site"} {
		stderr, code := clone(edKey, path)
		if code == 0 || !strings.Contains(stderr, "keygate: your key is refused by this group's key policy: ED25519 keys are not allowed (ed25519_key_restriction)") {
			t.Fatalf("clone %s with ed25519 under eng's policy: exit %d %s", path, code, stderr)
		}
		if stderr, code := clone(ecKey, path); code != 0 {
			t.Fatalf("clone %s with ECDSA under eng's policy: %s", path, stderr)
		}
	}
	if stderr, code := clone(edKey, "ops/tools"); code != 0 {
		t.Fatalf("clone ops/tools with ed25519 (ops has no policy): %s", stderr)
	}
	// The login itself is the instance's business: ed25519 still logs in.
	if stdout, stderr, code := e.ssh(t, []string{edKey}, "git"); code != 0 || stdout != "Welcome to keygate, @alice!\n" {
		t.Fatalf("login under a group policy: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	// Never looser: the instance asks ECDSA of 384 bits; eng asking
	// nothing of ECDSA (0) does not lift it.
	e.mustAPI(t, http.MethodPut, "/application/settings", e.adminToken, url.Values{"ecdsa_key_restriction": {"384"}}, http.StatusOK, nil)
	e.mustAPI(t, http.MethodGet, "/groups/"+itoa(eng)+"/key_policy", ownerTok, nil, http.StatusOK, &pol)
	if pol["ecdsa_key_restriction"] != float64(0) || pol["effective"].(map[string]any)["ecdsa_key_restriction"] != float64(384) {
		t.Fatalf("GET key_policy: %v", pol)
	}
	if stderr, code := clone(ecKey, "eng/api"); code == 0 || !strings.Contains(stderr, "ECDSA keys must be at least 384 bits") {
		t.Fatalf("clone with ECDSA 256 under the instance's ecdsa_key_restriction=384: exit %d %s", code, stderr)
	}
	// The group's changes are in its audit events.
	var events []struct {
		Action string `json:"event_name"`
	}
	e.mustAPI(t, http.MethodGet, "/groups/"+itoa(eng)+"/audit_events", ownerTok, nil, http.StatusOK, &events)
	found := false
	for _, ev := range events {
		found = found || ev.Action == "group_key_policy_updated"
	}
	if !found {
		t.Errorf("no group_key_policy_updated in eng's audit events: %+v", events)
	}
}

func TestKeyPolicyCertificates(t *testing.T) {
	t.Parallel()
	w := certSetup(t)
	e := w.e
	e.setPolicy(t, url.Values{"max_ssh_certificate_lifetime": {"1"}})
	key, cert := w.certIssue(t, w.caKey, "-I", "alice", "-n", "git,alice", "-V", "-5m:+2h")
	stdout, stderr, code := w.certSSH(t, key, cert, "git")
	if code != 255 || stdout != "" || !strings.Contains(stderr,
		"keygate: your certificate is refused by this server's key policy: certificates may be valid for at most 1 hours (max_ssh_certificate_lifetime); ask your certificate authority") {
		t.Fatalf("a 2h05m certificate under max_ssh_certificate_lifetime=1: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	key, cert = w.certIssue(t, w.caKey, "-I", "alice", "-n", "git,alice") // valid forever
	if _, stderr, code := w.certSSH(t, key, cert, "git"); code != 255 || !strings.Contains(stderr, "certificates must expire, within 1 hours") {
		t.Fatalf("a certificate without expiry under max_ssh_certificate_lifetime=1: exit %d, stderr %q", code, stderr)
	}
	e.setPolicy(t, url.Values{"max_ssh_certificate_lifetime": {""}, "require_ssh_certificate_expiry": {"true"}})
	if _, stderr, code := w.certSSH(t, key, cert, "git"); code != 255 || !strings.Contains(stderr, "certificates must have an expiry (require_ssh_certificate_expiry)") {
		t.Fatalf("a certificate without expiry under require_ssh_certificate_expiry: exit %d, stderr %q", code, stderr)
	}

	// An open session with a 35-minute certificate ends when the key
	// inside it (ed25519) is forbidden.
	key, cert = w.certIssue(t, w.caKey, "-I", "alice", "-n", "git,alice", "-V", "-5m:+30m")
	sshArgs := []string{"-o", "CertificateFile=" + cert, "git-upload-pack 'eng/api.git'"}
	s := e.startSession(t, []string{key}, "git", sshArgs...)
	if !s.waitOutput(" refs/heads/main\n0000", 30*time.Second) {
		t.Fatalf("no ref advertisement; stderr %q", s.stderr.String())
	}
	// The CA key is ed25519 too: forbidding ed25519 refuses on the
	// certificate's key first.
	e.setPolicy(t, url.Values{"ed25519_key_restriction": {"-1"}})
	if !s.waitExit(10 * time.Second) {
		t.Fatal("an open certificate session went on after ed25519 was forbidden")
	}
	if _, stderr, code := w.certSSH(t, key, cert, "git"); code != 255 || !strings.Contains(stderr, "ED25519 keys are not allowed (ed25519_key_restriction); get a certificate for a key that meets it") {
		t.Fatalf("a certificate for an ed25519 key with ed25519 forbidden: exit %d, stderr %q", code, stderr)
	}
	// An ECDSA key certified by the ed25519 CA: refused for the CA's key.
	ecKey, _ := e.sshKeygen(t, "ecdsa", 256)
	all := []string{"-q", "-s", w.caKey, "-I", "alice", "-n", "git,alice", "-V", "-5m:+30m", ecKey + ".pub"}
	if _, stderr, code := e.run(t, "", nil, nil, "ssh-keygen", all...); code != 0 {
		t.Fatalf("ssh-keygen: %s", stderr)
	}
	if _, stderr, code := w.certSSH(t, ecKey, ecKey+"-cert.pub", "git"); code != 255 || !strings.Contains(stderr, "certificate authority") ||
		!strings.Contains(stderr, "ED25519 keys are not allowed") {
		t.Fatalf("an ECDSA key certified by an ed25519 CA with ed25519 forbidden: exit %d, stderr %q", code, stderr)
	}
	// A CA key the policy forbids cannot be added either.
	_, caPub := e.sshKeygen(t, "ed25519", 0)
	code, body := e.api(t, http.MethodPost, "/groups/"+itoa(w.eng)+"/ssh_certificates", w.ownerTok, url.Values{"title": {"ca2"}, "key": {caPub}})
	if code != http.StatusBadRequest || !strings.Contains(string(body), "type is forbidden") {
		t.Fatalf("adding an ed25519 CA with ed25519 forbidden = %d %s", code, body)
	}
}
