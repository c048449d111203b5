package e2e

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gogit "github.com/go-git/go-git/v5"
	gogitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing/object"
	gogitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/sshd"
)

// The git protocol as GitLab serves it (issue 22 §1): partial clone and
// fetching any commit over protocol v0 and v2, push options in the push's
// audit event, and a push whose client hangs up after git's report counted
// as the success it was.

// protoWorld is a gitWorld whose eng/api has a history worth filtering:
// commit one adds small.txt (12 bytes) and big.bin (8 KiB), commit two
// replaces big.bin (8 KiB) — main's tip. oldCommit is commit one.
type protoWorld struct {
	*gitWorld
	oldCommit, head             string
	small, bigOld, bigNew       string // blob ids
	oldTree, headTree           string // root tree ids
	deletedCommit               string // a commit only a deleted branch had
	blobCount, bigBlobs, smallN int
}

func newProtoWorld(t *testing.T) *protoWorld {
	t.Helper()
	w := &protoWorld{gitWorld: newGitWorld(t)}
	work := filepath.Join(t.TempDir(), "work")
	w.mustGit(t, "", nil, "clone", "--quiet", w.repoPath("eng/api"), work)
	random := func(n int) string {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		return string(b)
	}
	w.commitFile(t, work, "small.txt", "small text\n")
	w.oldCommit = w.commitFile(t, work, "big.bin", random(8192))
	w.head = w.commitFile(t, work, "big.bin", random(8192))
	w.mustGit(t, work, nil, "push", "--quiet", "origin", "HEAD:refs/heads/main")
	// A branch pushed, then deleted: its commit stays in the repository
	// (until gc) but no ref reaches it.
	w.mustGit(t, work, nil, "checkout", "--quiet", "-b", "gone")
	w.deletedCommit = w.commitFile(t, work, "gone.txt", "only on a deleted branch\n")
	w.mustGit(t, work, nil, "push", "--quiet", "origin", "HEAD:refs/heads/gone")
	w.mustGit(t, work, nil, "push", "--quiet", "origin", ":refs/heads/gone")
	rev := func(spec string) string { return strings.TrimSpace(w.mustGit(t, work, nil, "rev-parse", spec)) }
	w.small, w.bigOld, w.bigNew = rev(w.head+":small.txt"), rev(w.oldCommit+":big.bin"), rev(w.head+":big.bin")
	w.oldTree, w.headTree = rev(w.oldCommit+"^{tree}"), rev(w.head+"^{tree}")
	return w
}

// missingObjects lists the objects a partial clone does not have (git
// rev-list prints them with "?" and does not fetch them).
func (w *protoWorld) missingObjects(t *testing.T, dir string) []string {
	t.Helper()
	out := w.mustGit(t, dir, nil, "rev-list", "--objects", "--all", "--missing=print")
	var missing []string
	for _, l := range strings.Split(out, "\n") {
		if oid, ok := strings.CutPrefix(l, "?"); ok {
			missing = append(missing, strings.TrimSpace(oid))
		}
	}
	slices.Sort(missing)
	return missing
}

