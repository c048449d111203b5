package e2e

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// TestDeployKeysAnswerToTheirOwner: real git over real ssh with the
// project and group deploy keys a maintainer made over REST. Lowered to
// developer, the maintainer's keys clone but no longer push; removed from
// the group and blocked, they neither clone nor push, and an open fetch
// with one is cut; once an admin transfers them to the group's owner, they
// push again.
func TestDeployKeysAnswerToTheirOwner(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ownerID, ownerTok := e.createUser(t, "owner")
	aliceID, aliceTok := e.createUser(t, "alice")
	eng := e.createGroup(t, "eng", ownerTok)
	api := e.createProject(t, eng, "api")
	e.seedRepo(t, "eng/api")
	e.addMember(t, eng, aliceID, keystore.Maintainer)

	type deployKey struct {
		name, path string
		id         int64
		work       string // a clone made while the key could read
	}
	var keys []*deployKey
	for _, where := range []string{"projects/" + itoa(api), "groups/" + itoa(eng)} {
		path, pub := e.sshKeygen(t, "ed25519", 0)
		var k idJSON
		e.mustAPI(t, http.MethodPost, "/"+where+"/deploy_keys", aliceTok,
			url.Values{"title": {"alice's " + where}, "key": {pub}, "can_push": {"true"}}, http.StatusCreated, &k)
		keys = append(keys, &deployKey{name: where, path: path, id: k.ID})
	}
	push := func(k *deployKey) (int, string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(k.work, "ci.txt"), []byte(time.Now().String()), 0o644); err != nil {
			t.Fatal(err)
		}
		e.mustGit(t, k.work, nil, "add", "ci.txt")
		e.mustGit(t, k.work, nil, "commit", "--quiet", "-m", "from CI")
		_, stderr, code := e.git(t, k.work, []string{k.path}, "push", "--quiet", "origin", "HEAD:main")
		if code != 0 {
			e.mustGit(t, k.work, nil, "reset", "--quiet", "--hard", "HEAD~1")
		}
		return code, stderr
	}
	pull := func(k *deployKey) (int, string) {
		t.Helper()
		_, stderr, code := e.git(t, k.work, []string{k.path}, "pull", "--quiet", "--rebase", "origin", "main")
		return code, stderr
	}
	for _, k := range keys {
		k.work = filepath.Join(t.TempDir(), "w")
		if _, stderr, code := e.git(t, "", []string{k.path}, "clone", "--quiet", e.cloneURL("eng/api"), k.work); code != 0 {
			t.Fatalf("%s: clone while alice maintains eng: %s", k.name, stderr)
		}
		if code, stderr := push(k); code != 0 {
			t.Fatalf("%s: push while alice maintains eng: %s", k.name, stderr)
		}
	}

	// Lowered to developer: the keys read, and no longer push.
	e.mustAPI(t, http.MethodPut, "/groups/"+itoa(eng)+"/members/"+itoa(aliceID), ownerTok,
		url.Values{"access_level": {strconv.Itoa(keystore.Developer)}}, http.StatusOK, nil)
	for _, k := range keys {
		if code, stderr := pull(k); code != 0 {
			t.Fatalf("%s: fetch with alice a developer: %s", k.name, stderr)
		}
		if code, stderr := push(k); code == 0 || !strings.Contains(stderr, "read-only for this project") {
			t.Fatalf("%s: push with alice a developer: exit %d %s", k.name, code, stderr)
		}
	}

	// Removed from the group and blocked: nothing (the keys no longer log
	// in, and say why), and an open fetch with the project key ends.
	s := e.startSession(t, []string{keys[0].path}, "git", "git-upload-pack 'eng/api.git'")
	if !s.waitOutput(" refs/heads/main\n0000", 30*time.Second) {
		t.Fatalf("no ref advertisement; stderr %q", s.stderr.String())
	}
	e.mustAPI(t, http.MethodDelete, "/groups/"+itoa(eng)+"/members/"+itoa(aliceID), ownerTok, nil, http.StatusNoContent, nil)
	e.mustAPI(t, http.MethodPost, "/users/"+itoa(aliceID)+"/block", e.adminToken, nil, http.StatusCreated, nil)
	if !s.waitExit(10 * time.Second) {
		t.Fatal("an open fetch went on after the deploy key's owner was removed and blocked")
	}
	for _, k := range keys {
		if _, stderr, code := e.git(t, "", []string{k.path}, "clone", "--quiet", e.cloneURL("eng/api"), filepath.Join(t.TempDir(), "x")); code == 0 ||
			!strings.Contains(stderr, "answers to no active user") {
			t.Fatalf("%s: clone with alice removed and blocked: exit %d %s", k.name, code, stderr)
		}
		if code, stderr := push(k); code == 0 || !strings.Contains(stderr, "answers to no active user") {
			t.Fatalf("%s: push with alice removed and blocked: exit %d %s", k.name, code, stderr)
		}
	}

	// An admin transfers the keys to the group's owner: they push again.
	for _, k := range keys {
		e.mustAPI(t, http.MethodPut, "/deploy_keys/"+itoa(k.id), e.adminToken, url.Values{"user_id": {itoa(ownerID)}}, http.StatusOK, nil)
		if code, stderr := pull(k); code != 0 {
			t.Fatalf("%s: fetch after the transfer: %s", k.name, stderr)
		}
		if code, stderr := push(k); code != 0 {
			t.Fatalf("%s: push after the transfer: %s", k.name, stderr)
		}
	}
}
