package httpapi_test

import (
	"net/http"
	"sort"
	"strings"
	"testing"

	gitlab "gitlab.com/gitlab-org/api/client-go"
)

// caRevocations lists a group CA's revocations as "type=value (reason)",
// sorted, as token sees them; it fails unless the answer is 200.
func caRevocations(t *testing.T, e *env, token string, group, ca int64) string {
	t.Helper()
	r := e.do(t, "GET", "/api/v4/groups/"+itoa(group)+"/ssh_certificates/"+itoa(ca)+"/revocations", token, nil)
	expect(t, "list revocations", r, http.StatusOK)
	var out []string
	for _, o := range r.List(t) {
		out = append(out, o["type"].(string)+"="+o["value"].(string)+" ("+o["reason"].(string)+")")
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// caRevoke adds a revocation to a group CA as token and returns its id.
func caRevoke(t *testing.T, e *env, token string, group, ca int64, kind, value, reason string) int64 {
	t.Helper()
	r := e.do(t, "POST", "/api/v4/groups/"+itoa(group)+"/ssh_certificates/"+itoa(ca)+"/revocations", token,
		map[string]any{kind: value, "reason": reason})
	expect(t, "revoke "+kind+"="+value, r, http.StatusCreated)
	return int64(r.Object(t)["id"].(float64))
}

// TestCAKeyIsItsGroupsOwn (issue 20, finding 6): public keys are public,
// so a group owner (mallory) registers acme's CA key before acme does and
// revokes key_id=alice with a reason. Through the official GitLab client,
// acme's owner still registers its key (201, not "taken"); acme does not
// see mallory's revocations, nor mallory acme's, and neither can lift the
// other's; an admin reads both. Deleting and re-adding the CA in the same
// group keeps its revocations; a third group registering the key after
// acme deleted its CA reads none of them.
func TestCAKeyIsItsGroupsOwn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, acmeTok := e.newUser(t, "acme-owner")
	_, malTok := e.newUser(t, "mallory")
	_, thirdTok := e.newUser(t, "third-owner")
	acmeC, malC, thirdC := newGitLabClient(t, e, acmeTok), newGitLabClient(t, e, malTok), newGitLabClient(t, e, thirdTok)
	group := func(c *gitlab.Client, path string) int64 {
		t.Helper()
		g, _, err := c.Groups.CreateGroup(&gitlab.CreateGroupOptions{Name: gitlab.Ptr(path), Path: gitlab.Ptr(path)})
		if err != nil {
			t.Fatalf("CreateGroup(%s): %v", path, err)
		}
		return g.ID
	}
	acme, evil, third := group(acmeC, "acme"), group(malC, "evil"), group(thirdC, "third")
	caLine, _ := newKey(t, "acme-ca")
	register := func(c *gitlab.Client, gid int64, title string) int64 {
		t.Helper()
		ca, resp, err := c.GroupSSHCertificates.CreateGroupSSHCertificate(gid, &gitlab.CreateGroupSSHCertificateOptions{
			Title: gitlab.Ptr(title), Key: gitlab.Ptr(caLine)})
		expectStatus(t, "register the CA key as "+title, resp, err, http.StatusCreated)
		return ca.ID
	}

	malCA := register(malC, evil, "squatted")
	malRev := caRevoke(t, e, malTok, evil, malCA, "key_id", "alice", "squatter's")
	// The real owner is not locked out.
	acmeCA := register(acmeC, acme, "ours")
	// A key is still unique within its group.
	_, resp, err := acmeC.GroupSSHCertificates.CreateGroupSSHCertificate(acme, &gitlab.CreateGroupSSHCertificateOptions{
		Title: gitlab.Ptr("twice"), Key: gitlab.Ptr(caLine)})
	expectStatus(t, "the same key twice in one group", resp, err, http.StatusBadRequest)

	if got := caRevocations(t, e, acmeTok, acme, acmeCA); got != "" {
		t.Fatalf("acme reads mallory's revocations: %s", got)
	}
	acmeRev := caRevoke(t, e, acmeTok, acme, acmeCA, "serial", "5", "laptop stolen, HR case 4411")
	// The same value in two groups is two revocations.
	caRevoke(t, e, acmeTok, acme, acmeCA, "key_id", "alice", "acme's own")
	if got := caRevocations(t, e, malTok, evil, malCA); got != "key_id=alice (squatter's)" {
		t.Fatalf("mallory's list: %s", got)
	}
	if got, want := caRevocations(t, e, acmeTok, acme, acmeCA), "key_id=alice (acme's own), serial=5 (laptop stolen, HR case 4411)"; got != want {
		t.Fatalf("acme's list: %s, want %s", got, want)
	}
	// Neither lifts the other's: to each, the other's does not exist.
	r := e.do(t, "DELETE", "/api/v4/groups/"+itoa(acme)+"/ssh_certificates/"+itoa(acmeCA)+"/revocations/"+itoa(malRev), acmeTok, nil)
	expect(t, "acme lifting mallory's revocation", r, http.StatusNotFound)
	r = e.do(t, "DELETE", "/api/v4/groups/"+itoa(evil)+"/ssh_certificates/"+itoa(malCA)+"/revocations/"+itoa(acmeRev), malTok, nil)
	expect(t, "mallory lifting acme's revocation", r, http.StatusNotFound)
	// Nor reads it through the other's group.
	r = e.do(t, "GET", "/api/v4/groups/"+itoa(acme)+"/ssh_certificates/"+itoa(acmeCA)+"/revocations", malTok, nil)
	if r.Code != http.StatusNotFound && r.Code != http.StatusForbidden {
		t.Fatalf("mallory listing acme's revocations: %d %s", r.Code, r.Body)
	}
	// Admins read every group's.
	if got := caRevocations(t, e, adminSecret, acme, acmeCA); !strings.Contains(got, "HR case 4411") {
		t.Fatalf("admin's view of acme's revocations: %s", got)
	}
	if got := caRevocations(t, e, adminSecret, evil, malCA); got != "key_id=alice (squatter's)" {
		t.Fatalf("admin's view of mallory's revocations: %s", got)
	}

	// acme deletes its CA: the key is still mallory's too, and a third
	// group registering it now reads nothing of acme's.
	resp, err = acmeC.GroupSSHCertificates.DeleteGroupSSHCertificate(acme, acmeCA)
	expectStatus(t, "acme deletes its CA", resp, err, http.StatusNoContent)
	thirdCA := register(thirdC, third, "late")
	if got := caRevocations(t, e, thirdTok, third, thirdCA); got != "" {
		t.Fatalf("a group registering the key after acme deleted its CA reads: %s", got)
	}
	// acme registers it again: its revocations are back, in force.
	acmeAgain := register(acmeC, acme, "ours again")
	if got, want := caRevocations(t, e, acmeTok, acme, acmeAgain), "key_id=alice (acme's own), serial=5 (laptop stolen, HR case 4411)"; got != want {
		t.Fatalf("acme's list after re-adding: %s, want %s", got, want)
	}
	r = e.do(t, "DELETE", "/api/v4/groups/"+itoa(acme)+"/ssh_certificates/"+itoa(acmeAgain)+"/revocations/"+itoa(acmeRev), acmeTok, nil)
	expect(t, "acme lifting its own revocation", r, http.StatusNoContent)
	if got := caRevocations(t, e, malTok, evil, malCA); got != "key_id=alice (squatter's)" {
		t.Fatalf("mallory's list after acme's changes: %s", got)
	}
}
