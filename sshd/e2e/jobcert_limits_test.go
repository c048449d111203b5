package e2e

import (
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/oidcprovider"
	"github.com/keygate/keygate/sshd"
)

// TestCIJobCertificateLimitsE2E: CI job certificates with the real ssh, git
// and git-lfs.
//
// Per-principal caps: the CI jobs of one project are one principal, keyed
// by the project — a job of another project is not held up by them (job
// certificates name no keygate user: keyed by user id, every project's jobs
// would share the budget of "user 0"), while a second job of the same
// project is refused at the cap, the message naming the project's jobs.
//
// LFS locks: a lock belongs to a person; a job's certificate is refused
// like a deploy key, with a message, not an internal error.
func TestCIJobCertificateLimitsE2E(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, func(c *sshd.Config) { c.MaxGitProcessesPerPrincipal = 1 })
	_, ownerTok := e.createUser(t, "owner")
	eng := e.createGroup(t, "eng", ownerTok)
	e.mustAPI(t, http.MethodPost, "/groups/"+itoa(eng)+"/ssh_certificates", ownerTok,
		url.Values{"title": {"eng managed"}, "generate": {"true"}}, http.StatusCreated, nil)
	api := e.createProject(t, eng, "api")
	e.seedRepo(t, "eng/api")
	e.createProject(t, eng, "web")
	e.seedRepo(t, "eng/web")
	ci := oidcprovider.Start(t.Cleanup)
	e.mustAPI(t, http.MethodPost, "/admin/oidc_issuers", e.adminToken, url.Values{"issuer": {ci.Issuer}}, http.StatusCreated, nil)
	// jobCert gets a write certificate for a job of project (eng/NAME).
	jobCert := func(name, jobID string) string {
		t.Helper()
		key, pub := e.sshKeygen(t, "ed25519", 0)
		tok := ci.Sign(map[string]any{"sub": "project_path:eng/" + name + ":ref_type:branch:ref:main", "aud": "keygate-ci",
			"project_path": "eng/" + name, "ref": "refs/heads/main", "job_id": jobID})
		e.mustCert(t, "/projects/eng%2F"+name+"/ssh_certificates", tok, key, pub, 0)
		return key
	}
	for _, name := range []string{"api", "web"} {
		e.mustAPI(t, http.MethodPost, "/projects/eng%2F"+name+"/ssh_certificate_trust", ownerTok, url.Values{
			"issuer": {ci.Issuer}, "audience": {"keygate-ci"}, "access": {"write"}, "claims[project_path]": {"eng/" + name},
		}, http.StatusCreated, nil)
	}
	apiJob, apiJob2, webJob := jobCert("api", "1"), jobCert("api", "2"), jobCert("web", "3")

	// A job of eng/api holds its project's one git process.
	held := e.startSession(t, []string{apiJob}, "git", "git-upload-pack 'eng/api.git'")
	if !held.waitOutput(" refs/heads/main\n0000", 30*time.Second) {
		t.Fatalf("no ref advertisement; stdout %q, stderr %q", held.stdout.String(), held.stderr.String())
	}
	// Another project's job is another principal.
	if _, stderr, code := e.git(t, "", []string{webJob}, "ls-remote", e.cloneURL("eng/web")); code != 0 {
		t.Fatalf("eng/web's job while eng/api's job holds its git slot: exit %d\n%s", code, stderr)
	}
	// Another job of the same project shares its budget.
	_, stderr, code := e.git(t, "", []string{apiJob2}, "ls-remote", e.cloneURL("eng/api"))
	want := "git process limit reached: the CI jobs of project " + itoa(api) + " are already running 1 git commands, the most one project's CI jobs together may run at once"
	if code == 0 || !strings.Contains(stderr, want) {
		t.Fatalf("a second eng/api job at the cap: exit %d, stderr %q, want %q", code, stderr, want)
	}
	held.kill()
	if !waitFor(10*time.Second, func() bool {
		_, _, code := e.git(t, "", []string{apiJob2}, "ls-remote", e.cloneURL("eng/api"))
		return code == 0
	}) {
		t.Fatal("the slot was not given back when the held session ended")
	}

	// LFS locks: refused to a job, with a message; nothing is stored.
	if _, err := exec.LookPath("git-lfs"); err != nil {
		t.Skip("git-lfs not installed: the lock check is skipped (CI installs it)")
	}
	dir := filepath.Join(t.TempDir(), "api")
	e.mustGit(t, "", []string{apiJob}, "clone", "--quiet", e.cloneURL("eng/api"), dir)
	e.mustGit(t, dir, nil, "lfs", "install", "--local")
	stdout, stderr, code := e.run(t, dir, []string{"GIT_SSH_COMMAND=" + e.gitSSHCommand([]string{apiJob})}, nil, "git", "lfs", "lock", "ci.bin")
	if out := stdout + stderr; code == 0 || !strings.Contains(out, "CI job's certificate cannot lock files") {
		t.Fatalf("git lfs lock with a job certificate: exit %d\n%s", code, out)
	}
	if strings.Contains(e.logs.String(), "git-lfs-transfer failed") {
		t.Errorf("a job's lock attempt logged an internal error:\n%s", e.logs.String())
	}
	locks, err := e.store.LFSLocks(e.ctx, api, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(locks) != 0 {
		t.Errorf("locks after a job's attempt: %+v", locks)
	}
}
