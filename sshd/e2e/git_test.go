package e2e

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/sshd"
)

// The messages keygate writes on stderr (sshd/git.go); tests compare them
// exactly so that a changed or leaking message fails.
const (
	msgNotFound     = "keygate: ERROR: The project you were looking for could not be found or you don't have permission to view it.\n"
	msgNoPush       = "keygate: ERROR: You are not allowed to push code to this project.\n"
	msgCertRequired = "keygate: ERROR: This group requires SSH certificates: log in with a certificate issued by the group's CA.\n"
)

// gitWorld is a keygate with group "eng" (owned by root) holding the
// seeded project eng/api, and users with an ed25519 key each: alice
// (developer), rita (reporter), gus (guest) and nora (no member).
type gitWorld struct {
	*env
	engID                           int64
	seed                            string // the commit on main of eng/api
	ids                             map[string]int64
	keys                            map[string]string // username -> private key path
	alice, rita, gus, nora, rootKey string
}

func newGitWorld(t *testing.T) *gitWorld {
	t.Helper()
	return newGitWorldWith(t, nil)
}

// newGitWorldWith is newGitWorld with the SSH server's configuration
// adjusted by tune.
func newGitWorldWith(t *testing.T, tune func(*sshd.Config)) *gitWorld {
	t.Helper()
	e := newEnvWith(t, tune)
	w := &gitWorld{env: e, ids: map[string]int64{}, keys: map[string]string{}}
	w.engID = e.createGroup(t, "eng", e.adminToken)
	e.createProject(t, w.engID, "api")
	w.seed = e.seedRepo(t, "eng/api")
	for _, u := range []struct {
		name  string
		level int
	}{{"alice", keystore.Developer}, {"rita", keystore.Reporter}, {"gus", keystore.Guest}, {"nora", 0}} {
		id, _ := e.createUser(t, u.name)
		key, pub := e.sshKeygen(t, "ed25519", 0)
		e.addKey(t, id, pub, "", "")
		if u.level != 0 {
			e.addMember(t, w.engID, id, u.level)
		}
		w.ids[u.name], w.keys[u.name] = id, key
	}
	key, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, e.adminID, pub, "", "")
	w.keys["root"] = key
	w.alice, w.rita, w.gus, w.nora, w.rootKey = w.keys["alice"], w.keys["rita"], w.keys["gus"], w.keys["nora"], key
	return w
}

// serverRef reads a ref of a project's bare repository on disk ("" if absent).
func (e *env) serverRef(t *testing.T, fullPath, ref string) string {
	t.Helper()
	out, _, code := e.run(t, "", nil, nil, "git", "--git-dir", e.repoPath(fullPath), "rev-parse", "--verify", "--quiet", ref)
	if code != 0 {
		return ""
	}
	return strings.TrimSpace(out)
}

// commitFile writes name in a work tree, commits it and returns the hash.
func (e *env) commitFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	e.mustGit(t, dir, nil, "add", name)
	e.mustGit(t, dir, nil, "commit", "--quiet", "-m", "add "+name)
	return strings.TrimSpace(e.mustGit(t, dir, nil, "rev-parse", "HEAD"))
}

func TestCloneFetchPushWithEachKeyType(t *testing.T) {
	t.Parallel()
	w := newGitWorld(t)
	for _, tc := range []struct {
		name    string
		typ     string
		bits    int
		keyType string // the public key's algorithm
	}{
		{"ed25519", "ed25519", 0, "ssh-ed25519"},
		{"ecdsa-nistp256", "ecdsa", 256, "ecdsa-sha2-nistp256"},
		{"rsa-3072", "rsa", 3072, "ssh-rsa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key, pub := w.sshKeygen(t, tc.typ, tc.bits)
			if !strings.HasPrefix(pub, tc.keyType+" ") {
				t.Fatalf("ssh-keygen made %q, want a %s key", pub, tc.keyType)
			}
			w.addKey(t, w.ids["alice"], pub, "", "")
			keys := []string{key}
			base := t.TempDir()
			clone, other := filepath.Join(base, "clone"), filepath.Join(base, "other")

			w.mustGit(t, "", keys, "clone", "--quiet", w.cloneURL("eng/api"), clone)
			w.mustGit(t, "", keys, "clone", "--quiet", w.cloneURL("eng/api"), other)
			if got := strings.TrimSpace(w.mustGit(t, clone, nil, "rev-parse", "HEAD")); got != w.seed {
				t.Fatalf("cloned HEAD = %s, want the seed %s", got, w.seed)
			}

			branch := "refs/heads/" + tc.name
			head := w.commitFile(t, clone, tc.name+".txt", "pushed with "+tc.keyType+"\n")
			w.mustGit(t, clone, keys, "push", "--quiet", "origin", "HEAD:"+branch)
			if got := w.serverRef(t, "eng/api", branch); got != head {
				t.Fatalf("server %s = %q after push, want %s", branch, got, head)
			}

			w.mustGit(t, other, keys, "fetch", "--quiet", "origin")
			if got := strings.TrimSpace(w.mustGit(t, other, nil, "rev-parse", "refs/remotes/origin/"+tc.name)); got != head {
				t.Fatalf("fetched origin/%s = %s, want %s", tc.name, got, head)
			}
		})
	}
}

