package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// TestDeployKeyTitleBelongsToItsOwner: a maintainer who merely enabled a
// shared key (another maintainer's, or an instance key) on their project
// changes its can_push there but cannot rename it for every other project;
// the key's owner can, an admin can, and anyone may rename a key enabled
// only where they maintain it (GitLab's update_deploy_key_title).
func TestDeployKeyTitleBelongsToItsOwner(t *testing.T) {
	t.Parallel()
	w := newDeployWorld(t)
	e := w.e
	put := func(where string, id any, tok string, body map[string]any) response {
		return e.do(t, http.MethodPut, fmt.Sprintf("/api/v4/%s/deploy_keys/%v", where, id), tok, body)
	}
	api, web, tool := "projects/"+itoa(w.api.ID), "projects/"+itoa(w.web.ID), "projects/"+itoa(w.tool.ID)
	title := func(id any) string {
		t.Helper()
		r := e.do(t, http.MethodGet, fmt.Sprintf("/api/v4/deploy_keys/%v", id), adminSecret, nil)
		expect(t, "admin get", r, http.StatusOK)
		return r.Object(t)["title"].(string)
	}

	// maint's key, enabled by maint on api and on web.
	line, _ := newKey(t, "")
	r := e.do(t, http.MethodPost, "/api/v4/"+api+"/deploy_keys", w.maintTok, map[string]any{"title": "ci", "key": line, "can_push": true})
	expect(t, "maint adds a key", r, http.StatusCreated)
	id := int64(r.Object(t)["id"].(float64))
	expect(t, "maint enables it on web", e.do(t, http.MethodPost, fmt.Sprintf("/api/v4/%s/deploy_keys/%d/enable", web, id), w.maintTok, nil), http.StatusCreated)

	// The group's owner maintains web but does not own the key.
	r = put(web, id, w.ownerTok, map[string]any{"title": "owned-by-me"})
	expectBody(t, "rename someone else's shared key", r, http.StatusForbidden,
		`{"message":"403 Forbidden - title: a deploy key enabled elsewhere is renamed only by its owner or an admin"}`)
	if got := title(id); got != "ci" {
		t.Fatalf("title after a refused rename: %q", got)
	}
	r = put(web, id, w.ownerTok, map[string]any{"can_push": true, "title": "ci"}) // its own title: not a rename
	expect(t, "can_push on web, same title", r, http.StatusOK)
	if o := r.Object(t); o["can_push"] != true {
		t.Fatalf("can_push on web: %v", o)
	}
	expect(t, "the owner renames it", put(web, id, w.maintTok, map[string]any{"title": "ci-runner"}), http.StatusOK)
	expect(t, "an admin renames it", put(api, id, adminSecret, map[string]any{"title": "ci-runner-2"}), http.StatusOK)
	if got := title(id); got != "ci-runner-2" {
		t.Fatalf("title = %q", got)
	}

	// An instance key enabled by maint: can_push yes, title no.
	iline, _ := newKey(t, "")
	r = e.do(t, http.MethodPost, "/api/v4/deploy_keys", adminSecret, map[string]any{"title": "fleet", "key": iline})
	expect(t, "instance key", r, http.StatusCreated)
	iid := int64(r.Object(t)["id"].(float64))
	expect(t, "enable the instance key", e.do(t, http.MethodPost, fmt.Sprintf("/api/v4/%s/deploy_keys/%d/enable", tool, iid), w.maintTok, nil), http.StatusCreated)
	expect(t, "rename an instance key", put(tool, iid, w.maintTok, map[string]any{"title": "mine"}), http.StatusForbidden)
	expect(t, "can_push on an instance key", put(tool, iid, w.maintTok, map[string]any{"can_push": true}), http.StatusOK)
	if got := title(iid); got != "fleet" {
		t.Fatalf("instance key title = %q", got)
	}

	// A key enabled only on tool, made by someone else: renaming it
	// affects no one else.
	oline, _ := newKey(t, "")
	r = e.do(t, http.MethodPost, "/api/v4/"+tool+"/deploy_keys", w.ownerTok, map[string]any{"title": "solo", "key": oline})
	expect(t, "owner's key on tool", r, http.StatusCreated)
	oid := int64(r.Object(t)["id"].(float64))
	expect(t, "rename a key enabled only here", put(tool, oid, w.maintTok, map[string]any{"title": "solo-2"}), http.StatusOK)

	// The group route follows the same rule.
	gline, _ := newKey(t, "")
	r = e.do(t, http.MethodPost, "/api/v4/groups/"+itoa(w.team)+"/deploy_keys", w.maintTok, map[string]any{"title": "g", "key": gline})
	expect(t, "group key", r, http.StatusCreated)
	gid := int64(r.Object(t)["id"].(float64))
	expect(t, "enable on acme", e.do(t, http.MethodPost, fmt.Sprintf("/api/v4/groups/%d/deploy_keys/%d/enable", w.acme, gid), w.ownerTok, nil), http.StatusCreated)
	expect(t, "rename a shared group key", put("groups/"+itoa(w.acme), gid, w.ownerTok, map[string]any{"title": "x"}), http.StatusForbidden)
	expect(t, "its owner renames it", put("groups/"+itoa(w.acme), gid, w.maintTok, map[string]any{"title": "x"}), http.StatusOK)
}

