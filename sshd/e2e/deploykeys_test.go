package e2e

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// addDeployKey adds a deploy key to a project or group (where: "projects/ID"
// or "groups/ID") as admin and returns its id.
func (e *env) addDeployKey(t *testing.T, where, title, pub string, canPush bool) int64 {
	t.Helper()
	push := "false"
	if canPush {
		push = "true"
	}
	var k idJSON
	e.mustAPI(t, http.MethodPost, "/"+where+"/deploy_keys", e.adminToken,
		url.Values{"title": {title}, "key": {pub}, "can_push": {push}}, http.StatusCreated, &k)
	return k.ID
}

// pushCommit commits a file in a fresh clone of url and pushes it; it
// returns git push's exit status and stderr.
func (e *env) pushCommit(t *testing.T, key, cloneURL string) (int, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "w")
	if _, stderr, code := e.git(t, "", []string{key}, "clone", "--quiet", cloneURL, dir); code != 0 {
		t.Fatalf("clone %s: %s", cloneURL, stderr)
	}
	if err := os.WriteFile(filepath.Join(dir, "ci.txt"), []byte(time.Now().String()), 0o644); err != nil {
		t.Fatal(err)
	}
	e.mustGit(t, dir, nil, "add", "ci.txt")
	e.mustGit(t, dir, nil, "commit", "--quiet", "-m", "from CI")
	_, stderr, code := e.git(t, dir, []string{key}, "push", "--quiet", "origin", "HEAD:main")
	return code, stderr
}

// TestDeployKeysOverSSH: real git over real ssh with deploy keys: a
// project key clones, pushes only with can_push and greets by title; a
// group key reaches a subgroup's project made after it was enabled, not
// another group's; enforce_ssh_certificates does not lock it out; it logs
// in only as git; disabling it cuts an open fetch.
func TestDeployKeysOverSSH(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, ownerTok := e.createUser(t, "owner")
	eng := e.createGroup(t, "eng", ownerTok)
	ops := e.createGroup(t, "ops", ownerTok)
	api := e.createProject(t, eng, "api")
	e.seedRepo(t, "eng/api")
	e.createProject(t, ops, "infra")
	e.seedRepo(t, "ops/infra")

	roKey, roPub := e.sshKeygen(t, "ed25519", 0)
	e.addDeployKey(t, "projects/"+itoa(api), "ci-runner", roPub, false)
	if stdout, stderr, code := e.ssh(t, []string{roKey}, "git"); code != 0 || stdout != "Welcome to keygate, deploy key \"ci-runner\"!\n" {
		t.Fatalf("greeting: %q %d %s", stdout, code, stderr)
	}
	if _, stderr, code := e.ssh(t, []string{roKey}, "owner"); code != 255 || !strings.Contains(stderr, `deploy key "ci-runner" logs in only as git@`) {
		t.Fatalf("deploy key as another login: exit %d %s", code, stderr)
	}
	code, stderr := e.pushCommit(t, roKey, e.cloneURL("eng/api"))
	if code == 0 || !strings.Contains(stderr, "read-only for this project") {
		t.Fatalf("push with a read-only deploy key: exit %d %s", code, stderr)
	}
	if _, stderr, code := e.git(t, "", []string{roKey}, "clone", "--quiet", e.cloneURL("ops/infra"), filepath.Join(t.TempDir(), "x")); code == 0 ||
		!strings.Contains(stderr, "could not be found") {
		t.Fatalf("a project key on another project: exit %d %s", code, stderr)
	}

	rwKey, rwPub := e.sshKeygen(t, "ed25519", 0)
	e.addDeployKey(t, "projects/"+itoa(api), "deployer", rwPub, true)
	if code, stderr := e.pushCommit(t, rwKey, e.cloneURL("eng/api")); code != 0 {
		t.Fatalf("push with can_push: %s", stderr)
	}

	// A group key reaches the group's subgroups, even ones made later.
	grpKey, grpPub := e.sshKeygen(t, "ed25519", 0)
	e.addDeployKey(t, "groups/"+itoa(eng), "argo", grpPub, false)
	later := e.createSubgroup(t, eng, "later", ownerTok)
	svc := e.createProject(t, later, "svc")
	e.seedRepo(t, "eng/later/svc")
	if _, stderr, code := e.git(t, "", []string{grpKey}, "clone", "--quiet", e.cloneURL("eng/later/svc"), filepath.Join(t.TempDir(), "svc")); code != 0 {
		t.Fatalf("group key on a later subgroup's project: %s", stderr)
	}
	if _, stderr, code := e.git(t, "", []string{grpKey}, "clone", "--quiet", e.cloneURL("ops/infra"), filepath.Join(t.TempDir(), "y")); code == 0 ||
		!strings.Contains(stderr, "could not be found") {
		t.Fatalf("group key on another group's project: exit %d %s", code, stderr)
	}
	// enforce_ssh_certificates keeps people's plain keys out, not deploy keys.
	e.mustAPI(t, http.MethodPut, "/groups/"+itoa(eng), ownerTok, url.Values{"enforce_ssh_certificates": {"true"}}, http.StatusOK, nil)
	if _, stderr, code := e.git(t, "", []string{grpKey}, "clone", "--quiet", e.cloneURL("eng/api"), filepath.Join(t.TempDir(), "z")); code != 0 {
		t.Fatalf("deploy key under enforce_ssh_certificates: %s", stderr)
	}

	// Disabling the key on the project cuts an open fetch within seconds.
	cutKey, cutPub := e.sshKeygen(t, "ed25519", 0)
	cutID := e.addDeployKey(t, "projects/"+itoa(api), "cut", cutPub, false)
	if again := e.addDeployKey(t, "projects/"+itoa(svc), "cut-elsewhere", cutPub, false); again != cutID {
		t.Fatalf("the same key on a second project made key %d, want %d enabled there", again, cutID)
	} // enabled elsewhere too: disabling it on api keeps the key itself
	s := e.startSession(t, []string{cutKey}, "git", "git-upload-pack 'eng/api.git'")
	if !s.waitOutput(" refs/heads/main\n0000", 30*time.Second) {
		t.Fatalf("no ref advertisement; stderr %q", s.stderr.String())
	}
	e.mustAPI(t, http.MethodDelete, "/projects/"+itoa(api)+"/deploy_keys/"+itoa(cutID), e.adminToken, nil, http.StatusNoContent, nil)
	if !s.waitExit(10 * time.Second) {
		t.Fatal("an open fetch went on after its deploy key was disabled on the project")
	}

	// Audit: git operations and first use name the deploy key.
	if !waitFor(5*time.Second, func() bool {
		evs, _, err := e.store.ListAuditEvents(e.ctx, keystore.AuditFilter{}, keystore.Page{PerPage: 100})
		if err != nil {
			t.Fatal(err)
		}
		pull, first := false, false
		for _, ev := range evs {
			pull = pull || ev.Action == "git_pull" && strings.Contains(ev.Details, `"deploy_key_title":"argo"`)
			first = first || ev.Action == "deploy_key_first_used"
		}
		return pull && first
	}) {
		t.Fatal("no git_pull audit event naming the deploy key, or no deploy_key_first_used")
	}
}

