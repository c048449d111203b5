package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestPackCacheOverSSH: real git clones over real ssh through keygate's
// pack-objects cache (on in every e2e server, as keygate serve's default).
func TestPackCacheOverSSH(t *testing.T) {
	t.Parallel()
	w := newGitWorld(t)
	pc := w.packCache
	base := t.TempDir()
	aliceKeys := []string{w.alice}

	// Some history, pushed over SSH by alice.
	work := filepath.Join(base, "work")
	w.mustGit(t, "", aliceKeys, "clone", "--quiet", w.cloneURL("eng/api"), work)
	for i := range 3 {
		w.commitFile(t, work, fmt.Sprintf("file%d.txt", i), strings.Repeat(fmt.Sprintf("line %d\n", i), 5000))
	}
	w.mustGit(t, work, aliceKeys, "push", "--quiet", "origin", "HEAD:refs/heads/main")
	head := w.serverRef(t, "eng/api", "refs/heads/main")
	before := pc.Stats()

	t.Run("concurrent-identical-clones-share-one-pack", func(t *testing.T) {
		const n = 6
		var wg sync.WaitGroup
		codes, errs := make([]int, n), make([]string, n)
		for i := range n {
			wg.Go(func() {
				_, errs[i], codes[i] = w.git(t, "", aliceKeys, "clone", "--quiet", w.cloneURL("eng/api"), filepath.Join(base, fmt.Sprint("storm", i)))
			})
		}
		wg.Wait()
		for i := range n {
			if codes[i] != 0 {
				t.Fatalf("clone %d: exit %d: %s", i, codes[i], errs[i])
			}
			dir := filepath.Join(base, fmt.Sprint("storm", i))
			w.mustGit(t, dir, nil, "fsck", "--full", "--strict", "--no-progress")
			if got := strings.TrimSpace(w.mustGit(t, dir, nil, "rev-parse", "HEAD")); got != head {
				t.Errorf("clone %d HEAD = %s, want %s", i, got, head)
			}
		}
		s := pc.Stats()
		if s.Misses-before.Misses != 1 || (s.Hits+s.Shared)-(before.Hits+before.Shared) != n-1 {
			t.Errorf("stats %+v (before %+v): want one pack-objects for %d identical clones", s, before, n)
		}
	})

	t.Run("no-access-never-gets-a-cached-pack", func(t *testing.T) {
		// rita (reporter) reads: from the cache.
		w.mustGit(t, "", []string{w.rita}, "clone", "--quiet", w.cloneURL("eng/api"), filepath.Join(base, "rita1"))
		warm := pc.Stats()
		// Her membership removed: refused, though the pack is cached.
		w.mustAPI(t, http.MethodDelete, fmt.Sprintf("/groups/%d/members/%d", w.engID, w.ids["rita"]), w.adminToken, nil, http.StatusNoContent, nil)
		for _, who := range []string{"rita", "gus", "nora"} {
			dest := filepath.Join(base, who+"2")
			_, stderr, code := w.git(t, "", []string{w.keys[who]}, "clone", "--quiet", w.cloneURL("eng/api"), dest)
			if code == 0 || !strings.Contains(stderr, strings.TrimSpace(msgNotFound)) {
				t.Errorf("%s: exit %d, stderr %q; want not found", who, code, stderr)
			}
			if _, err := os.Stat(filepath.Join(dest, ".git", "objects", "pack")); err == nil {
				if ents, _ := os.ReadDir(filepath.Join(dest, ".git", "objects", "pack")); len(ents) > 0 {
					t.Errorf("%s received a pack", who)
				}
			}
		}
		if s := pc.Stats(); s.Hits+s.Shared+s.Misses != warm.Hits+warm.Shared+warm.Misses {
			t.Errorf("stats %+v (before %+v): a refused clone reached the cache", s, warm)
		}
	})

	t.Run("push-between-clones-is-visible", func(t *testing.T) {
		b := pc.Stats()
		pushed := w.commitFile(t, work, "after.txt", "after the storm\n")
		w.mustGit(t, work, aliceKeys, "push", "--quiet", "origin", "HEAD:refs/heads/main")
		dest := filepath.Join(base, "after")
		w.mustGit(t, "", aliceKeys, "clone", "--quiet", w.cloneURL("eng/api"), dest)
		if got := strings.TrimSpace(w.mustGit(t, dest, nil, "rev-parse", "HEAD")); got != pushed {
			t.Errorf("clone after a push: HEAD %s, want %s", got, pushed)
		}
		w.mustGit(t, dest, nil, "fsck", "--full", "--strict", "--no-progress")
		if s := pc.Stats(); s.Evictions <= b.Evictions || s.Misses != b.Misses+1 {
			t.Errorf("stats %+v (before %+v): the push must drop the cached pack and the clone compute a new one", s, b)
		}
	})

	t.Run("depths-never-share", func(t *testing.T) {
		b := pc.Stats()
		for i, depth := range []string{"1", "2", "1"} {
			dest := filepath.Join(base, fmt.Sprint("shallow", i))
			w.mustGit(t, "", aliceKeys, "clone", "--quiet", "--depth="+depth, "--no-local", w.cloneURL("eng/api"), dest)
			if got := strings.TrimSpace(w.mustGit(t, dest, nil, "rev-list", "--count", "HEAD")); got != depth {
				t.Errorf("--depth=%s clone has %s commits", depth, got)
			}
		}
		if s := pc.Stats(); s.Misses != b.Misses+2 || s.Hits != b.Hits+1 {
			t.Errorf("stats %+v (before %+v): want depths 1 and 2 computed once each, depth 1 again a hit", s, b)
		}
	})
}
