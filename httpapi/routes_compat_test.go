package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestRouteCompat: trailing slashes, HEAD on GET routes, and the public
// USERNAME.keys file.
func TestRouteCompat(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, token := e.newUser(t, "alice")
	auth, _ := newKey(t, "laptop")
	signing, _ := newKey(t, "signer")
	expired, _ := newKey(t, "old")
	expect(t, "add auth key", e.do(t, "POST", "/api/v4/user/keys", token, map[string]any{"title": "a", "key": auth}), http.StatusCreated)
	expect(t, "add signing key", e.do(t, "POST", "/api/v4/user/keys", token, map[string]any{"title": "s", "key": signing, "usage_type": "signing"}), http.StatusCreated)
	expect(t, "add expiring key", e.do(t, "POST", "/api/v4/user/keys", token, map[string]any{"title": "e", "key": expired, "expires_at": e.clock.Now().Add(48 * 3600e9).Format("2006-01-02")}), http.StatusCreated)

	r := e.do(t, "GET", "/api/v4/user/keys/", token, nil)
	expect(t, "trailing slash", r, http.StatusOK)
	if n := len(r.List(t)); n != 3 {
		t.Errorf("GET /user/keys/: %d keys, want 3", n)
	}
	r = e.do(t, "HEAD", "/api/v4/user/keys?per_page=1", token, nil)
	expect(t, "HEAD", r, http.StatusOK)
	if r.Header.Get("X-Total") != "3" || len(r.Body) != 0 {
		t.Errorf("HEAD /user/keys: X-Total %q, body %q; want 3 and no body", r.Header.Get("X-Total"), r.Body)
	}
	if r := e.do(t, "HEAD", "/api/v4/user/keys", "", nil); r.Code != http.StatusUnauthorized {
		t.Errorf("anonymous HEAD: %d, want 401", r.Code)
	}

	r = e.do(t, "GET", "/alice.keys", "", nil)
	expect(t, "alice.keys", r, http.StatusOK)
	body := string(r.Body)
	line := func(k string) string { f := strings.Fields(k); return f[0] + " " + f[1] }
	if !strings.Contains(body, line(auth)+"\n") || !strings.Contains(body, line(expired)+"\n") || strings.Contains(body, line(signing)) {
		t.Errorf("alice.keys = %q; want the two auth keys and not the signing key", body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("alice.keys Content-Type %q", ct)
	}
	e.clock.Advance(72 * 3600e9)
	if body := string(e.do(t, "GET", "/alice.keys", "", nil).Body); strings.Contains(body, line(expired)) || !strings.Contains(body, line(auth)) {
		t.Errorf("after expiry alice.keys = %q; want only the unexpired auth key", body)
	}
	expect(t, "unknown user", e.do(t, "GET", "/nobody.keys", "", nil), http.StatusNotFound)

	// A blocked user's keys do not log in, so none are served.
	expect(t, "block", e.do(t, "POST", "/api/v4/users/"+strconv.FormatInt(alice.ID, 10)+"/block", adminSecret, nil), http.StatusCreated)
	if body := e.do(t, "GET", "/alice.keys", "", nil).Body; len(body) != 0 {
		t.Errorf("blocked user's keys served: %q", body)
	}
}

// TestGitHubShapes: the v3 entry point, /user, and errors as GitHub words
// them (octokit and go-github print the message).
func TestGitHubShapes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, token := e.newUser(t, "alice")
	ro := e.newToken(t, alice.ID, nil, "read_api")
	gh := func(method, path, tok string, body any) response {
		t.Helper()
		hdr := http.Header{}
		if tok != "" {
			hdr.Set("Authorization", "token "+tok)
		}
		var rd *strings.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = strings.NewReader(string(b))
			hdr.Set("Content-Type", "application/json")
			return e.raw(t, method, path, hdr, rd)
		}
		return e.raw(t, method, path, hdr, nil)
	}
	msg := func(r response) string {
		var m map[string]any
		json.Unmarshal(r.Body, &m)
		if m["documentation_url"] == nil {
			t.Errorf("%s: no documentation_url", r.Body)
		}
		s, _ := m["message"].(string)
		return s
	}
	for _, path := range []string{"/api/v3/", "/api/v3"} {
		r := gh("GET", path, token, nil)
		expect(t, "GET "+path, r, http.StatusOK)
		if s := r.Header.Get("X-OAuth-Scopes"); !strings.Contains(s, "admin:public_key") || !strings.Contains(s, "repo") {
			t.Errorf("GET %s X-OAuth-Scopes = %q", path, s)
		}
	}
	if s := gh("GET", "/api/v3/", ro, nil).Header.Get("X-OAuth-Scopes"); strings.Contains(s, "admin:") || !strings.Contains(s, "read:public_key") {
		t.Errorf("read_api token X-OAuth-Scopes = %q", s)
	}
	r := gh("GET", "/api/v3/user", token, nil)
	expect(t, "GET /user", r, http.StatusOK)
	if o := r.Object(t); o["login"] != "alice" || o["type"] != "User" {
		t.Errorf("GET /api/v3/user = %s", r.Body)
	}
	if r := gh("GET", "/api/v3/user", "kgp-not-a-token", nil); r.Code != 401 || msg(r) != "Bad credentials" {
		t.Errorf("bad token: %d %s", r.Code, r.Body)
	}
	if r := gh("GET", "/api/v3/user", "", nil); r.Code != 401 || msg(r) != "Requires authentication" {
		t.Errorf("no token: %d %s", r.Code, r.Body)
	}
	if r := gh("GET", "/api/v3/no/such/route", token, nil); r.Code != 404 || msg(r) != "Not Found" {
		t.Errorf("unknown route: %d %s", r.Code, r.Body)
	}
	line, _ := newKey(t, "")
	r = gh("POST", "/api/v3/user/keys", ro, map[string]any{"title": "k", "key": line})
	if r.Code != 403 || !strings.Contains(msg(r), "read_api") {
		t.Errorf("read_api write: %d %s", r.Code, r.Body)
	}
	if n := len(gh("GET", "/api/v3/user/keys", token, nil).List(t)); n != 0 {
		t.Errorf("the refused write added a key (%d keys)", n)
	}
}

