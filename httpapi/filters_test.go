package httpapi_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/keygate/keygate/keystore"
)

// TestGitLabBooleansAndFilters: booleans parse as GitLab's API does, and a
// documented filter is applied or refused, never silently ignored — a
// script deleting "all blocked users" must not get everyone.
func TestGitLabBooleansAndFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, aliceTok := e.newUser(t, "alice")
	bob, _ := e.newUser(t, "bob")
	if _, err := e.store.SetUserState(e.ctx, keystore.Actor{}, bob.ID, keystore.StateBlocked); err != nil {
		t.Fatal(err)
	}
	names := func(r response) string {
		var out []string
		for _, o := range r.List(t) {
			out = append(out, o["username"].(string))
		}
		return strings.Join(out, ",")
	}
	for _, v := range []string{"true", "True", "1", "t", "yes"} {
		r := e.do(t, http.MethodGet, "/api/v4/users?blocked="+v, adminSecret, nil)
		expect(t, "blocked="+v, r, http.StatusOK)
		if got := names(r); got != "bob" {
			t.Errorf("blocked=%s listed %q, want bob only", v, got)
		}
	}
	for _, v := range []string{"false", "False", "0", "f", "no"} {
		r := e.do(t, http.MethodGet, "/api/v4/users?blocked="+v, adminSecret, nil)
		if got := names(r); !strings.Contains(got, "bob") || !strings.Contains(got, "alice") {
			t.Errorf("blocked=%s listed %q, want everyone", v, got)
		}
	}
	if got := names(e.do(t, http.MethodGet, "/api/v4/users?active=yes", adminSecret, nil)); strings.Contains(got, "bob") {
		t.Errorf("active=yes listed the blocked user: %q", got)
	}
	for _, q := range []string{"blocked=maybe", "active=2", "external=true", "two_factor=enabled", "order_by=username", "sort=desc"} {
		r := e.do(t, http.MethodGet, "/api/v4/users?"+q, adminSecret, nil)
		if r.Code != http.StatusBadRequest {
			t.Errorf("users?%s: %d %s, want 400", q, r.Code, r.Body)
		}
	}
	// The Go client's own booleans.
	c := newGitLabClient(t, e, adminSecret)
	us, _, err := c.Users.ListUsers(&gitlab.ListUsersOptions{Blocked: gitlab.Ptr(true)})
	if err != nil || len(us) != 1 || us[0].Username != "bob" {
		t.Fatalf("client-go Blocked=true: %v, %v", us, err)
	}

	// Groups: top_level_only, owned, min_access_level.
	top := e.do(t, http.MethodPost, "/api/v4/groups", aliceTok, map[string]any{"name": "top", "path": "top"})
	expect(t, "top", top, http.StatusCreated)
	tid := top.Object(t)["id"]
	expect(t, "sub", e.do(t, http.MethodPost, "/api/v4/groups", aliceTok, map[string]any{"name": "sub", "path": "sub", "parent_id": tid}), http.StatusCreated)
	other := e.do(t, http.MethodPost, "/api/v4/groups", adminSecret, map[string]any{"name": "other", "path": "other"})
	expect(t, "other", other, http.StatusCreated)
	if _, err := e.store.AddMember(e.ctx, keystore.Actor{}, int64(other.Object(t)["id"].(float64)), alice.ID, keystore.Reporter); err != nil {
		t.Fatal(err)
	}
	paths := func(r response) string {
		var out []string
		for _, o := range r.List(t) {
			out = append(out, o["full_path"].(string))
		}
		return strings.Join(out, ",")
	}
	for q, want := range map[string]string{
		"top_level_only=True":  "other,top",
		"top_level_only=false": "other,top,top/sub",
		"owned=true":           "top,top/sub",
		"min_access_level=40":  "top,top/sub",
		"min_access_level=20":  "other,top,top/sub",
		"search=su":            "top/sub",
	} {
		r := e.do(t, http.MethodGet, "/api/v4/groups?"+q, aliceTok, nil)
		expect(t, "groups?"+q, r, http.StatusOK)
		if got := paths(r); got != want {
			t.Errorf("groups?%s = %q, want %q", q, got, want)
		}
	}
	for _, q := range []string{"min_access_level=35", "owned=sure", "statistics=true", "order_by=id", "sort=desc"} {
		if r := e.do(t, http.MethodGet, "/api/v4/groups?"+q, aliceTok, nil); r.Code != http.StatusBadRequest {
			t.Errorf("groups?%s: %d, want 400", q, r.Code)
		}
	}

	// Members: query and user_ids[].
	base := "/api/v4/groups/top/members"
	expect(t, "add bob", e.do(t, http.MethodPost, base, aliceTok, map[string]any{"user_id": bob.ID, "access_level": 30}), http.StatusCreated)
	if got := names(e.do(t, http.MethodGet, base+"?query=zzz", aliceTok, nil)); got != "" {
		t.Errorf("members?query=zzz = %q, want nobody", got)
	}
	if got := names(e.do(t, http.MethodGet, base+"?query=BO", aliceTok, nil)); got != "bob" {
		t.Errorf("members?query=BO = %q, want bob", got)
	}
	q := url.Values{"user_ids[]": {itoa(alice.ID)}}
	if got := names(e.do(t, http.MethodGet, base+"?"+q.Encode(), aliceTok, nil)); got != "alice" {
		t.Errorf("members?user_ids[]=alice = %q", got)
	}
	if r := e.do(t, http.MethodGet, base+"?user_ids[]=x", aliceTok, nil); r.Code != http.StatusBadRequest {
		t.Errorf("user_ids[]=x: %d", r.Code)
	}
}

// TestKeyByUnencodedFingerprint: GET /keys?fingerprint= finds the key
// when the fingerprint's "+" was sent unencoded (it arrives as a space).
func TestKeyByUnencodedFingerprint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u, _ := e.newUser(t, "alice")
	var fp string
	for i := 0; i < 200 && !strings.Contains(fp, "+"); i++ {
		line, _ := newKey(t, "")
		k, err := e.store.CreateKey(e.ctx, keystore.Actor{}, u.ID, keystore.KeyInput{Title: "k", Key: line})
		if err != nil {
			t.Fatal(err)
		}
		fp = k.FingerprintSHA256
	}
	if !strings.Contains(fp, "+") {
		t.Skip("no fingerprint with a + in 200 keys")
	}
	r := e.raw(t, http.MethodGet, "/api/v4/keys?fingerprint="+fp, http.Header{"Private-Token": {adminSecret}}, nil)
	expect(t, "unencoded fingerprint", r, http.StatusOK)
	if got := r.Object(t)["user"].(map[string]any)["username"]; got != "alice" {
		t.Fatalf("found %v", got)
	}
}