func TestGitProtocolVersionIsPassedThrough(t *testing.T) {
	t.Parallel()
	w := newGitWorld(t)
	for _, tc := range []struct {
		name    string
		version string
		wantV2  bool
	}{
		{"protocol-v2", "2", true},
		{"protocol-v0", "0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := w.run(t, "", []string{
				"GIT_SSH_COMMAND=" + w.gitSSHCommand([]string{w.alice}), "GIT_TRACE_PACKET=1",
			}, nil, "git", "-c", "protocol.version="+tc.version, "ls-remote", w.cloneURL("eng/api"))
			if code != 0 {
				t.Fatalf("ls-remote: exit %d: %s", code, stderr)
			}
			if want := w.seed + "\trefs/heads/main"; !strings.Contains(stdout, want) {
				t.Errorf("ls-remote stdout = %q, want a line %q", stdout, want)
			}
			// In protocol v2 the server's first packet is "version 2".
			if got := strings.Contains(stderr, "< version 2"); got != tc.wantV2 {
				t.Errorf("server spoke protocol v2 = %v, want %v; packet trace:\n%s", got, tc.wantV2, stderr)
			}
		})
	}
}

// TestAccessLevels runs git-upload-pack and git-receive-pack by hand (the
// client sends a flush packet: "nothing wanted", so git exits 0 once
// access is granted).
func TestAccessLevels(t *testing.T) {
	t.Parallel()
	w := newGitWorld(t)
	for _, tc := range []struct {
		name    string
		user    string
		command string
		wantErr string // "" for access
	}{
		{"developer-reads", "alice", "git-upload-pack", ""},
		{"developer-pushes", "alice", "git-receive-pack", ""},
		{"reporter-reads", "rita", "git-upload-pack", ""},
		{"reporter-archives", "rita", "git-upload-archive", ""},
		{"reporter-cannot-push", "rita", "git-receive-pack", msgNoPush},
		{"guest-cannot-read", "gus", "git-upload-pack", msgNotFound},
		{"guest-cannot-push", "gus", "git-receive-pack", msgNotFound},
		{"non-member-cannot-read", "nora", "git-upload-pack", msgNotFound},
		{"non-member-cannot-push", "nora", "git-receive-pack", msgNotFound},
		{"admin-reads-without-membership", "root", "git-upload-pack", ""},
		{"admin-pushes-without-membership", "root", "git-receive-pack", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := w.sshStdin(t, "0000", []string{w.keys[tc.user]}, "git", tc.command+" 'eng/api.git'")
			if tc.wantErr != "" {
				if code != 1 || stderr != tc.wantErr || stdout != "" {
					t.Errorf("exit %d, stdout %q, stderr %q; want exit 1, no output, stderr %q", code, stdout, stderr, tc.wantErr)
				}
				return
			}
			if tc.command == "git-upload-archive" {
				// git acknowledges the request, then refuses its empty argument list.
				if !strings.HasPrefix(stdout, "0008ACK\n") || strings.Contains(stderr, "keygate:") {
					t.Errorf("exit %d, stdout %q, stderr %q; want git's ACK", code, stdout, stderr)
				}
				return
			}
			if code != 0 || !strings.Contains(stdout, w.seed+" refs/heads/main") || stderr != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 0 and the ref advertisement", code, stdout, stderr)
			}
		})
	}
}

