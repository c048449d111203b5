package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/sshd"
)

// Git LFS over SSH (issue 22 §2) with Debian's git-lfs: objects go up with
// a push and come down with a clone, by the pure SSH protocol
// (git-lfs-transfer); readers cannot upload; corrupt uploads and objects
// over the limit are refused; locks work; revocation ends a session; the
// objects go with the project.

// lfsWorld is a keygate with group eng holding eng/media (seeded), alice
// (developer), bob (developer), mia (maintainer), rita (reporter), and
// deploy keys on eng/media: pushKey (can_push) and readKey.
type lfsWorld struct {
	*env
	eng, media       int64
	ids              map[string]int64
	keys             map[string]string
	pushKey, readKey string
	pushKeyID        int64
	limitBytes       int64
}

func newLFSWorld(t *testing.T, limit int64, idle time.Duration) *lfsWorld {
	t.Helper()
	requireBinaries(t, "git-lfs")
	e := newEnvWith(t, func(c *sshd.Config) { c.LFSMaxObjectSize, c.IdleTimeout = limit, idle })
	w := &lfsWorld{env: e, ids: map[string]int64{}, keys: map[string]string{}, limitBytes: limit}
	w.eng = e.createGroup(t, "eng", e.adminToken)
	w.media = e.createProject(t, w.eng, "media")
	e.seedRepo(t, "eng/media")
	for _, u := range []struct {
		name  string
		level int
	}{{"alice", keystore.Developer}, {"bob", keystore.Developer}, {"mia", keystore.Maintainer}, {"rita", keystore.Reporter}} {
		id, _ := e.createUser(t, u.name)
		key, pub := e.sshKeygen(t, "ed25519", 0)
		e.addKey(t, id, pub, "", "")
		e.addMember(t, w.eng, id, u.level)
		w.ids[u.name], w.keys[u.name] = id, key
	}
	var pub string
	w.pushKey, pub = e.sshKeygen(t, "ed25519", 0)
	w.pushKeyID = e.addDeployKey(t, "projects/"+itoa(w.media), "ci-push", pub, true)
	w.readKey, pub = e.sshKeygen(t, "ed25519", 0)
	e.addDeployKey(t, "projects/"+itoa(w.media), "ci-read", pub, false)
	return w
}

// lfs runs git (git-lfs through it) in dir with key; a push traces (GIT_TRACE)
// git-lfs's choice of transfer.
func (w *lfsWorld) lfs(t *testing.T, dir, key string, args ...string) (string, int) {
	t.Helper()
	env := []string{"GIT_SSH_COMMAND=" + w.gitSSHCommand([]string{key})}
	if args[0] == "push" {
		env = append(env, "GIT_TRACE=1")
	}
	stdout, stderr, code := w.run(t, dir, env, nil, "git", args...)
	return stdout + dropClientNoise(stderr), code
}

