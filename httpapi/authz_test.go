package httpapi_test

import (
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

func TestAuthzAdminOnlyAndPrivateResources(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, aliceToken := e.newUser(t, "alice")
	bob, bobToken := e.newUser(t, "bob")
	bobKeyLine, _ := newKey(t, "")
	r := e.do(t, "POST", "/api/v4/user/keys", bobToken, map[string]any{"title": "b", "key": bobKeyLine})
	expect(t, "bob adds a key", r, http.StatusCreated)
	bobKey := itoa(idOf(t, r.Object(t)))
	bobTokens, _, err := e.store.ListTokens(e.ctx, bob.ID, keystore.Page{PerPage: 10})
	if err != nil || len(bobTokens) != 1 {
		t.Fatalf("bob's tokens: %v, %v", bobTokens, err)
	}
	bobTok := itoa(bobTokens[0].ID)
	before := e.counts(t)

	cases := []struct {
		name, method, path string
		body               any
		code               int
		want               string
	}{
		// Another user's token: not found, as if it did not exist.
		{"get-others-token", "GET", "/api/v4/personal_access_tokens/" + bobTok, nil, 404, `{"message":"404 Token Not Found"}`},
		{"revoke-others-token", "DELETE", "/api/v4/personal_access_tokens/" + bobTok, nil, 404, `{"message":"404 Token Not Found"}`},
		{"get-unknown-token", "GET", "/api/v4/personal_access_tokens/999999", nil, 404, `{"message":"404 Token Not Found"}`},
		// Another user's key through one's own routes.
		{"get-others-key", "GET", "/api/v4/user/keys/" + bobKey, nil, 404, `{"message":"404 Key Not Found"}`},
		{"delete-others-key", "DELETE", "/api/v4/user/keys/" + bobKey, nil, 404, `{"message":"404 Key Not Found"}`},
		// Admin-only routes.
		{"create-user", "POST", "/api/v4/users", map[string]any{"username": "eve", "email": "eve@example.com"}, 403, `{"message":"403 Forbidden"}`},
		{"make-self-admin", "PUT", "/api/v4/users/" + itoa(alice.ID), map[string]any{"admin": true}, 403, `{"message":"403 Forbidden"}`},
		{"delete-user", "DELETE", "/api/v4/users/" + itoa(bob.ID), nil, 403, `{"message":"403 Forbidden"}`},
		{"block-user", "POST", "/api/v4/users/" + itoa(bob.ID) + "/block", nil, 403, `{"message":"403 Forbidden"}`},
		{"mint-token-for-other", "POST", "/api/v4/users/" + itoa(bob.ID) + "/personal_access_tokens",
			map[string]any{"name": "x", "scopes": []string{"api"}}, 403, `{"message":"403 Forbidden"}`},
		{"mint-token-for-self", "POST", "/api/v4/users/" + itoa(alice.ID) + "/personal_access_tokens",
			map[string]any{"name": "x", "scopes": []string{"api"}}, 403, `{"message":"403 Forbidden"}`},
		{"add-key-for-other", "POST", "/api/v4/users/" + itoa(bob.ID) + "/keys", map[string]any{"title": "x", "key": bobKeyLine}, 403, `{"message":"403 Forbidden"}`},
		{"delete-key-of-other", "DELETE", "/api/v4/users/" + itoa(bob.ID) + "/keys/" + bobKey, nil, 403, `{"message":"403 Forbidden"}`},
		{"key-with-user", "GET", "/api/v4/keys/" + bobKey, nil, 403, `{"message":"403 Forbidden"}`},
		{"key-by-fingerprint", "GET", "/api/v4/keys?fingerprint=SHA256%3Aabc", nil, 403, `{"message":"403 Forbidden"}`},
		{"audit-events", "GET", "/api/v4/audit_events", nil, 403, `{"message":"403 Forbidden"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectBody(t, tc.method+" "+tc.path, e.do(t, tc.method, tc.path, aliceToken, tc.body), tc.code, tc.want)
		})
	}
	if after := e.counts(t); after != before {
		t.Fatalf("refused requests changed the store: %+v -> %+v", before, after)
	}
	// Bob's token still works; the admin sees it.
	expect(t, "bob's token after alice's attempts", e.do(t, "GET", "/api/v4/user", bobToken, nil), http.StatusOK)
	r = e.do(t, "GET", "/api/v4/personal_access_tokens/"+bobTok, adminSecret, nil)
	expect(t, "admin reads bob's token", r, http.StatusOK)
	if _, leaked := r.Object(t)["token"]; leaked {
		t.Fatalf("reading a token shows its secret: %s", r.Body)
	}
	// Alice's token list holds only hers, whatever she asks for.
	for _, q := range []string{"", "?user_id=" + itoa(bob.ID)} {
		r = e.do(t, "GET", "/api/v4/personal_access_tokens"+q, aliceToken, nil)
		expect(t, "alice lists tokens"+q, r, http.StatusOK)
		for _, tk := range r.List(t) {
			if int64(tk["user_id"].(float64)) != alice.ID {
				t.Fatalf("alice sees token %v of user %v", tk["id"], tk["user_id"])
			}
		}
	}
	// A non-admin sees no one else's email.
	r = e.do(t, "GET", "/api/v4/users/"+itoa(bob.ID), aliceToken, nil)
	expect(t, "alice reads bob", r, http.StatusOK)
	if strings.Contains(string(r.Body), "bob@example.com") {
		t.Fatalf("bob's email shown to alice: %s", r.Body)
	}
}

func TestAuthzGroups(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, ownerToken := e.newUser(t, "owner")
	reporter, reporterToken := e.newUser(t, "reporter")
	subOwner, subOwnerToken := e.newUser(t, "subowner")
	_, outsiderToken := e.newUser(t, "outsider")

	mkGroup := func(name string, parent int64) int64 {
		t.Helper()
		body := map[string]any{"name": name, "path": name}
		if parent != 0 {
			body["parent_id"] = parent
		}
		r := e.do(t, "POST", "/api/v4/groups", ownerToken, body)
		expect(t, "create group "+name, r, http.StatusCreated)
		return idOf(t, r.Object(t))
	}
	acme := mkGroup("acme", 0)
	team := mkGroup("team", acme)
	deep := mkGroup("deep", team)
	acmex := mkGroup("acmex", 0) // shares a prefix with acme, is not under it
	addMember := func(group int64, uid int64, level int) {
		t.Helper()
		r := e.do(t, "POST", "/api/v4/groups/"+itoa(group)+"/members", ownerToken, map[string]any{"user_id": uid, "access_level": level})
		expect(t, "add member", r, http.StatusCreated)
	}
	addMember(acme, reporter.ID, keystore.Reporter)
	addMember(team, subOwner.ID, keystore.Owner)
	before := e.counts(t)

	for _, tc := range []struct {
		name, token, method, path string
		body                      any
		code                      int
		want                      string
	}{
		{"outsider-get-by-id", outsiderToken, "GET", "/api/v4/groups/" + itoa(acme), nil, 404, `{"message":"404 Group Not Found"}`},
		{"outsider-get-by-path", outsiderToken, "GET", "/api/v4/groups/acme%2Fteam", nil, 404, `{"message":"404 Group Not Found"}`},
		{"outsider-members", outsiderToken, "GET", "/api/v4/groups/" + itoa(acme) + "/members", nil, 404, `{"message":"404 Group Not Found"}`},
		{"outsider-put", outsiderToken, "PUT", "/api/v4/groups/" + itoa(acme), map[string]any{"name": "pwned"}, 404, `{"message":"404 Group Not Found"}`},
		{"outsider-delete", outsiderToken, "DELETE", "/api/v4/groups/" + itoa(acme), nil, 404, `{"message":"404 Group Not Found"}`},
		{"outsider-subgroup", outsiderToken, "POST", "/api/v4/groups", map[string]any{"name": "x", "path": "x", "parent_id": acme}, 400, ""},
		{"unknown-group", reporterToken, "GET", "/api/v4/groups/424242", nil, 404, `{"message":"404 Group Not Found"}`},
		{"reporter-put", reporterToken, "PUT", "/api/v4/groups/" + itoa(acme), map[string]any{"name": "renamed"}, 403, `{"message":"403 Forbidden"}`},
		{"reporter-put-subgroup", reporterToken, "PUT", "/api/v4/groups/" + itoa(team), map[string]any{"name": "renamed"}, 403, `{"message":"403 Forbidden"}`},
		{"reporter-delete", reporterToken, "DELETE", "/api/v4/groups/" + itoa(acme), nil, 403, `{"message":"403 Forbidden"}`},
		{"reporter-add-member", reporterToken, "POST", "/api/v4/groups/" + itoa(acme) + "/members",
			map[string]any{"user_id": reporter.ID, "access_level": 50}, 403, `{"message":"403 Forbidden"}`},
		{"reporter-promote-self", reporterToken, "PUT", "/api/v4/groups/" + itoa(acme) + "/members/" + itoa(reporter.ID),
			map[string]any{"access_level": 50}, 403, `{"message":"403 Forbidden"}`},
		{"reporter-subgroup", reporterToken, "POST", "/api/v4/groups", map[string]any{"name": "x", "path": "x", "parent_id": acme}, 403, ""},
		{"subowner-put-parent", subOwnerToken, "PUT", "/api/v4/groups/" + itoa(acme), map[string]any{"name": "renamed"}, 404, `{"message":"404 Group Not Found"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, tc.method, tc.path, tc.token, tc.body)
			if tc.want == "" {
				expect(t, tc.method+" "+tc.path, r, tc.code)
				return
			}
			expectBody(t, tc.method+" "+tc.path, r, tc.code, tc.want)
		})
	}
	if after := e.counts(t); after != before {
		t.Fatalf("refused group requests changed the store: %+v -> %+v", before, after)
	}

	// Visibility through GET /groups follows inheritance downwards only.
	visible := func(token string) []string {
		t.Helper()
		r := e.do(t, "GET", "/api/v4/groups?per_page=100", token, nil)
		expect(t, "GET /groups", r, http.StatusOK)
		var paths []string
		for _, g := range r.List(t) {
			paths = append(paths, g["full_path"].(string))
		}
		sort.Strings(paths)
		return paths
	}
	for _, tc := range []struct {
		who, token string
		want       string
	}{
		{"reporter-of-parent", reporterToken, "acme acme/team acme/team/deep"},
		{"owner-of-subgroup", subOwnerToken, "acme/team acme/team/deep"},
		{"outsider", outsiderToken, ""},
		{"creator", ownerToken, "acme acme/team acme/team/deep acmex"},
		{"admin", adminSecret, "acme acme/team acme/team/deep acmex"},
	} {
		if got := strings.Join(visible(tc.token), " "); got != tc.want {
			t.Errorf("%s sees groups [%s], want [%s]", tc.who, got, tc.want)
		}
	}
	// Inherited access works on the subgroup itself: reporter reads, the
	// subgroup's owner edits it, the parent's reporter does not.
	expect(t, "reporter reads acme/team/deep", e.do(t, "GET", "/api/v4/groups/"+itoa(deep), reporterToken, nil), http.StatusOK)
	expect(t, "reporter reads acme/team by path", e.do(t, "GET", "/api/v4/groups/acme%2Fteam", reporterToken, nil), http.StatusOK)
	r := e.do(t, "PUT", "/api/v4/groups/"+itoa(deep), subOwnerToken, map[string]any{"description": "inherited owner"})
	expect(t, "inherited owner edits acme/team/deep", r, http.StatusOK)
	if r.Object(t)["description"] != "inherited owner" {
		t.Fatalf("PUT did not apply: %s", r.Body)
	}
	expect(t, "owner of acme sees acmex", e.do(t, "GET", "/api/v4/groups/"+itoa(acmex), ownerToken, nil), http.StatusOK)
	expect(t, "reporter of acme does not see acmex", e.do(t, "GET", "/api/v4/groups/"+itoa(acmex), reporterToken, nil), http.StatusNotFound)
}

func TestAuthzTokenHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, token := e.newUser(t, "alice")
	for _, tc := range []struct {
		name  string
		hdr   http.Header
		query string
		code  int
	}{
		{"private-token-header", http.Header{"Private-Token": {token}}, "", 200},
		{"bearer", http.Header{"Authorization": {"Bearer " + token}}, "", 200},
		{"bearer-lower-case-scheme", http.Header{"Authorization": {"bearer " + token}}, "", 200},
		{"query", nil, "?private_token=" + url.QueryEscape(token), 200},
		{"none", nil, "", 401},
		{"empty-bearer", http.Header{"Authorization": {"Bearer "}}, "", 401},
		{"basic-auth-is-not-a-token", http.Header{"Authorization": {"Basic " + token}}, "", 401},
		{"wrong-token", http.Header{"Private-Token": {token + "x"}}, "", 401},
		{"token-prefix-only", http.Header{"Private-Token": {token[:len(token)-1]}}, "", 401},
		{"wrong-header-beats-right-query", http.Header{"Private-Token": {"kgpat-wrong-wrong-wrong-wrong"}}, "?private_token=" + url.QueryEscape(token), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.raw(t, "GET", "/api/v4/user"+tc.query, tc.hdr, nil)
			if tc.code == 401 {
				expectBody(t, tc.name, r, 401, `{"message":"401 Unauthorized"}`)
				return
			}
			expect(t, tc.name, r, tc.code)
			if u := r.Object(t); u["username"] != "alice" || int64(u["id"].(float64)) != alice.ID {
				t.Fatalf("GET /user = %s, want alice", r.Body)
			}
		})
	}
	// A write with the token in the query string works too (GitLab clients do it).
	line, _ := newKey(t, "")
	form := url.Values{"title": {"q"}, "key": {line}}
	r := e.raw(t, "POST", "/api/v4/user/keys?private_token="+url.QueryEscape(token),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(form.Encode()))
	expect(t, "form POST with ?private_token=", r, http.StatusCreated)
	if r.Object(t)["key"] != line {
		t.Fatalf("form POST stored %v, want %q", r.Object(t)["key"], line)
	}
	// The token never appears in the pagination links.
	r = e.raw(t, "GET", "/api/v4/user/keys?per_page=1&private_token="+url.QueryEscape(token), nil, nil)
	expect(t, "list with ?private_token=", r, http.StatusOK)
	if strings.Contains(r.Header.Get("Link"), token) {
		t.Fatalf("Link header leaks the token: %s", r.Header.Get("Link"))
	}
	if strings.Contains(e.logs.String(), token) {
		t.Fatal("the token was logged")
	}
}

func TestAuthzAuditEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, token := e.newUser(t, "alice")
	before := e.counts(t)

	line, _ := newKey(t, "")
	r := e.do(t, "POST", "/api/v4/user/keys", token, map[string]any{"title": "audited", "key": line})
	expect(t, "add key", r, http.StatusCreated)
	keyID := idOf(t, r.Object(t))
	if got := e.counts(t).AuditEvents; got != before.AuditEvents+1 {
		t.Fatalf("adding a key recorded %d audit events, want 1", got-before.AuditEvents)
	}
	// Reads record nothing.
	e.do(t, "GET", "/api/v4/user/keys", token, nil)
	e.do(t, "GET", "/api/v4/user/keys/"+itoa(keyID), token, nil)
	if got := e.counts(t).AuditEvents; got != before.AuditEvents+1 {
		t.Fatalf("reads recorded audit events: %d -> %d", before.AuditEvents+1, got)
	}
	r = e.do(t, "POST", "/api/v4/groups", token, map[string]any{"name": "Audited", "path": "audited"})
	expect(t, "create group", r, http.StatusCreated)
	groupID := idOf(t, r.Object(t))
	expect(t, "delete key", e.do(t, "DELETE", "/api/v4/user/keys/"+itoa(keyID), token, nil), http.StatusNoContent)

	r = e.do(t, "GET", "/api/v4/audit_events?per_page=100", adminSecret, nil)
	expect(t, "GET /audit_events", r, http.StatusOK)
	events := r.List(t)
	if total := r.Header.Get("X-Total"); total != itoa(int64(e.counts(t).AuditEvents)) {
		t.Fatalf("X-Total %s, store holds %d events", total, e.counts(t).AuditEvents)
	}
	type want struct {
		entityType string
		entityID   int64
	}
	found := map[want]map[string]any{}
	for _, ev := range events {
		for _, f := range []string{"id", "author_id", "entity_id", "entity_type", "details", "created_at"} {
			if _, ok := ev[f]; !ok {
				t.Fatalf("audit event %v lacks GitLab's %q", ev, f)
			}
		}
		if _, err := time.Parse(time.RFC3339, ev["created_at"].(string)); err != nil {
			t.Fatalf("created_at %v: %v", ev["created_at"], err)
		}
		if _, ok := ev["details"].(map[string]any); !ok {
			t.Fatalf("details of %v is not an object", ev)
		}
		if a, ok := ev["author_id"].(float64); ok && int64(a) == alice.ID {
			found[want{ev["entity_type"].(string), int64(ev["entity_id"].(float64))}] = ev
		}
	}
	keyEvents := 0
	for _, ev := range events {
		if ev["entity_type"] == "key" && int64(ev["entity_id"].(float64)) == keyID {
			keyEvents++
			if a, _ := ev["author_id"].(float64); int64(a) != alice.ID {
				t.Fatalf("key event %v not authored by alice (%d)", ev, alice.ID)
			}
			d := ev["details"].(map[string]any)
			if d["ip_address"] != "127.0.0.1" {
				t.Fatalf("key event details %v lack the client's ip_address", d)
			}
		}
	}
	if keyEvents != 2 { // created, deleted
		t.Fatalf("%d audit events for key %d, want 2 (create, delete): %s", keyEvents, keyID, r.Body)
	}
	if found[want{"group", groupID}] == nil {
		t.Fatalf("no audit event by alice for group %d: %s", groupID, r.Body)
	}
	// Newest first, as GitLab lists them.
	for i := 1; i < len(events); i++ {
		if events[i-1]["id"].(float64) < events[i]["id"].(float64) {
			t.Fatalf("audit events not newest first: %v before %v", events[i-1]["id"], events[i]["id"])
		}
	}
	// Filtered by entity.
	r = e.do(t, "GET", "/api/v4/audit_events?entity_type=key&entity_id="+itoa(keyID), adminSecret, nil)
	if l := r.List(t); len(l) != 2 {
		t.Fatalf("filtered audit events = %s, want 2", r.Body)
	}
	// The group's owner sees the group's events.
	r = e.do(t, "GET", "/api/v4/groups/"+itoa(groupID)+"/audit_events", token, nil)
	expect(t, "group audit events", r, http.StatusOK)
	if l := r.List(t); len(l) == 0 || l[len(l)-1]["entity_type"] != "group" {
		t.Fatalf("group audit events = %s", r.Body)
	}
}
