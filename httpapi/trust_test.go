package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/keygate/keygate/keystore"
)

// TestSudo: the Sudo header and ?sudo= act as another user only for an
// administrator's token with the sudo scope, exactly as GitLab; every other
// request carrying them is refused and performs nothing, never as the
// token's own user.
func TestSudo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, aliceToken := e.newUser(t, "alice")
	e.newUser(t, "bob")
	apiOnly := adminSecret
	withSudo := e.newToken(t, e.admin.ID, nil, keystore.ScopeAPI, keystore.ScopeSudo)

	keysOf := func(userID int64) int {
		_, total, err := e.store.ListKeys(e.ctx, keystore.KeyFilter{UserID: userID}, keystore.Page{PerPage: 100})
		if err != nil {
			t.Fatal(err)
		}
		return total
	}
	addKey := func(token string, sudo any) (*gitlab.Response, error) {
		line, _ := newKey(t, "sudo")
		c := newGitLabClient(t, e, token)
		_, resp, err := c.Users.AddSSHKey(&gitlab.AddSSHKeyOptions{Title: gitlab.Ptr("k"), Key: gitlab.Ptr(line)}, gitlab.WithSudo(sudo))
		return resp, err
	}

	// An admin token without the sudo scope: 403, and the key lands nowhere.
	resp, err := addKey(apiOnly, "alice")
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("Sudo with an api-only admin token: %v (%v), want 403", resp, err)
	}
	if !strings.Contains(err.Error(), "insufficient_scope") {
		t.Errorf("refusal does not name the missing scope: %v", err)
	}
	if n, m := keysOf(e.admin.ID), keysOf(alice.ID); n != 0 || m != 0 {
		t.Fatalf("refused Sudo write stored keys: root %d, alice %d", n, m)
	}
	// A non-admin: GitLab's "Must be admin to use sudo".
	r := e.raw(t, http.MethodPost, "/api/v4/user/keys?sudo=bob", http.Header{"Private-Token": {aliceToken},
		"Content-Type": {"application/json"}}, strings.NewReader(`{"title":"x","key":"`+mustKey(t)+`"}`))
	expectBody(t, "Sudo by a non-admin", r, http.StatusForbidden, `{"message":"403 Forbidden - Must be admin to use sudo"}`)
	if keysOf(alice.ID) != 0 {
		t.Fatal("a non-admin's refused Sudo write stored a key on the caller")
	}
	// Unknown user.
	r = e.raw(t, http.MethodGet, "/api/v4/user", http.Header{"Private-Token": {withSudo}, "Sudo": {"nobody"}}, nil)
	expectBody(t, "Sudo as an unknown user", r, http.StatusNotFound, `{"message":"404 User 'nobody' Not Found"}`)

	// With the sudo scope, by username and by id: the write is alice's.
	if resp, err := addKey(withSudo, "alice"); err != nil {
		t.Fatalf("Sudo by username: %v %v", resp, err)
	}
	if resp, err := addKey(withSudo, alice.ID); err != nil {
		t.Fatalf("Sudo by id: %v %v", resp, err)
	}
	if n, m := keysOf(e.admin.ID), keysOf(alice.ID); n != 0 || m != 2 {
		t.Fatalf("Sudo writes: root has %d keys, alice %d; want 0 and 2", n, m)
	}
	r = e.raw(t, http.MethodGet, "/api/v4/user", http.Header{"Private-Token": {withSudo}, "Sudo": {"alice"}}, nil)
	expect(t, "GET /user as alice", r, http.StatusOK)
	if got := r.Object(t)["username"]; got != "alice" {
		t.Fatalf("GET /user with Sudo: alice = %v", got)
	}
	// The audit log says who really acted.
	events, _, err := e.store.ListAuditEvents(e.ctx, keystore.AuditFilter{}, keystore.Page{PerPage: 100})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range events {
		if ev.Action == "key_created" && ev.ActorID != nil && *ev.ActorID == alice.ID {
			if strings.Contains(ev.Details, `"sudo_by":`+itoa(e.admin.ID)) {
				found = true
			}
		}
	}
	if !found {
		t.Fatal("no key_created audit event by alice with sudo_by root")
	}

	// Only administrators' tokens may carry the scope.
	r = e.do(t, http.MethodPost, "/api/v4/users/"+itoa(alice.ID)+"/personal_access_tokens", adminSecret,
		map[string]any{"name": "s", "scopes": []string{"api", "sudo"}})
	expect(t, "sudo scope for a non-admin", r, http.StatusBadRequest)
}

func mustKey(t *testing.T) string {
	line, _ := newKey(t, "")
	return line
}