// TestEffectiveMembersAndDescendants: members/all includes inherited
// members at their highest level; descendant_groups goes to any depth.
func TestEffectiveMembersAndDescendants(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, ownerTok := e.newUser(t, "olga")
	dev, _ := e.newUser(t, "dmitri")
	sub, _ := e.newUser(t, "sasha")
	outsider, outsiderTok := e.newUser(t, "xenia")
	mk := func(body map[string]any) int64 {
		r := e.do(t, "POST", "/api/v4/groups", ownerTok, body)
		expect(t, "create group", r, http.StatusCreated)
		return int64(r.Object(t)["id"].(float64))
	}
	top := mk(map[string]any{"name": "top", "path": "top"})
	mid := mk(map[string]any{"name": "mid", "path": "mid", "parent_id": top})
	leaf := mk(map[string]any{"name": "leaf", "path": "leaf", "parent_id": mid})
	mk(map[string]any{"name": "topx", "path": "topx"}) // shares a path prefix, is no descendant
	id := func(n int64) string { return strconv.FormatInt(n, 10) }
	expect(t, "add dev", e.do(t, "POST", "/api/v4/groups/"+id(top)+"/members", ownerTok, map[string]any{"user_id": dev.ID, "access_level": 30}), http.StatusCreated)
	expect(t, "add dev higher", e.do(t, "POST", "/api/v4/groups/"+id(leaf)+"/members", ownerTok, map[string]any{"user_id": dev.ID, "access_level": 40}), http.StatusCreated)
	expect(t, "add sub", e.do(t, "POST", "/api/v4/groups/"+id(mid)+"/members", ownerTok, map[string]any{"user_id": sub.ID, "access_level": 10}), http.StatusCreated)

	levels := func(path string) map[string]float64 {
		r := e.do(t, "GET", path, ownerTok, nil)
		expect(t, path, r, http.StatusOK)
		out := map[string]float64{}
		for _, m := range r.List(t) {
			out[m["username"].(string)] = m["access_level"].(float64)
		}
		return out
	}
	if got := levels("/api/v4/groups/" + id(leaf) + "/members"); len(got) != 1 || got["dmitri"] != 40 {
		t.Errorf("leaf direct members = %v, want only dmitri at 40", got)
	}
	got := levels("/api/v4/groups/" + id(leaf) + "/members/all")
	if len(got) != 3 || got["olga"] != 50 || got["dmitri"] != 40 || got["sasha"] != 10 {
		t.Errorf("leaf members/all = %v, want olga 50, dmitri 40 (highest), sasha 10", got)
	}
	if got := levels("/api/v4/groups/" + id(mid) + "/members/all?query=dmi"); len(got) != 1 || got["dmitri"] != 30 {
		t.Errorf("mid members/all?query=dmi = %v, want dmitri at 30 (leaf is below mid)", got)
	}
	r := e.do(t, "GET", "/api/v4/groups/"+id(leaf)+"/members/all/"+id(sub.ID), ownerTok, nil)
	expect(t, "members/all/:id", r, http.StatusOK)
	if r.Object(t)["access_level"].(float64) != 10 {
		t.Errorf("members/all/sasha = %s", r.Body)
	}
	expect(t, "direct member that is inherited", e.do(t, "GET", "/api/v4/groups/"+id(leaf)+"/members/"+id(sub.ID), ownerTok, nil), http.StatusNotFound)
	expect(t, "members/all of a non-member", e.do(t, "GET", "/api/v4/groups/"+id(leaf)+"/members/all/"+id(outsider.ID), ownerTok, nil), http.StatusNotFound)
	expect(t, "outsider", e.do(t, "GET", "/api/v4/groups/"+id(leaf)+"/members/all", outsiderTok, nil), http.StatusNotFound)
	// top's effective members are its direct ones (olga, dmitri), counted once.
	if r := e.do(t, "GET", "/api/v4/groups/"+id(top)+"/members/all?per_page=1", ownerTok, nil); r.Header.Get("X-Total") != "2" || len(r.List(t)) != 1 {
		t.Errorf("top members/all: X-Total %s, %d items; want 2 and 1", r.Header.Get("X-Total"), len(r.List(t)))
	}

	names := func(path string) []string {
		r := e.do(t, "GET", path, ownerTok, nil)
		expect(t, path, r, http.StatusOK)
		var out []string
		for _, g := range r.List(t) {
			out = append(out, g["full_path"].(string))
		}
		return out
	}
	if got := names("/api/v4/groups/" + id(top) + "/descendant_groups"); strings.Join(got, " ") != "top/mid top/mid/leaf" {
		t.Errorf("descendant_groups of top = %v", got)
	}
	if got := names("/api/v4/groups/" + id(top) + "/subgroups"); strings.Join(got, " ") != "top/mid" {
		t.Errorf("subgroups of top = %v", got)
	}
	if got := names("/api/v4/groups/" + id(top) + "/descendant_groups?search=leaf"); strings.Join(got, " ") != "top/mid/leaf" {
		t.Errorf("descendant_groups?search=leaf = %v", got)
	}
}