func TestPushByReporterIsRefused(t *testing.T) {
	t.Parallel()
	w := newGitWorld(t)
	keys := []string{w.rita}
	clone := filepath.Join(t.TempDir(), "clone")
	w.mustGit(t, "", keys, "clone", "--quiet", w.cloneURL("eng/api"), clone)
	w.commitFile(t, clone, "rita.txt", "should not land\n")
	_, stderr, code := w.git(t, clone, keys, "push", "origin", "HEAD:refs/heads/main")
	if code == 0 {
		t.Fatalf("push by a reporter succeeded")
	}
	if !strings.Contains(stderr, strings.TrimSpace(msgNoPush)) {
		t.Errorf("push stderr = %q, want %q", stderr, msgNoPush)
	}
	if got := w.serverRef(t, "eng/api", "refs/heads/main"); got != w.seed {
		t.Errorf("server main = %s after a refused push, want the seed %s", got, w.seed)
	}

	// git archive --remote is a read, so the reporter may.
	out, stderr, code := w.git(t, "", keys, "archive", "--remote="+w.cloneURL("eng/api"), "--format=tar", "main", "README")
	if code != 0 || !strings.Contains(out, "seed of eng/api") {
		t.Errorf("git archive --remote: exit %d, stderr %q, output has README = %v", code, stderr, strings.Contains(out, "seed of eng/api"))
	}
}

// TestNotFoundLeaksNothing: a project that exists but is not visible reads
// exactly like one that does not exist.
func TestNotFoundLeaksNothing(t *testing.T) {
	t.Parallel()
	w := newGitWorld(t)
	cases := []struct {
		name string
		user string
		path string
	}{
		{"non-member-existing-project", "nora", "eng/api"},
		{"non-member-missing-project", "nora", "eng/missing"},
		{"guest-existing-project", "gus", "eng/api"},
		{"member-missing-project", "alice", "eng/missing"},
		{"member-missing-group", "alice", "nogroup/api"},
	}
	t.Run("git-clone", func(t *testing.T) {
		t.Parallel()
		for _, tc := range cases {
			_, stderr, code := w.git(t, "", []string{w.keys[tc.user]}, "clone", w.cloneURL(tc.path), filepath.Join(t.TempDir(), "c"))
			if code == 0 {
				t.Errorf("%s: clone succeeded", tc.name)
				continue
			}
			if got, want := keygateLines(stderr), []string{strings.TrimSpace(msgNotFound)}; !slices.Equal(got, want) {
				t.Errorf("%s: keygate said %q, want exactly %q\nstderr: %s", tc.name, got, want, stderr)
			}
		}
	})
	t.Run("ssh", func(t *testing.T) {
		t.Parallel()
		for _, tc := range cases {
			stdout, stderr, code := w.ssh(t, []string{w.keys[tc.user]}, "git", "git-upload-pack '"+tc.path+".git'")
			if code != 1 || stdout != "" || stderr != msgNotFound {
				t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and exactly %q", tc.name, code, stdout, stderr, msgNotFound)
			}
		}
	})
}

func TestRepositoryPathForms(t *testing.T) {
	t.Parallel()
	w := newGitWorld(t)
	keys := []string{w.alice}
	t.Run("ssh", func(t *testing.T) {
		t.Parallel()
		for _, command := range []string{
			"git-upload-pack 'eng/api.git'",
			"git-upload-pack '/eng/api.git'",
			"git-upload-pack '~/eng/api.git'",
			"git-upload-pack 'eng/api'",
			"git-upload-pack '/eng/api'",
			"git-upload-pack '~/eng/api'",
			`git-upload-pack "/eng/api.git"`,
			"git-upload-pack eng/api.git",
			"git-upload-pack /eng/api",
			"git-upload-pack ~/eng/api.git",
		} {
			stdout, stderr, code := w.sshStdin(t, "0000", keys, "git", command)
			if code != 0 || stderr != "" || !strings.Contains(stdout, w.seed+" refs/heads/main") {
				t.Errorf("ssh git@host %s: exit %d, stderr %q, stdout %q; want the ref advertisement", command, code, stderr, stdout)
			}
		}
	})
	t.Run("git", func(t *testing.T) {
		t.Parallel()
		port := strconv.Itoa(w.sshPort)
		for _, u := range []string{
			"ssh://git@127.0.0.1:" + port + "/eng/api.git",
			"ssh://git@127.0.0.1:" + port + "/eng/api",
			"ssh://git@127.0.0.1:" + port + "/~/eng/api.git",
			"git@127.0.0.1:eng/api.git", // scp-like; the port comes from GIT_SSH_COMMAND
			"git@127.0.0.1:/eng/api",
		} {
			stdout, stderr, code := w.git(t, "", keys, "ls-remote", u)
			if code != 0 || !strings.Contains(stdout, w.seed+"\trefs/heads/main") {
				t.Errorf("git ls-remote %s: exit %d, stderr %q, stdout %q", u, code, stderr, stdout)
			}
		}
	})
}