func TestPartialClone(t *testing.T) {
	t.Parallel()
	w := newProtoWorld(t)
	for _, version := range []string{"0", "2"} {
		for _, tc := range []struct {
			filter, traced string   // as given, as git sends it
			missing        []string // besides objects of the seed commit, which every filter also leaves out
		}{
			{"blob:none", "blob:none", []string{w.small, w.bigOld, w.bigNew}},
			{"blob:limit=1k", "blob:limit=1024", []string{w.bigOld, w.bigNew}},
			{"tree:0", "tree:0", []string{w.oldTree, w.headTree}},
		} {
			t.Run("v"+version+"/"+tc.filter, func(t *testing.T) {
				t.Parallel()
				dir := filepath.Join(t.TempDir(), "clone")
				_, stderr, code := w.run(t, "", []string{
					"GIT_SSH_COMMAND=" + w.gitSSHCommand([]string{w.rita}), "GIT_TRACE_PACKET=1",
				}, nil, "git", "-c", "protocol.version="+version, "clone", "--no-checkout", "--filter="+tc.filter, w.cloneURL("eng/api"), dir)
				if code != 0 {
					t.Fatalf("clone --filter=%s: exit %d\n%s", tc.filter, code, stderr)
				}
				if strings.Contains(stderr, "filtering not recognized") {
					t.Fatalf("the server ignored the filter:\n%s", stderr)
				}
				// The client sent the filter, and the server spoke the protocol asked for.
				if !strings.Contains(stderr, "> filter "+tc.traced) && !strings.Contains(stderr, " filter "+tc.traced) {
					t.Errorf("no filter line in the packet trace:\n%s", stderr)
				}
				if got := strings.Contains(stderr, "< version 2"); got != (version == "2") {
					t.Errorf("server spoke v2 = %v, want %v", got, version == "2")
				}
				missing := w.missingObjects(t, dir)
				for _, oid := range tc.missing {
					if !slices.Contains(missing, oid) {
						t.Errorf("object %s was downloaded, want it left out by %s (missing: %v)", oid, tc.filter, missing)
					}
				}
				if tc.filter == "blob:limit=1k" && slices.Contains(missing, w.small) {
					t.Errorf("the 11-byte blob is missing; blob:limit=1k must send it")
				}
				// Checking out fetches what is missing, lazily, by object id:
				// over v0 that needs the server to allow any object in a want.
				w.mustGit(t, dir, []string{w.rita}, "-c", "protocol.version="+version, "checkout", "--quiet", "main")
				if b, err := os.ReadFile(filepath.Join(dir, "small.txt")); err != nil || string(b) != "small text\n" {
					t.Fatalf("small.txt after checkout = %q, %v", b, err)
				}
				if fi, err := os.Stat(filepath.Join(dir, "big.bin")); err != nil || fi.Size() != 8192 {
					t.Fatalf("big.bin after checkout: %v, %v", fi, err)
				}
			})
		}
	}
}

// TestFetchAnyCommitByID: a commit that is no branch tip, and one that only
// a deleted branch had, can be fetched by id over v0 as over v2
// (uploadpack.allowAnySHA1InWant, as GitLab sets it; see docs/git.md).
func TestFetchAnyCommitByID(t *testing.T) {
	t.Parallel()
	w := newProtoWorld(t)
	for _, version := range []string{"0", "2"} {
		for _, tc := range []struct {
			name, commit string
		}{
			{"not-a-tip", w.oldCommit},
			{"of-a-deleted-branch", w.deletedCommit},
		} {
			t.Run("v"+version+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				dir := filepath.Join(t.TempDir(), "repo")
				w.mustGit(t, "", nil, "init", "--quiet", dir)
				_, stderr, code := w.run(t, dir, []string{
					"GIT_SSH_COMMAND=" + w.gitSSHCommand([]string{w.rita}), "GIT_TRACE_PACKET=1",
				}, nil, "git", "-c", "protocol.version="+version, "fetch", w.cloneURL("eng/api"), tc.commit)
				if code != 0 {
					t.Fatalf("fetch %s over v%s: exit %d\n%s", tc.commit, version, code, stderr)
				}
				if !strings.Contains(stderr, "want "+tc.commit) {
					t.Errorf("the packet trace has no want for %s", tc.commit)
				}
				if got := strings.TrimSpace(w.mustGit(t, dir, nil, "rev-parse", "FETCH_HEAD")); got != tc.commit {
					t.Fatalf("FETCH_HEAD = %s, want %s", got, tc.commit)
				}
			})
		}
	}
	// Reading is still a reader's: a guest gets "not found", over v0 too.
	dir := filepath.Join(t.TempDir(), "guest")
	w.mustGit(t, "", nil, "init", "--quiet", dir)
	_, stderr, code := w.git(t, dir, []string{w.gus}, "-c", "protocol.version=0", "fetch", w.cloneURL("eng/api"), w.oldCommit)
	if code == 0 || !strings.Contains(stderr, strings.TrimSpace(msgNotFound)) {
		t.Fatalf("guest fetch by id: exit %d, stderr %q; want not found", code, stderr)
	}
}