// TestHiddenEmails: a non-admin's user search matches usernames and names,
// never emails; /-/allowed_signers needs a token and shows a non-admin only
// their own lines.
func TestHiddenEmails(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, aliceToken := e.newUser(t, "alice")
	email := "secret.agent@hidden.example"
	username := "bob"
	bob, err := e.store.CreateUser(e.ctx, keystore.Actor{}, keystore.UserInput{Username: &username, Email: &email})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(e.do(t, http.MethodGet, "/api/v4/users?search=secret.agent", aliceToken, nil).List(t)); n != 0 {
		t.Fatalf("a non-admin's search by email found %d users", n)
	}
	if n := len(e.do(t, http.MethodGet, "/api/v4/users?search=bo", aliceToken, nil).List(t)); n != 1 {
		t.Fatalf("a non-admin's search by username found %d users, want 1", n)
	}
	if n := len(e.do(t, http.MethodGet, "/api/v4/users?search=secret.agent", adminSecret, nil).List(t)); n != 1 {
		t.Fatalf("an admin's search by email found %d users, want 1", n)
	}

	line, _ := newKey(t, "")
	if _, err := e.store.CreateKey(e.ctx, keystore.Actor{}, bob.ID, keystore.KeyInput{Title: "s", Key: line, UsageType: keystore.UsageSigning}); err != nil {
		t.Fatal(err)
	}
	expect(t, "anonymous allowed_signers", e.do(t, http.MethodGet, "/-/allowed_signers", "", nil), http.StatusUnauthorized)
	if body := string(e.do(t, http.MethodGet, "/-/allowed_signers", aliceToken, nil).Body); strings.Contains(body, email) {
		t.Fatalf("alice reads bob's hidden email in allowed_signers:\n%s", body)
	}
	if body := string(e.do(t, http.MethodGet, "/-/allowed_signers", adminSecret, nil).Body); !strings.Contains(body, email+" ") {
		t.Fatalf("the admin's allowed_signers lacks bob's line:\n%s", body)
	}
	bobToken := e.newToken(t, bob.ID, nil, keystore.ScopeReadAPI)
	if body := string(e.do(t, http.MethodGet, "/-/allowed_signers", bobToken, nil).Body); !strings.Contains(body, email+" ") {
		t.Fatalf("bob's own allowed_signers lacks his line:\n%s", body)
	}
}

// TestNamesThatWouldBeShadowedOrPatterns: emails with allowed_signers
// pattern characters, and all-digit usernames and paths, are refused.
func TestNamesThatWouldBeShadowedOrPatterns(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		name, path, field string
		body              map[string]any
	}{
		{"email-star", "/api/v4/users", "email", map[string]any{"username": "u1", "email": "*@example.com"}},
		{"email-question", "/api/v4/users", "email", map[string]any{"username": "u2", "email": "a?b@example.com"}},
		{"email-bang", "/api/v4/users", "email", map[string]any{"username": "u3", "email": "!a@example.com"}},
		{"email-comma", "/api/v4/users", "email", map[string]any{"username": "u4", "email": "a@x.com,b@example.com"}},
		{"email-space", "/api/v4/users", "email", map[string]any{"username": "u5", "email": "a b@example.com"}},
		{"email-tab", "/api/v4/users", "email", map[string]any{"username": "u6", "email": "a\tb@example.com"}},
		{"username-digits", "/api/v4/users", "username", map[string]any{"username": "12345", "email": "d@example.com"}},
		{"group-path-digits", "/api/v4/groups", "path", map[string]any{"name": "g", "path": "2024"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, http.MethodPost, tc.path, adminSecret, tc.body)
			expect(t, tc.name, r, http.StatusBadRequest)
			if !strings.Contains(string(r.Body), `"`+tc.field+`"`) {
				t.Fatalf("400 does not name %s: %s", tc.field, r.Body)
			}
		})
	}
	g := e.do(t, http.MethodPost, "/api/v4/groups", adminSecret, map[string]any{"name": "g", "path": "g"})
	expect(t, "group", g, http.StatusCreated)
	r := e.do(t, http.MethodPost, "/api/v4/projects", adminSecret, map[string]any{"namespace_id": g.Object(t)["id"], "path": "42", "name": "n"})
	expect(t, "all-digit project path", r, http.StatusBadRequest)
	// An existing user can't be renamed to digits either.
	u, _ := e.newUser(t, "carol")
	expect(t, "rename to digits", e.do(t, http.MethodPut, "/api/v4/users/"+itoa(u.ID), adminSecret, map[string]any{"username": "777"}), http.StatusBadRequest)
}

// TestDeleteProjectNeedsOwner: a maintainer cannot delete a project, an
// owner can (GitLab's rule).
func TestDeleteProjectNeedsOwner(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, ownerToken := e.newUser(t, "owner")
	maint, maintToken := e.newUser(t, "maint")
	g := e.do(t, http.MethodPost, "/api/v4/groups", ownerToken, map[string]any{"name": "team", "path": "team"})
	expect(t, "group", g, http.StatusCreated)
	gid := g.Object(t)["id"]
	expect(t, "member", e.do(t, http.MethodPost, "/api/v4/groups/team/members", ownerToken,
		map[string]any{"user_id": maint.ID, "access_level": keystore.Maintainer}), http.StatusCreated)
	p := e.do(t, http.MethodPost, "/api/v4/projects", maintToken, map[string]any{"namespace_id": gid, "path": "app"})
	expect(t, "project by maintainer", p, http.StatusCreated)
	pid := itoa(int64(p.Object(t)["id"].(float64)))
	expect(t, "delete by maintainer", e.do(t, http.MethodDelete, "/api/v4/projects/"+pid, maintToken, nil), http.StatusForbidden)
	expect(t, "still there", e.do(t, http.MethodGet, "/api/v4/projects/"+pid, maintToken, nil), http.StatusOK)
	expect(t, "delete by owner", e.do(t, http.MethodDelete, "/api/v4/projects/"+pid, ownerToken, nil), http.StatusAccepted)
}

// TestGitHubRoutesStorageFault: with the keystore unreadable, GitHub's
// routes answer 503, not "not found".
func TestGitHubRoutesStorageFault(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.newUser(t, "alice")
	expect(t, "before", e.do(t, http.MethodGet, "/api/v3/users/alice/keys", "", nil), http.StatusOK)
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/v3/users/alice/keys", "/api/v3/users/alice/ssh_signing_keys"} {
		r := e.do(t, http.MethodGet, path, "", nil)
		if r.Code != http.StatusServiceUnavailable {
			t.Errorf("GET %s with the keystore closed: %d %s, want 503", path, r.Code, r.Body)
		}
	}
}