// TestAdminsListAndTransferOrphanedDeployKeys: admins see each key's owner
// and owner_status, list the keys whose owner no longer answers for them
// (orphaned=true), and transfer a key to a user who answers for
// everything it does; no one else can, and bad input is a 4xx.
func TestAdminsListAndTransferOrphanedDeployKeys(t *testing.T) {
	t.Parallel()
	w := newDeployWorld(t)
	e := w.e
	maint, err := e.store.UserByUsername(e.ctx, "maint")
	if err != nil {
		t.Fatal(err)
	}
	owner, err := e.store.UserByUsername(e.ctx, "owner")
	if err != nil {
		t.Fatal(err)
	}
	add := func(where, tok, title string, push bool) int64 {
		t.Helper()
		line, _ := newKey(t, "")
		r := e.do(t, http.MethodPost, "/api/v4/"+where+"/deploy_keys", tok, map[string]any{"title": title, "key": line, "can_push": push})
		expect(t, "add "+title, r, http.StatusCreated)
		return int64(r.Object(t)["id"].(float64))
	}
	pk := add("projects/"+itoa(w.api.ID), w.maintTok, "project-key", true)
	add("groups/"+itoa(w.acme), w.maintTok, "group-key", false)
	add("projects/"+itoa(w.web.ID), w.ownerTok, "owners-key", true)

	listed := func(query string) map[string]string {
		t.Helper()
		r := e.do(t, http.MethodGet, "/api/v4/deploy_keys"+query, adminSecret, nil)
		expect(t, "list "+query, r, http.StatusOK)
		out := map[string]string{}
		for _, o := range r.List(t) {
			out[o["title"].(string)] = fmt.Sprintf("%v/%v", o["user_id"], o["owner_status"])
		}
		return out
	}
	m, o := fmt.Sprint(maint.ID), fmt.Sprint(owner.ID)
	if got, want := fmt.Sprint(listed("")), fmt.Sprint(map[string]string{"project-key": m + "/active", "group-key": m + "/active", "owners-key": o + "/active"}); got != want {
		t.Fatalf("deploy keys: %s, want %s", got, want)
	}
	if got := listed("?orphaned=true"); len(got) != 0 {
		t.Fatalf("orphaned before any change: %v", got)
	}

	// maint is lowered to developer: the push key is short somewhere (it
	// reads only); the read-only group key still has all it needs.
	expect(t, "lower maint", e.do(t, http.MethodPut, fmt.Sprintf("/api/v4/groups/%d/members/%d", w.acme, maint.ID), w.ownerTok, map[string]any{"access_level": keystore.Developer}), http.StatusOK)
	if got, want := fmt.Sprint(listed("?orphaned=true")), fmt.Sprint(map[string]string{"project-key": m + "/insufficient_access"}); got != want {
		t.Fatalf("orphaned after lowering: %s, want %s", got, want)
	}
	// Blocked: both of maint's keys answer to no one.
	expect(t, "block maint", e.do(t, http.MethodPost, fmt.Sprintf("/api/v4/users/%d/block", maint.ID), adminSecret, nil), http.StatusCreated)
	if got, want := fmt.Sprint(listed("?orphaned=true&per_page=1&page=2")), fmt.Sprint(map[string]string{"group-key": m + "/blocked"}); got != want {
		t.Fatalf("orphaned, page 2 of 1 each: %s, want %s", got, want)
	}
	r := e.do(t, http.MethodGet, "/api/v4/deploy_keys?orphaned=true&per_page=1", adminSecret, nil)
	if r.Header.Get("X-Total") != "2" {
		t.Fatalf("orphaned X-Total = %q, want 2", r.Header.Get("X-Total"))
	}

	// Transfers: admins only, to a user who answers for everything.
	path := fmt.Sprintf("/api/v4/deploy_keys/%d", pk)
	for _, tok := range []string{w.ownerTok, w.maintTok} {
		expect(t, "non-admin transfer", e.do(t, http.MethodPut, path, tok, map[string]any{"user_id": owner.ID}), http.StatusForbidden)
	}
	dev, err := e.store.UserByUsername(e.ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	expectBody(t, "transfer to a developer", e.do(t, http.MethodPut, path, adminSecret, map[string]any{"user_id": dev.ID}), http.StatusBadRequest,
		`{"message":{"user_id":["must be Maintainer or more wherever the key can push and Reporter or more wherever it reads; not in: acme/api"]}}`)
	expect(t, "transfer to a blocked user", e.do(t, http.MethodPut, path, adminSecret, map[string]any{"user_id": maint.ID}), http.StatusBadRequest)
	expect(t, "transfer to no one", e.do(t, http.MethodPut, path, adminSecret, map[string]any{"user_id": 1 << 40}), http.StatusNotFound)
	expect(t, "user_id not a number", e.do(t, http.MethodPut, path, adminSecret, map[string]any{"user_id": "alice"}), http.StatusBadRequest)
	expect(t, "nothing to change", e.do(t, http.MethodPut, path, adminSecret, map[string]any{}), http.StatusBadRequest)
	expect(t, "no such key", e.do(t, http.MethodPut, "/api/v4/deploy_keys/999999", adminSecret, map[string]any{"user_id": owner.ID}), http.StatusNotFound)
	expect(t, "bad key id", e.do(t, http.MethodPut, "/api/v4/deploy_keys/x", adminSecret, map[string]any{"user_id": owner.ID}), http.StatusNotFound)
	r = e.do(t, http.MethodPut, path, adminSecret, map[string]any{"user_id": owner.ID})
	expect(t, "transfer to the group's owner", r, http.StatusOK)
	if got := r.Object(t); got["user_id"] != float64(owner.ID) || got["owner_status"] != "active" {
		t.Fatalf("transferred key: %v", got)
	}
	r = e.do(t, http.MethodGet, "/api/v4/users/owner/project_deploy_keys", w.ownerTok, nil)
	expect(t, "the new owner's keys", r, http.StatusOK)
	if !strings.Contains(string(r.Body), `"project-key"`) {
		t.Fatalf("the new owner does not list the key: %s", r.Body)
	}
	if got, want := fmt.Sprint(listed("?orphaned=true")), fmt.Sprint(map[string]string{"group-key": m + "/blocked"}); got != want {
		t.Fatalf("orphaned after the transfer: %s, want %s", got, want)
	}
	// An instance key goes only to an admin.
	r = e.do(t, http.MethodPost, "/api/v4/deploy_keys", adminSecret, map[string]any{"title": "fleet", "key": func() string { l, _ := newKey(t, ""); return l }()})
	expect(t, "instance key", r, http.StatusCreated)
	expect(t, "instance key to a non-admin", e.do(t, http.MethodPut, fmt.Sprintf("/api/v4/deploy_keys/%v", r.Object(t)["id"]), adminSecret,
		map[string]any{"user_id": owner.ID}), http.StatusBadRequest)
}