// pushEvents returns the details of the project's git_push audit events,
// newest first.
func (e *env) pushEvents(t *testing.T) []map[string]any {
	t.Helper()
	evs, _, err := e.store.ListAuditEvents(e.ctx, keystore.AuditFilter{}, keystore.Page{PerPage: 100})
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, ev := range evs {
		if ev.Action != "git_push" {
			continue
		}
		var d map[string]any
		if err := json.Unmarshal([]byte(ev.Details), &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// waitPushEvent waits for a git_push audit event that match accepts.
func (e *env) waitPushEvent(t *testing.T, match func(map[string]any) bool) map[string]any {
	t.Helper()
	var found map[string]any
	if !waitFor(10*time.Second, func() bool {
		for _, d := range e.pushEvents(t) {
			if match(d) {
				found = d
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no matching git_push audit event; have %v", e.pushEvents(t))
	}
	return found
}

func TestPushOptionsAreRecorded(t *testing.T) {
	t.Parallel()
	w := newGitWorld(t)
	clone := filepath.Join(t.TempDir(), "clone")
	w.mustGit(t, "", []string{w.alice}, "clone", "--quiet", w.cloneURL("eng/api"), clone)

	t.Run("recorded", func(t *testing.T) {
		w.commitFile(t, clone, "a.txt", "a\n")
		_, stderr, code := w.git(t, clone, []string{w.alice}, "push", "-o", "ci.skip", "-o", "merge_request.title=Fix it",
			"origin", "HEAD:refs/heads/with-options")
		if code != 0 {
			t.Fatalf("push -o: exit %d\n%s", code, stderr)
		}
		d := w.waitPushEvent(t, func(d map[string]any) bool { return d["push_options"] != nil })
		got, _ := json.Marshal(d["push_options"])
		if string(got) != `["ci.skip","merge_request.title=Fix it"]` {
			t.Errorf("push_options = %s", got)
		}
		if d["exit_status"] != float64(0) || d["refs_updated"] != float64(1) || d["refs_rejected"] != float64(0) {
			t.Errorf("push event = %v, want exit 0, one ref updated", d)
		}
	})

	t.Run("bounded", func(t *testing.T) {
		w.commitFile(t, clone, "b.txt", "b\n")
		args := []string{"push"}
		for i := range 40 {
			opt := fmt.Sprintf("opt%02d", i)
			if i == 0 {
				opt += "=" + strings.Repeat("x", 1000)
			}
			args = append(args, "-o", opt)
		}
		args = append(args, "origin", "HEAD:refs/heads/many-options")
		if _, stderr, code := w.git(t, clone, []string{w.alice}, args...); code != 0 {
			t.Fatalf("push with 40 options: exit %d\n%s", code, stderr)
		}
		d := w.waitPushEvent(t, func(d map[string]any) bool { return d["push_options_dropped"] != nil })
		opts, _ := d["push_options"].([]any)
		if len(opts) != 32 || d["push_options_dropped"] != float64(8) {
			t.Fatalf("recorded %d options, dropped %v; want 32 and 8", len(opts), d["push_options_dropped"])
		}
		first, _ := opts[0].(string)
		if len(first) > 256+len("…") || !strings.HasPrefix(first, "opt00=xxx") || !strings.HasSuffix(first, "…") {
			t.Errorf("a 1006-byte option was recorded as %d bytes: %.40q…", len(first), first)
		}
		if opts[31] != "opt31" {
			t.Errorf("last recorded option = %v, want opt31", opts[31])
		}
	})
}

// TestGoGitPushIsASuccess: go-git closes the connection as soon as it has
// read git's report, while git receive-pack is still finishing; keygate
// counts the push by the report (exit 0 in the log and the audit event),
// not by how git died afterwards.
func TestGoGitPushIsASuccess(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	w := newGitWorldWith(t, func(c *sshd.Config) { c.Registry = reg })
	keyPEM, err := os.ReadFile(w.alice)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := gogitssh.NewPublicKeys("git", keyPEM, "")
	if err != nil {
		t.Fatal(err)
	}
	auth.HostKeyCallback = gossh.InsecureIgnoreHostKey()
	dir := filepath.Join(t.TempDir(), "gogit")
	repo, err := gogit.PlainClone(dir, false, &gogit.CloneOptions{URL: w.cloneURL("eng/api"), Auth: auth})
	if err != nil {
		t.Fatalf("go-git clone: %v", err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		name := fmt.Sprintf("gogit-%d.txt", i)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := wt.Add(name); err != nil {
			t.Fatal(err)
		}
		head, err := wt.Commit("go-git "+name, &gogit.CommitOptions{Author: &object.Signature{Name: "E2E", Email: "e2e@example.com", When: time.Now()}})
		if err != nil {
			t.Fatal(err)
		}
		ref := fmt.Sprintf("refs/heads/gogit-%d", i)
		if err := repo.Push(&gogit.PushOptions{Auth: auth, RefSpecs: []gogitconfig.RefSpec{gogitconfig.RefSpec("refs/heads/main:" + ref)}}); err != nil {
			t.Fatalf("go-git push: %v", err)
		}
		if got := w.serverRef(t, "eng/api", ref); got != head.String() {
			t.Fatalf("server %s = %q, want %s", ref, got, head)
		}
	}
	// Every push is a success in the audit log and the log.
	if !waitFor(10*time.Second, func() bool { return len(w.pushEvents(t)) >= 3 }) {
		t.Fatalf("git_push events = %v, want 3", w.pushEvents(t))
	}
	for _, d := range w.pushEvents(t) {
		if d["exit_status"] != float64(0) || d["refs_updated"] != float64(1) {
			t.Errorf("go-git push audited as %v, want exit_status 0 and one ref updated", d)
		}
	}
	for _, l := range strings.Split(w.logs.String(), "\n") {
		if strings.Contains(l, `msg="git command"`) && strings.Contains(l, "command=git-receive-pack") && !strings.Contains(l, " exit=0") {
			t.Errorf("go-git push logged as %s", l)
		}
	}
	// And in the metrics: three pushes, all ok.
	push := func(result string) float64 {
		return counterValue(t, reg, "keygate_git_operations_total", "git-receive-pack", result)
	}
	if push("ok") != 3 || push("failed") != 0 {
		t.Errorf("keygate_git_operations_total{git-receive-pack}: ok %v, failed %v; want 3 and 0", push("ok"), push("failed"))
	}
}

// TestShallowClone: --depth and --deepen over v0 and v2 (git's own
// capabilities, listed in docs/git.md).
func TestShallowClone(t *testing.T) {
	t.Parallel()
	w := newProtoWorld(t)
	for _, version := range []string{"0", "2"} {
		t.Run("v"+version, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "shallow")
			w.mustGit(t, "", []string{w.rita}, "-c", "protocol.version="+version, "clone", "--quiet", "--depth", "1", w.cloneURL("eng/api"), dir)
			if got := strings.TrimSpace(w.mustGit(t, dir, nil, "rev-list", "--count", "HEAD")); got != "1" {
				t.Fatalf("a --depth 1 clone has %s commits", got)
			}
			w.mustGit(t, dir, []string{w.rita}, "-c", "protocol.version="+version, "fetch", "--quiet", "--deepen", "1")
			if got := strings.TrimSpace(w.mustGit(t, dir, nil, "rev-list", "--count", "HEAD")); got != "2" {
				t.Fatalf("after --deepen 1: %s commits, want 2", got)
			}
		})
	}
}

// counterValue reads a counter with labels service and result from reg (0
// when it was never counted).
func counterValue(t *testing.T, reg *prometheus.Registry, name, service, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsAre(m, map[string]string{"service": service, "result": result}) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func labelsAre(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
			n++
		}
	}
	return n == len(want)
}
