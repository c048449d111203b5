package e2e

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/sshd"
)

// limitRefusals reads keygate_ssh_principal_limit_refusals_total{limit}.
func limitRefusals(t *testing.T, reg *prometheus.Registry, limit string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "keygate_ssh_principal_limit_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "limit" && l.GetValue() == limit {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no keygate_ssh_principal_limit_refusals_total{limit=%q}", limit)
	return 0
}

// TestPrincipalCapsRealClients: with the real ssh and git, one user runs at
// most MaxGitProcessesPerPrincipal git processes and holds at most
// MaxConnectionsPerPrincipal connections; past either, the refusal names
// the limit (git: on stderr, exit 1; connections: the login banner).
// Another user and a deploy key are other principals. Ending a git command
// and closing a connection give the slots back.
func TestPrincipalCapsRealClients(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	e := newEnvWith(t, func(c *sshd.Config) {
		c.MaxConnectionsPerPrincipal = 3
		c.MaxGitProcessesPerPrincipal = 2
		c.Registry = reg
	})
	eng := e.createGroup(t, "eng", e.adminToken)
	api := e.createProject(t, eng, "api")
	e.seedRepo(t, "eng/api")
	keys := map[string]string{}
	for _, name := range []string{"alice", "rita"} {
		id, _ := e.createUser(t, name)
		key, pub := e.sshKeygen(t, "ed25519", 0)
		e.addKey(t, id, pub, "", "")
		e.addMember(t, eng, id, keystore.Developer)
		keys[name] = key
	}
	deployKey, deployPub := e.sshKeygen(t, "ed25519", 0)
	e.addDeployKey(t, "projects/"+strconv.FormatInt(api, 10), "ci", deployPub, false)
	alice := []string{keys["alice"]}
	url := e.cloneURL("eng/api")

	// Two git-upload-pack of alice's wait for her wants: her git budget.
	var held []*session
	for range 2 {
		s := e.startSession(t, alice, "git", "git-upload-pack 'eng/api.git'")
		if !s.waitOutput(" refs/heads/main\n0000", 30*time.Second) {
			t.Fatalf("no ref advertisement; stdout %q, stderr %q", s.stdout.String(), s.stderr.String())
		}
		held = append(held, s)
	}
	// A third git command of hers — a real clone — is refused, naming the limit.
	_, stderr, code := e.git(t, "", alice, "clone", "--quiet", url, filepath.Join(t.TempDir(), "c"))
	const gitMsg = "keygate: ERROR: git process limit reached: @alice is already running 2 git commands, the most one account may run at once; try again when one has finished"
	if code == 0 || !strings.Contains(stderr, gitMsg) {
		t.Fatalf("third git command: exit %d, stderr %q; want a refusal %q", code, stderr, gitMsg)
	}
	// Others are other principals: a user, and a deploy key.
	e.mustGit(t, "", []string{keys["rita"]}, "ls-remote", url)
	e.mustGit(t, "", []string{deployKey}, "ls-remote", url)

	// A third connection of alice's, with nothing running on it.
	idle := e.startSession(t, alice, "git", "-N", "-o", "LogLevel=VERBOSE")
	if !waitFor(30*time.Second, func() bool { return strings.Contains(idle.stderr.String(), "Authenticated to") }) {
		t.Fatalf("ssh -N did not authenticate: %q", idle.stderr.String())
	}
	// A fourth is refused at login, with a banner naming the limit.
	_, stderr, code = e.ssh(t, alice, "git")
	const connMsg = "keygate: connection limit reached: @alice already has 3 SSH connections open, the most one account may have; close some and try again"
	if code == 0 || !strings.Contains(stderr, connMsg) {
		t.Fatalf("fourth connection: exit %d, stderr %q; want the banner %q", code, stderr, connMsg)
	}
	if got := limitRefusals(t, reg, "connections"); got != 1 {
		t.Fatalf("connections refusals = %v, want 1", got)
	}
	if got := limitRefusals(t, reg, "git_processes"); got != 1 {
		t.Fatalf("git_processes refusals = %v, want 1", got)
	}

	// Ending one upload-pack frees a git slot and a connection slot: a
	// clone works again.
	_ = held[0].stdin.Close() // upload-pack reads end of file and exits
	if !held[0].waitExit(30 * time.Second) {
		t.Fatal("upload-pack did not end on end of input")
	}
	if !waitFor(10*time.Second, func() bool {
		_, _, code := e.git(t, "", alice, "clone", "--quiet", url, filepath.Join(t.TempDir(), "c"))
		return code == 0
	}) {
		t.Fatal("after one git command ended, alice still cannot clone")
	}
}