// TestProjectsAndMetadata: GET /projects lists what the caller can see,
// projects carry default_branch, a missing namespace_id is a clear 400.
func TestProjectsAndMetadata(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, aliceTok := e.newUser(t, "alice")
	_, bobTok := e.newUser(t, "bob")
	mkGroup := func(tok, path string) int64 {
		r := e.do(t, "POST", "/api/v4/groups", tok, map[string]any{"name": path, "path": path})
		expect(t, "create group "+path, r, http.StatusCreated)
		return int64(r.Object(t)["id"].(float64))
	}
	ga, gb := mkGroup(aliceTok, "ga"), mkGroup(bobTok, "gb")
	for _, p := range []struct {
		tok  string
		ns   int64
		name string
	}{{aliceTok, ga, "tools"}, {aliceTok, ga, "site"}, {bobTok, gb, "secret-tools"}} {
		r := e.do(t, "POST", "/api/v4/projects", p.tok, map[string]any{"namespace_id": p.ns, "name": p.name})
		expect(t, "create project "+p.name, r, http.StatusCreated)
		if r.Object(t)["default_branch"] != "main" {
			t.Errorf("project %s: default_branch %v", p.name, r.Object(t)["default_branch"])
		}
	}
	list := func(tok, query string) []string {
		r := e.do(t, "GET", "/api/v4/projects"+query, tok, nil)
		expect(t, "GET /projects"+query, r, http.StatusOK)
		var out []string
		for _, p := range r.List(t) {
			out = append(out, p["path_with_namespace"].(string))
		}
		return out
	}
	if got := strings.Join(list(aliceTok, ""), " "); got != "ga/tools ga/site" {
		t.Errorf("alice's /projects = %q", got)
	}
	if got := strings.Join(list(aliceTok, "?search=tools"), " "); got != "ga/tools" {
		t.Errorf("alice's /projects?search=tools = %q", got)
	}
	if got := strings.Join(list(adminSecret, ""), " "); got != "ga/tools ga/site gb/secret-tools" {
		t.Errorf("admin's /projects = %q", got)
	}
	if got := list(adminSecret, "?membership=true"); len(got) != 0 {
		t.Errorf("admin's /projects?membership=true = %q", got)
	}
	expect(t, "add alice as guest", e.do(t, "POST", "/api/v4/groups/"+strconv.FormatInt(gb, 10)+"/members", bobTok, map[string]any{"user_id": alice.ID, "access_level": 10}), http.StatusCreated)
	if got := strings.Join(list(aliceTok, "?owned=true"), " "); got != "ga/tools ga/site" {
		t.Errorf("alice's owned projects = %q", got)
	}
	if got := strings.Join(list(aliceTok, "?min_access_level=10"), " "); got != "ga/tools ga/site gb/secret-tools" {
		t.Errorf("alice's min_access_level=10 projects = %q", got)
	}
	for _, q := range []string{"?owned=maybe", "?archived=true", "?order_by=name", "?min_access_level=7"} {
		expect(t, "GET /projects"+q, e.do(t, "GET", "/api/v4/projects"+q, aliceTok, nil), http.StatusBadRequest)
	}
	r := e.do(t, "POST", "/api/v4/projects", aliceTok, map[string]any{"name": "nowhere"})
	expect(t, "project without namespace", r, http.StatusBadRequest)
	if !strings.Contains(string(r.Body), "namespace_id") || !strings.Contains(string(r.Body), "personal namespaces") {
		t.Errorf("project without namespace: %s", r.Body)
	}
	// An empty namespace_id is as missing (it once reached a nil pointer).
	for _, body := range []any{map[string]any{"name": "nowhere", "namespace_id": ""}, map[string]any{"name": "nowhere", "namespace_id": nil}} {
		r = e.do(t, "POST", "/api/v4/projects", aliceTok, body)
		expect(t, "project with an empty namespace_id", r, http.StatusBadRequest)
	}
	r = e.raw(t, "POST", "/api/v4/projects?namespace_id=&name=nowhere", http.Header{"Private-Token": {aliceTok}}, nil)
	expect(t, "project with namespace_id= in the query", r, http.StatusBadRequest)
	r = e.do(t, "GET", "/api/v4/metadata", aliceTok, nil)
	expect(t, "metadata", r, http.StatusOK)
	if o := r.Object(t); o["version"] != "test" || o["kas"] == nil {
		t.Errorf("metadata = %s", r.Body)
	}
	expect(t, "anonymous metadata", e.do(t, "GET", "/api/v4/metadata", "", nil), http.StatusUnauthorized)
}

