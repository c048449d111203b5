package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-github/v75/github"
)

// TestGoGitHubClient drives /api/v3 with the go-github client configured
// for an enterprise host (WithEnterpriseURLs) over real TLS: keys, signing
// keys, repository deploy keys, pagination and GitHub-shaped errors.
func TestGoGitHubClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, token := e.newUser(t, "alice")
	r := e.do(t, "POST", "/api/v4/groups", token, map[string]any{"name": "eng", "path": "eng"})
	expect(t, "group", r, http.StatusCreated)
	gid := int64(r.Object(t)["id"].(float64))
	expect(t, "project", e.do(t, "POST", "/api/v4/projects", token, map[string]any{"name": "site", "namespace_id": gid}), http.StatusCreated)

	tls := httptest.NewTLSServer(e.api)
	t.Cleanup(tls.Close)
	newClient := func(tok string) *github.Client {
		c, err := github.NewClient(tls.Client()).WithAuthToken(tok).WithEnterpriseURLs(tls.URL+"/api/v3/", tls.URL+"/api/uploads/")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	gh := newClient(token)
	ctx := context.Background()

	me, resp, err := gh.Users.Get(ctx, "")
	if err != nil || me.GetLogin() != "alice" || me.GetID() != alice.ID {
		t.Fatalf("Users.Get: %v %v", me, err)
	}
	if !strings.Contains(resp.Header.Get("X-OAuth-Scopes"), "admin:public_key") {
		t.Errorf("X-OAuth-Scopes %q", resp.Header.Get("X-OAuth-Scopes"))
	}
	var ids []int64
	for i := 0; i < 5; i++ {
		line, _ := newKey(t, "")
		k, _, err := gh.Users.CreateKey(ctx, &github.Key{Title: github.Ptr("k" + strconv.Itoa(i)), Key: github.Ptr(line)})
		if err != nil {
			t.Fatalf("Users.CreateKey: %v", err)
		}
		if !strings.HasPrefix(k.GetURL(), tls.URL+"/api/v3/user/keys/") {
			t.Errorf("key url %q", k.GetURL())
		}
		ids = append(ids, k.GetID())
	}
	// Follow NextPage as go-github's users do.
	var all []*github.Key
	opt := &github.ListOptions{PerPage: 2}
	for {
		page, resp, err := gh.Users.ListKeys(ctx, "", opt)
		if err != nil {
			t.Fatalf("Users.ListKeys: %v", err)
		}
		all = append(all, page...)
		if resp.NextPage == 0 {
			break
		}
		opt.Page = resp.NextPage
	}
	if len(all) != 5 {
		t.Errorf("ListKeys over pages: %d keys, want 5", len(all))
	}
	if pub, _, err := gh.Users.ListKeys(ctx, "alice", nil); err != nil || len(pub) != 5 {
		t.Errorf("ListKeys(alice): %d, %v", len(pub), err)
	}
	if k, _, err := gh.Users.GetKey(ctx, ids[0]); err != nil || k.GetTitle() != "k0" {
		t.Errorf("GetKey: %v %v", k, err)
	}
	if _, err := gh.Users.DeleteKey(ctx, ids[0]); err != nil {
		t.Fatalf("DeleteKey: %v", err)
	}
	_, _, err = gh.Users.GetKey(ctx, ids[0])
	var er *github.ErrorResponse
	if !errors.As(err, &er) || er.Response.StatusCode != 404 || er.Message != "Not Found" {
		t.Errorf("GetKey of a deleted key: %v", err)
	}

	line, _ := newKey(t, "")
	sk, _, err := gh.Users.CreateSSHSigningKey(ctx, &github.Key{Title: github.Ptr("sign"), Key: github.Ptr(line)})
	if err != nil {
		t.Fatalf("CreateSSHSigningKey: %v", err)
	}
	if sks, _, err := gh.Users.ListSSHSigningKeys(ctx, "", nil); err != nil || len(sks) != 1 || sks[0].GetID() != sk.GetID() {
		t.Errorf("ListSSHSigningKeys: %v %v", sks, err)
	}
	if _, err := gh.Users.DeleteSSHSigningKey(ctx, sk.GetID()); err != nil {
		t.Errorf("DeleteSSHSigningKey: %v", err)
	}

	line, _ = newKey(t, "")
	dk, _, err := gh.Repositories.CreateKey(ctx, "eng", "site", &github.Key{Title: github.Ptr("ci"), Key: github.Ptr(line), ReadOnly: github.Ptr(true)})
	if err != nil || !dk.GetReadOnly() {
		t.Fatalf("Repositories.CreateKey: %v %v", dk, err)
	}
	if dks, _, err := gh.Repositories.ListKeys(ctx, "eng", "site", nil); err != nil || len(dks) != 1 {
		t.Errorf("Repositories.ListKeys: %v %v", dks, err)
	}
	if _, err := gh.Repositories.DeleteKey(ctx, "eng", "site", dk.GetID()); err != nil {
		t.Errorf("Repositories.DeleteKey: %v", err)
	}

	// Errors: a wrong token, a read-only token's write, a bad key.
	_, _, err = newClient("kgpat-wrong").Users.Get(ctx, "")
	if !errors.As(err, &er) || er.Response.StatusCode != 401 || er.Message != "Bad credentials" {
		t.Errorf("wrong token: %v", err)
	}
	ro := e.newToken(t, alice.ID, nil, "read_api")
	line, _ = newKey(t, "")
	_, _, err = newClient(ro).Users.CreateKey(ctx, &github.Key{Title: github.Ptr("x"), Key: github.Ptr(line)})
	if !errors.As(err, &er) || er.Response.StatusCode != 403 || !strings.Contains(er.Message, "read_api") {
		t.Errorf("read_api write: %v", err)
	}
	_, _, err = gh.Users.CreateKey(ctx, &github.Key{Title: github.Ptr("bad"), Key: github.Ptr("ssh-ed25519 not-base64")})
	if !errors.As(err, &er) || er.Response.StatusCode != 422 || er.Message != "Validation Failed" || len(er.Errors) == 0 {
		t.Errorf("bad key: %v", err)
	}
}
