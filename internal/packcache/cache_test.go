package packcache

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Identical concurrent clones share one pack-objects; a later one is a
// hit; every clone is complete and valid.
func TestConcurrentClonesShareOnePack(t *testing.T) {
	t.Parallel()
	f := newRepo(t, 1, 3, 40, 8<<10)
	want := strings.TrimSpace(mustRun(t, f.bare, f.env, "git", "rev-parse", "main"))
	c := newCache(t, nil)
	c.holdProducer = make(chan struct{})
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	out := make([]string, n)
	dir := t.TempDir()
	for i := range n {
		wg.Go(func() { out[i], errs[i] = f.clone(t, c, 7, filepath.Join(dir, fmt.Sprint(i))) })
	}
	// Every request joins before pack-objects runs: one miss, n-1 shared.
	if !waitFor(func() bool { s := c.Stats(); return s.Misses+s.Shared == n }) {
		t.Fatalf("requests did not arrive: %+v", c.Stats())
	}
	close(c.holdProducer)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("clone %d: %v\n%s", i, errs[i], out[i])
		}
		if got := f.fsck(t, filepath.Join(dir, fmt.Sprint(i))); got != want {
			t.Errorf("clone %d HEAD = %s, want %s", i, got, want)
		}
	}
	s := c.Stats()
	if s.Misses != 1 || s.Shared != n-1 || s.ServedFromCache == 0 {
		t.Errorf("stats = %+v, want 1 miss and %d shared", s, n-1)
	}
	// Later: served from the completed entry.
	later := filepath.Join(dir, "later")
	if o, err := f.clone(t, c, 7, later); err != nil {
		t.Fatalf("later clone: %v\n%s", err, o)
	}
	if got := f.fsck(t, later); got != want {
		t.Errorf("later clone HEAD = %s, want %s", got, want)
	}
	if s := c.Stats(); s.Hits != 1 || s.Misses != 1 {
		t.Errorf("after a later clone: %+v, want 1 hit", s)
	}
}