func TestRepositoryPathEscapesAreNotFound(t *testing.T) {
	t.Parallel()
	w := newGitWorld(t)
	for _, tc := range []struct {
		name, command string
	}{
		{"dot-dot", "git-upload-pack '../..'"},
		{"dot-dot-after-group", "git-upload-pack 'eng/../../etc'"},
		{"dot-dot-to-passwd", "git-upload-pack '../../../../etc/passwd'"},
		{"tilde-dot-dot", "git-upload-pack '~/../../etc/passwd'"},
		{"out-of-project", "git-upload-pack 'eng/api/../../../../tmp'"},
		{"absolute-path-on-disk", "git-upload-pack '" + w.repoPath("eng/api") + "'"},
		{"receive-pack-dot-dot", "git-receive-pack '../outside.git'"},
		{"receive-pack-absolute", "git-receive-pack '" + w.repoPath("eng/api") + "'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := w.sshStdin(t, "0000", []string{w.alice}, "git", tc.command)
			if code != 1 || stdout != "" || stderr != msgNotFound {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and exactly %q", code, stdout, stderr, msgNotFound)
			}
		})
	}
}

func TestUnknownCommandsAreRefused(t *testing.T) {
	t.Parallel()
	w := newGitWorld(t)
	for _, tc := range []struct {
		name, command string
	}{
		{"ls", "ls"},
		{"shell", "sh -c id"},
		{"git-with-space", "git upload-pack 'eng/api.git'"},
		{"upload-pack-without-path", "git-upload-pack"},
		{"upload-pack-with-two-paths", "git-upload-pack 'eng/api.git' 'eng/api.git'"},
		{"scp", "scp -t /tmp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := w.ssh(t, []string{w.alice}, "git", tc.command)
			if code != 1 || stdout != "" {
				t.Errorf("exit %d, stdout %q; want exit 1 and no output", code, stdout)
			}
			if !strings.HasPrefix(stderr, "keygate: ERROR: unknown command") ||
				!strings.Contains(stderr, "only git-upload-pack, git-receive-pack, git-upload-archive and git-lfs-transfer are served") {
				t.Errorf("stderr = %q, want keygate's unknown-command message", stderr)
			}
		})
	}
}

func TestNoCommandPrintsWelcome(t *testing.T) {
	t.Parallel()
	w := newGitWorld(t)
	for _, tc := range []struct {
		name, login, key, want string
	}{
		{"git-user", "git", w.alice, "Welcome to keygate, @alice!\n"},
		{"own-username", "alice", w.alice, "Welcome to keygate, @alice!\n"},
		{"another-user", "git", w.rita, "Welcome to keygate, @rita!\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := w.ssh(t, []string{tc.key}, tc.login)
			if code != 0 || stdout != tc.want || stderr != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 0 and %q", code, stdout, stderr, tc.want)
			}
		})
	}
}

func TestInheritedMembershipReachesSubgroupProjects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	orgID := e.createGroup(t, "org", e.adminToken)
	teamID := e.createSubgroup(t, orgID, "team", e.adminToken)
	e.createProject(t, teamID, "svc")
	e.createProject(t, orgID, "top")
	svcSeed := e.seedRepo(t, "org/team/svc")
	e.seedRepo(t, "org/top")

	aliceID, _ := e.createUser(t, "alice") // developer of org: inherits team
	aliceKey, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, aliceID, pub, "", "")
	e.addMember(t, orgID, aliceID, keystore.Developer)
	bobID, _ := e.createUser(t, "bob") // developer of org/team only
	bobKey, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, bobID, pub, "", "")
	e.addMember(t, teamID, bobID, keystore.Developer)

	keys := []string{aliceKey}
	clone := filepath.Join(t.TempDir(), "svc")
	e.mustGit(t, "", keys, "clone", "--quiet", e.cloneURL("org/team/svc"), clone)
	if got := strings.TrimSpace(e.mustGit(t, clone, nil, "rev-parse", "HEAD")); got != svcSeed {
		t.Fatalf("cloned HEAD = %s, want %s", got, svcSeed)
	}
	head := e.commitFile(t, clone, "alice.txt", "inherited\n")
	e.mustGit(t, clone, keys, "push", "--quiet", "origin", "HEAD:refs/heads/alice")
	if got := e.serverRef(t, "org/team/svc", "refs/heads/alice"); got != head {
		t.Fatalf("server refs/heads/alice = %q, want %s", got, head)
	}

	// Membership flows down, never up: bob sees org/team/svc, not org/top.
	if _, stderr, code := e.git(t, "", []string{bobKey}, "ls-remote", e.cloneURL("org/team/svc")); code != 0 {
		t.Errorf("bob ls-remote org/team/svc: exit %d: %s", code, stderr)
	}
	_, stderr, code := e.git(t, "", []string{bobKey}, "ls-remote", e.cloneURL("org/top"))
	if code == 0 || !slices.Equal(keygateLines(stderr), []string{strings.TrimSpace(msgNotFound)}) {
		t.Errorf("bob ls-remote org/top: exit %d, stderr %q; want not found", code, stderr)
	}
}