func (w *lfsWorld) mustLFS(t *testing.T, dir, key string, args ...string) string {
	t.Helper()
	out, code := w.lfs(t, dir, key, args...)
	if code != 0 {
		t.Fatalf("git %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// lfsClone clones eng/media without fetching LFS content, and sets LFS up
// in the clone (its hooks and filters, as `git lfs install` would for a
// user).
func (w *lfsWorld) lfsClone(t *testing.T, key string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "clone")
	if _, stderr, code := w.run(t, "", []string{"GIT_SSH_COMMAND=" + w.gitSSHCommand([]string{key}), "GIT_LFS_SKIP_SMUDGE=1"}, nil,
		"git", "clone", "--quiet", w.cloneURL("eng/media"), dir); code != 0 {
		t.Fatalf("clone: exit %d: %s", code, stderr)
	}
	w.mustGit(t, dir, nil, "lfs", "install", "--local")
	return dir
}

// addLFSFile writes n random bytes to name (tracked by LFS), commits it
// and returns the content's SHA-256 (the LFS object id).
func (w *lfsWorld) addLFSFile(t *testing.T, dir, name string, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	w.mustGit(t, dir, nil, "lfs", "track", "*.bin")
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	w.mustGit(t, dir, nil, "add", ".gitattributes", name)
	w.mustGit(t, dir, nil, "commit", "--quiet", "-m", "add "+name)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// stored reports whether keygate holds LFS object oid for eng/media, with
// content that hashes to it.
func (w *lfsWorld) stored(t *testing.T, oid string) bool {
	t.Helper()
	f, _, err := w.repos.LFS("eng/media").Open(oid)
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != oid {
		t.Fatalf("stored object %s hashes to %s", oid, got)
	}
	return true
}

func TestGitLFSOverSSH(t *testing.T) {
	t.Parallel()
	w := newLFSWorld(t, 0, 0)
	const size = 20 << 20
	var bigOID string

	t.Run("developer-pushes-20MB", func(t *testing.T) {
		dir := w.lfsClone(t, w.keys["alice"])
		bigOID = w.addLFSFile(t, dir, "big.bin", size)
		out := w.mustLFS(t, dir, w.keys["alice"], "push", "origin", "HEAD:main")
		if !strings.Contains(out, `tq: starting transfer adapter "ssh"`) {
			t.Errorf("git-lfs did not use the SSH protocol:\n%s", out)
		}
		if strings.Contains(out, "git-lfs-authenticate") {
			t.Errorf("git-lfs asked git-lfs-authenticate:\n%s", out)
		}
		if !w.stored(t, bigOID) {
			t.Fatalf("object %s not stored", bigOID)
		}
		// git holds the pointer, not the content.
		ptr := w.mustGit(t, "", nil, "--git-dir", w.repoPath("eng/media"), "cat-file", "-p", "main:big.bin")
		if !strings.Contains(ptr, "oid sha256:"+bigOID) || !strings.Contains(ptr, fmt.Sprintf("size %d", size)) {
			t.Fatalf("main:big.bin = %q, want an LFS pointer", ptr)
		}
	})
	if bigOID == "" {
		t.FailNow()
	}

	t.Run("reader-clones-with-content", func(t *testing.T) {
		dir := w.lfsClone(t, w.keys["rita"])
		w.mustLFS(t, dir, w.keys["rita"], "lfs", "pull")
		b, err := os.ReadFile(filepath.Join(dir, "big.bin"))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != bigOID || len(b) != size {
			t.Fatalf("big.bin after lfs pull: %d bytes, not the pushed content", len(b))
		}
	})

	t.Run("plain-clone-smudges", func(t *testing.T) {
		// A clone whose checkout runs the LFS filter (what `git lfs install`
		// sets up globally) downloads the content during the clone.
		dir := filepath.Join(t.TempDir(), "smudged")
		w.mustLFS(t, "", w.keys["rita"], "-c", "filter.lfs.process=git-lfs filter-process", "-c", "filter.lfs.required=true",
			"-c", "filter.lfs.smudge=git-lfs smudge -- %f", "-c", "filter.lfs.clean=git-lfs clean -- %f",
			"clone", "--quiet", w.cloneURL("eng/media"), dir)
		if fi, err := os.Stat(filepath.Join(dir, "big.bin")); err != nil || fi.Size() != size {
			t.Fatalf("big.bin after clone: %v, %v", fi, err)
		}
	})

	t.Run("reader-cannot-upload", func(t *testing.T) {
		dir := w.lfsClone(t, w.keys["rita"])
		oid := w.addLFSFile(t, dir, "rita.bin", 4096)
		out, code := w.lfs(t, dir, w.keys["rita"], "lfs", "push", "origin", "main")
		if code == 0 {
			t.Fatalf("a reporter's lfs push succeeded:\n%s", out)
		}
		if !strings.Contains(out, strings.TrimSpace(msgNoPush)) {
			t.Errorf("the refusal does not say why:\n%s", out)
		}
		if w.stored(t, oid) {
			t.Fatal("a reporter's object was stored")
		}
	})

	t.Run("read-only-deploy-key-cannot-upload-push-key-can", func(t *testing.T) {
		dir := w.lfsClone(t, w.readKey)
		oid := w.addLFSFile(t, dir, "ci.bin", 4096)
		if out, code := w.lfs(t, dir, w.readKey, "lfs", "push", "origin", "main"); code == 0 {
			t.Fatalf("a read-only deploy key's lfs push succeeded:\n%s", out)
		}
		if w.stored(t, oid) {
			t.Fatal("a read-only deploy key's object was stored")
		}
		w.mustLFS(t, dir, w.pushKey, "push", "origin", "HEAD:refs/heads/ci")
		if !w.stored(t, oid) {
			t.Fatal("the can_push deploy key's object was not stored")
		}
	})

	t.Run("locks", func(t *testing.T) {
		alice := w.lfsClone(t, w.keys["alice"])
		out := w.mustLFS(t, alice, w.keys["alice"], "lfs", "lock", "big.bin")
		if !strings.Contains(out, "Locked big.bin") {
			t.Errorf("git lfs lock said:\n%s", out)
		}
		// Anyone who reads sees it, with its owner.
		rita := w.lfsClone(t, w.keys["rita"])
		locks := w.mustLFS(t, rita, w.keys["rita"], "lfs", "locks")
		if !strings.Contains(locks, "big.bin") || !strings.Contains(locks, "alice") {
			t.Errorf("git lfs locks (reporter) = %q, want big.bin locked by alice", locks)
		}
		// Locked twice: refused, naming the holder.
		bob := w.lfsClone(t, w.keys["bob"])
		if out, code := w.lfs(t, bob, w.keys["bob"], "lfs", "lock", "big.bin"); code == 0 || !strings.Contains(out, "locked by alice") {
			t.Errorf("bob locking alice's path: exit %d\n%s", code, out)
		}
		// A reporter cannot lock; a developer cannot remove another's lock.
		if out, code := w.lfs(t, rita, w.keys["rita"], "lfs", "lock", "rita.bin"); code == 0 {
			t.Errorf("a reporter locked a file:\n%s", out)
		}
		if out, code := w.lfs(t, bob, w.keys["bob"], "lfs", "unlock", "--force", "big.bin"); code == 0 {
			t.Errorf("bob removed alice's lock:\n%s", out)
		}
		// A deploy key cannot lock.
		ci := w.lfsClone(t, w.pushKey)
		if out, code := w.lfs(t, ci, w.pushKey, "lfs", "lock", "ci.bin"); code == 0 {
			t.Errorf("a deploy key locked a file:\n%s", out)
		}
		// Its owner unlocks; a maintainer removes anyone's.
		w.mustLFS(t, alice, w.keys["alice"], "lfs", "unlock", "big.bin")
		w.mustLFS(t, bob, w.keys["bob"], "lfs", "lock", "big.bin")
		mia := w.lfsClone(t, w.keys["mia"])
		w.mustLFS(t, mia, w.keys["mia"], "lfs", "unlock", "--force", "big.bin")
		if locks := w.mustLFS(t, rita, w.keys["rita"], "lfs", "locks"); strings.Contains(locks, "big.bin\t") {
			t.Errorf("locks after unlocking = %q", locks)
		}
		// Each lock and unlock is an audit event.
		evs, _, err := w.store.ListAuditEvents(w.ctx, keystore.AuditFilter{}, keystore.Page{PerPage: 100})
		if err != nil {
			t.Fatal(err)
		}
		counts := map[string]int{}
		forced := 0
		for _, ev := range evs {
			counts[ev.Action]++
			if ev.Action == "lfs_lock_deleted" && strings.Contains(ev.Details, `"forced":true`) {
				forced++
			}
		}
		if counts["lfs_lock_created"] != 2 || counts["lfs_lock_deleted"] != 2 || forced != 1 {
			t.Errorf("lock audit events: %v (forced %d), want 2 created, 2 deleted, 1 forced", counts, forced)
		}
	})

	t.Run("audited", func(t *testing.T) {
		evs, _, err := w.store.ListAuditEvents(w.ctx, keystore.AuditFilter{}, keystore.Page{PerPage: 100})
		if err != nil {
			t.Fatal(err)
		}
		var up, down bool
		for _, ev := range evs {
			var d map[string]any
			_ = json.Unmarshal([]byte(ev.Details), &d)
			switch ev.Action {
			case "git_lfs_upload":
				oids, _ := d["oids"].([]any)
				if len(oids) == 1 && oids[0] == bigOID && d["bytes"] == float64(size) && d["exit_status"] == float64(0) {
					up = true
				}
			case "git_lfs_download":
				if d["objects"] == float64(1) && d["bytes"] == float64(size) {
					down = true
				}
			}
		}
		if !up || !down {
			t.Errorf("no git_lfs_upload event naming the 20 MB object (%v) or no git_lfs_download of it (%v)", up, down)
		}
	})

	t.Run("deleted-with-the-project", func(t *testing.T) {
		dir := w.repos.LFS("eng/media").Dir
		if _, err := os.Stat(dir); err != nil {
			t.Fatalf("no LFS storage before deletion: %v", err)
		}
		alice := w.lfsClone(t, w.keys["alice"])
		w.mustLFS(t, alice, w.keys["alice"], "lfs", "lock", "big.bin")
		w.mustAPI(t, http.MethodDelete, "/projects/"+itoa(w.media), w.adminToken, nil, http.StatusAccepted, nil)
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("LFS storage after the project was deleted: %v", err)
		}
		if locks, err := w.store.LFSLocks(w.ctx, w.media, 0, 100); err != nil || len(locks) != 0 {
			t.Fatalf("locks after the project was deleted: %v, %v", locks, err)
		}
	})
}

// lfsPkt is one pkt-line; "0000" and "0001" pass as they are.
func lfsPkt(s string) string {
	if s == "0000" || s == "0001" {
		return s
	}
	return pktLine(s)
}

// transferScript runs git-lfs-transfer on eng/media with the given
// pkt-lines as its whole input and returns what the server wrote and its
// exit status.
func (w *lfsWorld) transferScript(t *testing.T, key, op string, lines ...string) (string, string, int) {
	t.Helper()
	var in strings.Builder
	for _, l := range lines {
		in.WriteString(lfsPkt(l))
	}
	return w.sshStdin(t, in.String(), []string{key}, "git", "git-lfs-transfer eng/media.git "+op)
}

// TestGitLFSRefusals: a corrupt upload and an object over the size limit
// are refused and not stored, by the protocol as a client speaks it; git
// lfs push over the limit fails with the limit named; git-lfs-authenticate
// is refused with a message that points at the SSH protocol; revoking a
// member ends an open LFS session.
func TestGitLFSRefusals(t *testing.T) {
	t.Parallel()
	const limit = 1 << 20
	w := newLFSWorld(t, limit, 2*time.Second)
	content := []byte("the real content\n")
	sum := sha256.Sum256(content)
	oid := hex.EncodeToString(sum[:])

	t.Run("corrupt-upload", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			data string
			size int
		}{
			{"other-content", "not the content!\n", len(content)},
			{"short", "the real", len(content)},
		} {
			out, _, code := w.transferScript(t, w.keys["alice"], "upload",
				"version 1\n", "0000",
				"put-object "+oid+"\n", fmt.Sprintf("size=%d\n", tc.size), "0001", tc.data, "0000",
				"quit\n")
			if code != 0 || !strings.Contains(out, "status 400") || !strings.Contains(out, "does not match its id and size") {
				t.Errorf("%s: exit %d, server said %q; want status 400 naming the mismatch", tc.name, code, out)
			}
			if w.stored(t, oid) {
				t.Fatalf("%s: a corrupt object was stored", tc.name)
			}
		}
		// The same session goes on: the true content is stored.
		out, _, code := w.transferScript(t, w.keys["alice"], "upload",
			"version 1\n", "0000",
			"put-object "+oid+"\n", fmt.Sprintf("size=%d\n", len(content)), "0001", "not the content!\n", "0000",
			"put-object "+oid+"\n", fmt.Sprintf("size=%d\n", len(content)), "0001", string(content), "0000",
			"verify-object "+oid+"\n", fmt.Sprintf("size=%d\n", len(content)), "0000",
			"quit\n")
		if code != 0 || strings.Count(out, "status 200") < 4 || !w.stored(t, oid) {
			t.Fatalf("exit %d, server said %q; want the second upload stored and verified", code, out)
		}
	})

	t.Run("longer-than-announced", func(t *testing.T) {
		other := []byte("some other content\n")
		s := sha256.Sum256(other)
		o := hex.EncodeToString(s[:])
		out, stderr, code := w.transferScript(t, w.keys["alice"], "upload",
			"version 1\n", "0000",
			"put-object "+o+"\n", "size=4\n", "0001", string(other), "0000",
			"quit\n")
		if code != 1 || !strings.Contains(out, "status 400") || !strings.Contains(stderr, "protocol violation") || w.stored(t, o) {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 400, the session closed, nothing stored", code, out, stderr)
		}
	})

	t.Run("over-the-limit", func(t *testing.T) {
		big := strings.Repeat("x", limit+1)
		s := sha256.Sum256([]byte(big))
		o := hex.EncodeToString(s[:])
		out, _, _ := w.transferScript(t, w.keys["alice"], "upload",
			"version 1\n", "0000",
			"batch\n", "transfer=basic\n", "0001", fmt.Sprintf("%s %d\n", o, len(big)), "0000",
			"quit\n")
		if !strings.Contains(out, "status 405") || !strings.Contains(out, "larger than this server's limit of 1048576 bytes") {
			t.Errorf("batch over the limit: server said %q", out)
		}
		// And with git-lfs: the push fails naming the limit.
		dir := w.lfsClone(t, w.keys["alice"])
		big2 := w.addLFSFile(t, dir, "huge.bin", limit+1)
		out, code := w.lfs(t, dir, w.keys["alice"], "push", "origin", "HEAD:main")
		if code == 0 || !strings.Contains(out, "limit of 1048576 bytes") {
			t.Errorf("git push over the limit: exit %d\n%s", code, out)
		}
		if w.stored(t, big2) {
			t.Fatal("an object over the limit was stored")
		}
	})

	t.Run("reader-cannot-put", func(t *testing.T) {
		out, stderr, code := w.transferScript(t, w.keys["rita"], "upload", "version 1\n", "0000", "quit\n")
		if code != 1 || out != "" || stderr != msgNoPush {
			t.Errorf("reporter upload session: exit %d, stdout %q, stderr %q", code, out, stderr)
		}
		// A download session refuses put-object and closes.
		out, _, code = w.transferScript(t, w.keys["rita"], "download",
			"version 1\n", "0000",
			"put-object "+oid+"\n", fmt.Sprintf("size=%d\n", len(content)), "0001", string(content), "0000",
			"quit\n")
		if code != 1 || !strings.Contains(out, "status 403") {
			t.Errorf("put-object in a download session: exit %d, server said %q", code, out)
		}
	})

	t.Run("malformed", func(t *testing.T) {
		for _, script := range [][]string{
			{"version\n"},
			{"version 1\n", "0000", "get-object ../../../../etc/passwd\n", "0000", "quit\n"},
			{"version 1\n", "0000", "batch\n", "0001", "zz 1\n", "0000", "quit\n"},
			{"version 1\n", "0000", "list-lock\n", "cursor=x\n", "0000", "quit\n"},
			{"version 1\n", "0000", "frobnicate\n", "quit\n"},
		} {
			out, stderr, _ := w.transferScript(t, w.keys["alice"], "download", script...)
			if !strings.Contains(out, "status 400") || strings.Contains(stderr, "panic") {
				t.Errorf("%q: server said %q, stderr %q; want status 400", script, out, stderr)
			}
		}
		if !strings.Contains(w.logs.String(), "git-lfs-transfer") || strings.Contains(w.logs.String(), "panic") {
			t.Errorf("a malformed request panicked:\n%s", w.logs.String())
		}
	})

	t.Run("git-lfs-authenticate", func(t *testing.T) {
		_, stderr, code := w.ssh(t, []string{w.keys["alice"]}, "git", "git-lfs-authenticate eng/media.git download")
		if code != 1 || !strings.Contains(stderr, "serves Git LFS over SSH (git-lfs-transfer)") {
			t.Errorf("git-lfs-authenticate: exit %d, stderr %q", code, stderr)
		}
		_, stderr, code = w.ssh(t, []string{w.keys["rita"]}, "git", "git-lfs-authenticate eng/media.git upload")
		if code != 1 || stderr != msgNoPush {
			t.Errorf("git-lfs-authenticate upload by a reporter: exit %d, stderr %q", code, stderr)
		}
	})

	t.Run("waiting-is-no-stall", func(t *testing.T) {
		// git-lfs keeps idle sessions in its pool: one that waits longer
		// than the idle timeout (2s here) between commands still answers.
		s := w.startSession(t, []string{w.keys["rita"]}, "git", "git-lfs-transfer eng/media.git download")
		if !s.waitOutput("locking", 10*time.Second) {
			t.Fatalf("no capabilities: %q", s.stdout.String())
		}
		time.Sleep(5 * time.Second)
		if _, err := io.WriteString(s.stdin, lfsPkt("version 1\n")+"0000"+lfsPkt("quit\n")); err != nil {
			t.Fatalf("session closed while waiting: %v", err)
		}
		if !s.waitExit(10*time.Second) || strings.Count(s.stdout.String(), "status 200") != 2 {
			t.Fatalf("after waiting: stdout %q, stderr %q", s.stdout.String(), s.stderr.String())
		}
	})

	t.Run("revocation-ends-a-session", func(t *testing.T) {
		s := w.startSession(t, []string{w.keys["bob"]}, "git", "git-lfs-transfer eng/media.git upload")
		if !s.waitOutput("locking", 10*time.Second) {
			t.Fatalf("no capabilities: %q", s.stdout.String())
		}
		start := time.Now()
		w.mustAPI(t, http.MethodDelete, "/groups/"+itoa(w.eng)+"/members/"+itoa(w.ids["bob"]), w.adminToken, nil, http.StatusNoContent, nil)
		if !s.waitExit(enforceBound) {
			t.Fatal("the LFS session outlived the membership")
		}
		t.Logf("ended %v after the change", time.Since(start))
		if !strings.Contains(s.stderr.String(), "keygate: this session was ended") {
			t.Errorf("stderr = %q", s.stderr.String())
		}
	})
}