// TestGraphQLViewer: POST /api/graphql answers { viewer { login } } and
// nothing else.
func TestGraphQLViewer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, token := e.newUser(t, "alice")
	q := func(tok, query string) response {
		t.Helper()
		b, _ := json.Marshal(map[string]string{"query": query})
		hdr := http.Header{"Content-Type": {"application/json"}}
		if tok != "" {
			hdr.Set("Authorization", "bearer "+tok)
		}
		return e.raw(t, "POST", "/api/graphql", hdr, strings.NewReader(string(b)))
	}
	r := q(token, "query UserCurrent{viewer{login}}")
	expectBody(t, "viewer login", r, http.StatusOK, `{"data":{"viewer":{"login":"alice"}}}`)
	r = q(token, "{ viewer { login, databaseId } }")
	expectBody(t, "viewer login databaseId", r, http.StatusOK, `{"data":{"viewer":{"login":"alice","databaseId":`+strconv.FormatInt(alice.ID, 10)+`}}}`)
	for _, bad := range []string{"{ viewer { email } }", "{ repository(owner:\"a\", name:\"b\") { id } }", "mutation { x }"} {
		r := q(token, bad)
		if r.Code != 200 || !strings.Contains(string(r.Body), `"errors"`) || strings.Contains(string(r.Body), `"data"`) {
			t.Errorf("%s: %d %s; want a GraphQL error", bad, r.Code, r.Body)
		}
	}
	if r := q("", "{viewer{login}}"); r.Code != http.StatusUnauthorized {
		t.Errorf("anonymous graphql: %d", r.Code)
	}
}