func TestEnforcedCertificatesDenyPlainKeys(t *testing.T) {
	t.Parallel()
	w := newGitWorld(t)
	secID := w.createGroup(t, "secure", w.adminToken)
	subID := w.createSubgroup(t, secID, "sub", w.adminToken)
	w.createProject(t, secID, "app")
	w.createProject(t, subID, "lib")
	w.seedRepo(t, "secure/app")
	w.seedRepo(t, "secure/sub/lib")
	w.addMember(t, secID, w.ids["alice"], keystore.Developer)
	keys := []string{w.alice}
	projects := []string{"secure/app", "secure/sub/lib"}

	for _, p := range projects {
		if _, stderr, code := w.git(t, "", keys, "ls-remote", w.cloneURL(p)); code != 0 {
			t.Fatalf("before enforcement, ls-remote %s: exit %d: %s", p, code, stderr)
		}
	}
	w.mustAPI(t, http.MethodPut, "/groups/"+itoa(secID), w.adminToken,
		url.Values{"enforce_ssh_certificates": {"true"}}, http.StatusOK, nil)

	for _, p := range projects {
		for _, command := range []string{"git-upload-pack", "git-receive-pack"} {
			stdout, stderr, code := w.ssh(t, keys, "git", command+" '"+p+".git'")
			if code != 1 || stdout != "" || stderr != msgCertRequired {
				t.Errorf("%s %s: exit %d, stdout %q, stderr %q; want exit 1 and %q", command, p, code, stdout, stderr, msgCertRequired)
			}
		}
		_, stderr, code := w.git(t, "", keys, "clone", w.cloneURL(p), filepath.Join(t.TempDir(), "c"))
		if code == 0 || !strings.Contains(stderr, strings.TrimSpace(msgCertRequired)) {
			t.Errorf("clone %s: exit %d, stderr %q; want the certificate-required message", p, code, stderr)
		}
	}
	// Plain keys still authenticate, and other groups are unaffected.
	if stdout, _, code := w.ssh(t, keys, "git"); code != 0 || stdout != "Welcome to keygate, @alice!\n" {
		t.Errorf("welcome after enforcement: exit %d, %q", code, stdout)
	}
	if _, stderr, code := w.git(t, "", keys, "ls-remote", w.cloneURL("eng/api")); code != 0 {
		t.Errorf("ls-remote eng/api after enforcing on another group: exit %d: %s", code, stderr)
	}
	// A non-member still gets "not found", not a hint that the project exists.
	if _, stderr, code := w.ssh(t, []string{w.nora}, "git", "git-upload-pack 'secure/app.git'"); code != 1 || stderr != msgNotFound {
		t.Errorf("non-member on an enforced group: exit %d, stderr %q; want %q", code, stderr, msgNotFound)
	}
}

// gitChildren lists the pids of this test process's children whose command
// line mentions repo (the git processes the SSH server started for it).
func gitChildren(t *testing.T, repo string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "pgrep", "-P", strconv.Itoa(os.Getpid()), "-f", regexp.QuoteMeta(repo)).Output()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		t.Fatalf("pgrep: %v", err)
	}
	return strings.Fields(string(out))
}

func TestGitIsKilledWhenTheClientGoesAway(t *testing.T) {
	t.Parallel()
	requireBinaries(t, "pgrep")
	w := newGitWorld(t)
	repo := w.repoPath("eng/api")
	if pids := gitChildren(t, repo); len(pids) != 0 {
		t.Fatalf("git processes on %s before the test: %v", repo, pids)
	}

	s := w.startSession(t, []string{w.alice}, "git", "git-upload-pack 'eng/api.git'")
	// The advertisement ends with a flush packet; then git waits on stdin.
	if !s.waitOutput(" refs/heads/main\n0000", 30*time.Second) {
		t.Fatalf("no ref advertisement; stdout %q, stderr %q", s.stdout.String(), s.stderr.String())
	}
	if pids := gitChildren(t, repo); len(pids) == 0 {
		t.Fatalf("no git upload-pack running on %s while the client is connected", repo)
	}

	s.kill()
	var left []string
	if !waitFor(5*time.Second, func() bool { left = gitChildren(t, repo); return len(left) == 0 }) {
		t.Fatalf("git processes %v still run 5s after the client went away", left)
	}
}