// TestDeployKeyExpiredAndDeleted: an expired deploy key is refused with a
// banner; deleting one closes its open session.
func TestDeployKeyExpiredAndDeleted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, ownerTok := e.createUser(t, "owner")
	eng := e.createGroup(t, "eng", ownerTok)
	api := e.createProject(t, eng, "api")
	e.seedRepo(t, "eng/api")
	key, pub := e.sshKeygen(t, "ed25519", 0)
	var k idJSON
	e.mustAPI(t, http.MethodPost, "/projects/"+itoa(api)+"/deploy_keys", e.adminToken,
		url.Values{"title": {"nightly"}, "key": {pub}, "expires_at": {time.Now().Add(48 * time.Hour).UTC().Format("2006-01-02")}}, http.StatusCreated, &k)
	s := e.startSession(t, []string{key}, "git", "git-upload-pack 'eng/api.git'")
	if !s.waitOutput(" refs/heads/main\n0000", 30*time.Second) {
		t.Fatalf("no ref advertisement; stderr %q", s.stderr.String())
	}
	e.mustAPI(t, http.MethodDelete, "/projects/"+itoa(api)+"/deploy_keys/"+itoa(k.ID), e.adminToken, nil, http.StatusNoContent, nil)
	if !s.waitExit(10 * time.Second) {
		t.Fatal("the session of a deleted deploy key stayed open")
	}

	key2, pub2 := e.sshKeygen(t, "ed25519", 0)
	e.mustAPI(t, http.MethodPost, "/projects/"+itoa(api)+"/deploy_keys", e.adminToken,
		url.Values{"title": {"weekly"}, "key": {pub2}, "expires_at": {time.Now().Add(48 * time.Hour).UTC().Format("2006-01-02")}}, http.StatusCreated, nil)
	e.clock.Advance(72 * time.Hour)
	if _, stderr, code := e.ssh(t, []string{key2}, "git"); code != 255 || !strings.Contains(stderr, `deploy key "weekly"`) || !strings.Contains(stderr, "expired on") {
		t.Fatalf("expired deploy key: exit %d %s", code, stderr)
	}
}
