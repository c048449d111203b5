package e2e

// A CA key is its top-level group's own (issue 20, finding 6 and §6),
// tried with the real ssh-keygen and ssh.

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/keygate/keygate/sshd"
)

// TestSquattedCAKeyRefusesNothing: public keys are public, so mallory, the
// owner of another group, registers eng's CA key, once after eng did and
// once (a second key) before eng did, and revokes key_id=alice and the
// serial of alice's certificates under it. eng's owner still registers
// its key, and alice's certificates from eng's CA log in: mallory's
// revocations refuse nothing outside mallory's group.
func TestSquattedCAKeyRefusesNothing(t *testing.T) {
	t.Parallel()
	w := certSetup(t)
	e := w.e
	_, malTok := e.createUser(t, "mallory")
	evil := e.createGroup(t, "evil", malTok)
	squat := func(caPub string) int64 {
		t.Helper()
		var ca idJSON
		e.mustAPI(t, http.MethodPost, "/groups/"+itoa(evil)+"/ssh_certificates", malTok,
			url.Values{"title": {"squatted"}, "key": {caPub}}, http.StatusCreated, &ca)
		for _, rv := range []url.Values{{"key_id": {"alice"}}, {"serial": {"42"}}} {
			rv.Set("reason", "squatter")
			e.mustAPI(t, http.MethodPost, "/groups/"+itoa(evil)+"/ssh_certificates/"+itoa(ca.ID)+"/revocations", malTok,
				rv, http.StatusCreated, nil)
		}
		return ca.ID
	}

	// After eng registered its key.
	squat(readFile(t, w.caKey+".pub"))
	key, cert := w.certIssue(t, w.caKey, certStdArgs...)
	w.certRequireGreeting(t, key, cert, "git")

	// Before eng registers a second key.
	ca2, ca2Pub := e.sshKeygen(t, "ed25519", 0)
	squat(ca2Pub)
	w.certAddCA(t, w.eng, ca2Pub)
	key2, cert2 := w.certIssue(t, ca2, certStdArgs...)
	w.certRequireGreeting(t, key2, cert2, "git")
	dir := t.TempDir()
	if _, stderr, code := w.certGit(t, dir, key2, cert2, "clone", "--quiet", e.cloneURL("eng/api"), "c"); code != 0 {
		t.Fatalf("clone with the certificate of the squatted key: %s", stderr)
	}
	// eng's own revocation still refuses, with its banner.
	w.certRevoke(t, "serial", "42")
	if stderr := w.certRequireRefused(t, key, cert, "git"); !strings.Contains(stderr, "keygate: your certificate has been revoked") {
		t.Fatalf("eng's own revocation: %s", stderr)
	}
}

// TestCertIdentityBannersConfirmNothing: the certificate holder (whoever
// holds a group's CA key: its owner) chooses the identity a certificate
// names. Whatever it names (a guessed e-mail of an account in no group of
// theirs, a member of their group who is not their enterprise user, an
// enterprise user of another group, a blocked stranger, no account at
// all) the refusal reads the same, but for the identity echoed back: it
// confirms no account or e-mail. "blocked" is said only for the group's
// own enterprise user.
func TestCertIdentityBannersConfirmNothing(t *testing.T) {
	t.Parallel()
	// Thirteen refusals in a row from one address: no per-source penalty.
	w := certSetupWith(t, func(c *sshd.Config) { c.PerSourceMaxAuthFailures = -1 })
	e := w.e
	e.createUser(t, "bob") // in no group of eng's owner
	carolID, _ := e.createUser(t, "carol")
	e.addMember(t, w.eng, carolID, 30) // a member, not an enterprise user
	erinID, _ := e.createUser(t, "erin")
	e.mustAPI(t, http.MethodPut, "/users/"+itoa(erinID), e.adminToken, url.Values{"enterprise_group_id": {itoa(w.ops)}}, http.StatusOK, nil)
	e.addMember(t, w.eng, erinID, 30) // another group's enterprise user
	daveID, _ := e.createUser(t, "dave")
	e.mustAPI(t, http.MethodPost, "/users/"+itoa(daveID)+"/block", e.adminToken, nil, http.StatusCreated, nil)

	banner := func(t *testing.T, identity string, byExtension bool) string {
		t.Helper()
		args := []string{"-I", identity, "-n", "git", "-V", "-5m:+1h", "-z", "42"}
		if byExtension {
			args = []string{"-I", "laptop-7", "-O", "extension:login@localhost=" + identity, "-n", "git", "-V", "-5m:+1h", "-z", "42"}
		}
		key, cert := w.certIssue(t, w.caKey, args...)
		lines := keygateLines(dropClientNoise(w.certRequireRefused(t, key, cert, "git")))
		return strings.ReplaceAll(strings.Join(lines, "\n"), `"`+identity+`"`, `"IDENTITY"`)
	}
	want := banner(t, "nobody@example.com", false)
	if !strings.Contains(want, `may not vouch for "IDENTITY"`) {
		t.Fatalf("refusal for an identity that names no one: %q", want)
	}
	for _, identity := range []string{"bob@example.com", "bob", "carol@example.com", "erin@example.com", "dave@example.com", "dave"} {
		for _, ext := range []bool{false, true} {
			if got := banner(t, identity, ext); got != want {
				t.Errorf("identity %q (login@ extension %v): banner %q, want the same as for no account: %q", identity, ext, got, want)
			}
		}
	}
	// The group's own enterprise user, once blocked, is told so.
	certBlockAlice(t, w)
	key, cert := w.certIssue(t, w.caKey, "-I", "alice@example.com", "-n", "git", "-V", "-5m:+1h", "-z", "42")
	if stderr := w.certRequireRefused(t, key, cert, "git"); !strings.Contains(stderr, "keygate: your account is blocked") {
		t.Fatalf("eng's blocked enterprise user: %s", stderr)
	}
}
