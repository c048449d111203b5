package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/keygate/keygate/keystore"
)

// deployWorld: owner owns group "acme" with projects api and web, a
// subgroup acme/team with project tool; maint is a maintainer of acme; dev
// a developer.
type deployWorld struct {
	e                          *env
	ownerTok, maintTok, devTok string
	acme, team                 int64
	api, web, tool             *keystore.Project
}

func newDeployWorld(t *testing.T) *deployWorld {
	t.Helper()
	e := newEnv(t)
	w := &deployWorld{e: e}
	owner, ownerTok := e.newUser(t, "owner")
	maint, maintTok := e.newUser(t, "maint")
	dev, devTok := e.newUser(t, "dev")
	w.ownerTok, w.maintTok, w.devTok = ownerTok, maintTok, devTok
	name, path := "acme", "acme"
	g, err := e.store.CreateGroup(e.ctx, keystore.Actor{}, keystore.GroupInput{Name: &name, Path: &path}, owner.ID)
	if err != nil {
		t.Fatal(err)
	}
	tn, tp := "team", "team"
	sub, err := e.store.CreateGroup(e.ctx, keystore.Actor{}, keystore.GroupInput{Name: &tn, Path: &tp, ParentID: &g.ID}, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.acme, w.team = g.ID, sub.ID
	for _, m := range []struct {
		id    int64
		level int
	}{{maint.ID, keystore.Maintainer}, {dev.ID, keystore.Developer}} {
		if _, err := e.store.AddMember(e.ctx, keystore.Actor{}, g.ID, m.id, m.level); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(gid int64, p string) *keystore.Project {
		pr, err := e.store.CreateProject(e.ctx, keystore.Actor{}, keystore.ProjectInput{GroupID: gid, Name: p, Path: p})
		if err != nil {
			t.Fatal(err)
		}
		return pr
	}
	w.api, w.web, w.tool = mk(g.ID, "api"), mk(g.ID, "web"), mk(sub.ID, "tool")
	return w
}

// TestGitLabClientDeployKeys drives client-go's DeployKeys service end to
// end: add, list (project and instance), get, update, enable on a second
// project, delete; and the refusals.
func TestGitLabClientDeployKeys(t *testing.T) {
	t.Parallel()
	w := newDeployWorld(t)
	e := w.e
	c := newGitLabClient(t, e, w.maintTok)
	line, _ := newKey(t, "ci@runner")

	k, resp, err := c.DeployKeys.AddDeployKey(w.api.ID, &gitlab.AddDeployKeyOptions{Title: gitlab.Ptr("ci-runner"), Key: gitlab.Ptr(line), CanPush: gitlab.Ptr(true)})
	expectStatus(t, "AddDeployKey", resp, err, http.StatusCreated)
	if k.Title != "ci-runner" || !k.CanPush || !strings.HasPrefix(k.FingerprintSHA256, "SHA256:") || k.Fingerprint == "" || k.CreatedAt == nil {
		t.Fatalf("added deploy key = %+v", k)
	}
	list, _, err := c.DeployKeys.ListProjectDeployKeys(w.api.ID, nil)
	if err != nil || len(list) != 1 || list[0].ID != k.ID {
		t.Fatalf("ListProjectDeployKeys = %v, %v", list, err)
	}
	got, _, err := c.DeployKeys.GetDeployKey(w.api.FullPath, k.ID)
	if err != nil || got.ID != k.ID || got.Key != k.Key {
		t.Fatalf("GetDeployKey by path = %+v, %v", got, err)
	}
	upd, _, err := c.DeployKeys.UpdateDeployKey(w.api.ID, k.ID, &gitlab.UpdateDeployKeyOptions{Title: gitlab.Ptr("ci"), CanPush: gitlab.Ptr(false)})
	if err != nil || upd.Title != "ci" || upd.CanPush {
		t.Fatalf("UpdateDeployKey = %+v, %v", upd, err)
	}
	en, resp, err := c.DeployKeys.EnableDeployKey(w.web.ID, k.ID)
	expectStatus(t, "EnableDeployKey", resp, err, http.StatusCreated)
	if en.ID != k.ID || en.CanPush {
		t.Fatalf("enabled = %+v (read-only on the second project)", en)
	}
	// The instance list (admin) shows where it reaches.
	admin := newGitLabClient(t, e, adminSecret)
	all, _, err := admin.DeployKeys.ListAllDeployKeys(nil)
	if err != nil || len(all) != 1 || len(all[0].ProjectsWithReadonlyAccess) != 2 || len(all[0].ProjectsWithWriteAccess) != 0 {
		t.Fatalf("ListAllDeployKeys = %+v, %v", all, err)
	}
	if _, resp, err := c.DeployKeys.ListAllDeployKeys(nil); resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a maintainer listed instance deploy keys: %v", err)
	}
	// An instance key, enabled by a maintainer.
	iline, _ := newKey(t, "")
	ik, resp, err := admin.DeployKeys.AddInstanceDeployKey(&gitlab.AddInstanceDeployKeyOptions{Title: gitlab.Ptr("argo"), Key: gitlab.Ptr(iline)})
	expectStatus(t, "AddInstanceDeployKey", resp, err, http.StatusCreated)
	if _, resp, err := c.DeployKeys.EnableDeployKey(w.api.ID, ik.ID); resp == nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("enable an instance key: %v", err)
	}
	pub, _, err := admin.DeployKeys.ListAllDeployKeys(&gitlab.ListInstanceDeployKeysOptions{Public: gitlab.Ptr(true)})
	if err != nil || len(pub) != 1 || pub[0].ID != ik.ID {
		t.Fatalf("public=true = %+v, %v", pub, err)
	}
	mine, _, err := c.DeployKeys.ListUserProjectDeployKeys("maint", nil)
	if err != nil || len(mine) != 1 || mine[0].ID != k.ID {
		t.Fatalf("ListUserProjectDeployKeys = %+v, %v", mine, err)
	}

	// Refusals.
	dev := newGitLabClient(t, e, w.devTok)
	other, _ := newKey(t, "")
	if _, resp, err := dev.DeployKeys.AddDeployKey(w.api.ID, &gitlab.AddDeployKeyOptions{Title: gitlab.Ptr("x"), Key: gitlab.Ptr(other)}); resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a developer added a deploy key: %v", err)
	}
	// A user key's fingerprint cannot be a deploy key, nor the reverse.
	u, _ := e.newUser(t, "person")
	personal, _ := newKey(t, "")
	if _, err := e.store.CreateKey(e.ctx, keystore.Actor{}, u.ID, keystore.KeyInput{Title: "p", Key: personal}); err != nil {
		t.Fatal(err)
	}
	r := e.do(t, http.MethodPost, "/api/v4/projects/"+itoa(w.api.ID)+"/deploy_keys", w.maintTok, map[string]any{"title": "dup", "key": personal})
	expectBody(t, "deploy key with a user key's fingerprint", r, http.StatusBadRequest, `{"message":{"fingerprint":["has already been taken"],"fingerprint_sha256":["has already been taken"],"key":["has already been taken"]}}`)
	r = e.do(t, http.MethodPost, "/api/v4/user/keys", w.maintTok, map[string]any{"title": "dup", "key": line})
	expect(t, "user key with a deploy key's fingerprint", r, http.StatusBadRequest)
	// Adding the same deploy key to another project the caller maintains
	// enables it there (GitLab); an outsider gets 400.
	r = e.do(t, http.MethodPost, "/api/v4/projects/"+itoa(w.tool.ID)+"/deploy_keys", w.maintTok, map[string]any{"title": "again", "key": line})
	expect(t, "the same deploy key on another project", r, http.StatusCreated)
	if got := r.Object(t)["id"]; got != float64(k.ID) {
		t.Fatalf("re-adding made a new key %v, want %d enabled", got, k.ID)
	}
	// A group key: only a group maintainer manages it; a project key route
	// does not see it.
	gline, _ := newKey(t, "")
	r = e.do(t, http.MethodPost, "/api/v4/groups/"+itoa(w.team)+"/deploy_keys", w.devTok, map[string]any{"title": "g", "key": gline})
	expect(t, "a developer adds a group deploy key", r, http.StatusForbidden)
	r = e.do(t, http.MethodPost, "/api/v4/groups/"+itoa(w.team)+"/deploy_keys", w.maintTok, map[string]any{"title": "g", "key": gline, "can_push": true})
	expect(t, "group deploy key", r, http.StatusCreated)
	gid := itoa(int64(r.Object(t)["id"].(float64)))
	expect(t, "group key through the project route", e.do(t, http.MethodGet, "/api/v4/projects/"+itoa(w.tool.ID)+"/deploy_keys/"+gid, w.maintTok, nil), http.StatusNotFound)
	expect(t, "group key on the parent group", e.do(t, http.MethodGet, "/api/v4/groups/"+itoa(w.acme)+"/deploy_keys/"+gid, w.maintTok, nil), http.StatusNotFound)
	expect(t, "group key", e.do(t, http.MethodGet, "/api/v4/groups/"+itoa(w.team)+"/deploy_keys/"+gid, w.maintTok, nil), http.StatusOK)

	// Delete: off this project; gone when enabled nowhere.
	resp, err = c.DeployKeys.DeleteDeployKey(w.api.ID, k.ID)
	expectStatus(t, "DeleteDeployKey", resp, err, http.StatusNoContent)
	if _, resp, _ := c.DeployKeys.GetDeployKey(w.api.ID, k.ID); resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatal("deleted deploy key still on the project")
	}
	for _, p := range []*keystore.Project{w.web, w.tool} {
		if _, err := c.DeployKeys.DeleteDeployKey(p.ID, k.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.store.DeployKey(e.ctx, k.ID); err == nil {
		t.Fatal("a deploy key enabled nowhere was kept")
	}
}

// TestGitHubRepoKeys: GitHub v3 /repos/:owner/:repo/keys on the same table.
func TestGitHubRepoKeys(t *testing.T) {
	t.Parallel()
	w := newDeployWorld(t)
	e := w.e
	line, _ := newKey(t, "")
	base := "/api/v3/repos/acme/api/keys"
	hdr := func(tok string) http.Header {
		return http.Header{"Authorization": {"token " + tok}, "Content-Type": {"application/json"}}
	}
	r := e.raw(t, http.MethodPost, base, hdr(w.maintTok), strings.NewReader(`{"title":"gh","key":"`+line+`","read_only":true}`))
	expect(t, "v3 add", r, http.StatusCreated)
	o := r.Object(t)
	if o["read_only"] != true || o["verified"] != true || !strings.Contains(o["url"].(string), "/api/v3/repos/acme/api/keys/") {
		t.Fatalf("v3 key = %v", o)
	}
	id := itoa(int64(o["id"].(float64)))
	if l := e.raw(t, http.MethodGet, base, hdr(w.maintTok), nil).List(t); len(l) != 1 {
		t.Fatalf("v3 list = %v", l)
	}
	// The same key seen through GitLab's route.
	expect(t, "v4 view", e.do(t, http.MethodGet, "/api/v4/projects/"+itoa(w.api.ID)+"/deploy_keys/"+id, w.maintTok, nil), http.StatusOK)
	// A nested owner is URL-encoded.
	expect(t, "nested owner", e.raw(t, http.MethodGet, "/api/v3/repos/acme%2Fteam/tool/keys", hdr(w.maintTok), nil), http.StatusOK)
	// A developer: 403; an outsider: 404; a bad key: 422.
	expect(t, "developer", e.raw(t, http.MethodGet, base, hdr(w.devTok), nil), http.StatusForbidden)
	_, outsider := e.newUser(t, "outsider")
	expect(t, "outsider", e.raw(t, http.MethodGet, base, hdr(outsider), nil), http.StatusNotFound)
	expect(t, "invalid key", e.raw(t, http.MethodPost, base, hdr(w.maintTok), strings.NewReader(`{"key":"ssh-rsa AAAA"}`)), http.StatusUnprocessableEntity)
	expect(t, "v3 delete", e.raw(t, http.MethodDelete, base+"/"+id, hdr(w.maintTok), nil), http.StatusNoContent)
	expect(t, "v3 gone", e.raw(t, http.MethodGet, base+"/"+id, hdr(w.maintTok), nil), http.StatusNotFound)
}

// TestAdminDeleteDeployKey: an admin reads and deletes any deploy key by id
// (GET/DELETE /deploy_keys/:id), an instance key included, wherever it is
// enabled; no one else can.
func TestAdminDeleteDeployKey(t *testing.T) {
	t.Parallel()
	w := newDeployWorld(t)
	e := w.e
	line, _ := newKey(t, "")
	r := e.do(t, http.MethodPost, "/api/v4/deploy_keys", adminSecret, map[string]any{"title": "fleet", "key": line})
	expect(t, "instance key", r, http.StatusCreated)
	id := itoa(int64(r.Object(t)["id"].(float64)))
	expect(t, "enable on api", e.do(t, http.MethodPost, "/api/v4/projects/"+itoa(w.api.ID)+"/deploy_keys/"+id+"/enable", w.maintTok, nil), http.StatusCreated)

	r = e.do(t, http.MethodGet, "/api/v4/deploy_keys/"+id, adminSecret, nil)
	expect(t, "admin get", r, http.StatusOK)
	if got := r.Object(t); got["title"] != "fleet" || !strings.Contains(string(r.Body), `"projects_with_readonly_access"`) {
		t.Fatalf("admin get: %s", r.Body)
	}
	for _, tok := range []string{w.ownerTok, w.maintTok} {
		expect(t, "non-admin get", e.do(t, http.MethodGet, "/api/v4/deploy_keys/"+id, tok, nil), http.StatusForbidden)
		expect(t, "non-admin delete", e.do(t, http.MethodDelete, "/api/v4/deploy_keys/"+id, tok, nil), http.StatusForbidden)
	}
	expect(t, "admin delete", e.do(t, http.MethodDelete, "/api/v4/deploy_keys/"+id, adminSecret, nil), http.StatusNoContent)
	expect(t, "deleted, on the project", e.do(t, http.MethodGet, "/api/v4/projects/"+itoa(w.api.ID)+"/deploy_keys/"+id, w.maintTok, nil), http.StatusNotFound)
	expect(t, "deleted, by id", e.do(t, http.MethodGet, "/api/v4/deploy_keys/"+id, adminSecret, nil), http.StatusNotFound)
	expect(t, "delete again", e.do(t, http.MethodDelete, "/api/v4/deploy_keys/"+id, adminSecret, nil), http.StatusNotFound)
	expect(t, "bad id", e.do(t, http.MethodDelete, "/api/v4/deploy_keys/x", adminSecret, nil), http.StatusNotFound)
	// The key is usable again, as a person's key.
	_, tok := e.newUser(t, "reuser")
	expect(t, "reuse the key", e.do(t, http.MethodPost, "/api/v4/user/keys", tok, map[string]any{"title": "mine", "key": line}), http.StatusCreated)
}
