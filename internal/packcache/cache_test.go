package packcache

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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

// A push between two clones is visible to the second: the push makes the
// repository's packs stale (sshd calls Invalidate when receive-pack starts
// and ends), and a push made outside keygate changes the wants anyway.
func TestPushBetweenClonesIsVisible(t *testing.T) {
	t.Parallel()
	f := newRepo(t, 2, 2, 10, 4<<10)
	c := newCache(t, nil)
	dir := t.TempDir()
	clone := func(name string) string {
		dest := filepath.Join(dir, name)
		if out, err := f.clone(t, c, 3, dest); err != nil {
			t.Fatalf("clone %s: %v\n%s", name, err, out)
		}
		return f.fsck(t, dest)
	}
	clone("first")
	// Through keygate: Invalidate drops the completed entry at once.
	c.Invalidate(3)
	pushed := f.commit(t, "second")
	c.Invalidate(3)
	if got := clone("second"); got != pushed {
		t.Errorf("the clone after a push has HEAD %s, want the pushed %s", got, pushed)
	}
	if s := c.Stats(); s.Misses != 2 || s.Hits != 0 || s.Evictions != 1 {
		t.Errorf("stats = %+v, want 2 misses and the first pack evicted by the push", s)
	}
	// Outside keygate (no Invalidate): the new wants are a new key.
	outside := f.commit(t, "third")
	if got := clone("third"); got != outside {
		t.Errorf("the clone after a push outside keygate has HEAD %s, want %s", got, outside)
	}
	// And the same state again is a hit.
	if got := clone("fourth"); got != outside {
		t.Errorf("HEAD = %s, want %s", got, outside)
	}
	if s := c.Stats(); s.Misses != 3 || s.Hits != 1 {
		t.Errorf("stats = %+v, want 3 misses and 1 hit", s)
	}
}

// Different filters and depths never share a pack; the same ones do.
func TestFiltersAndDepthsNeverShare(t *testing.T) {
	t.Parallel()
	f := newRepo(t, 3, 4, 8, 4<<10)
	mustRun(t, f.bare, f.env, "git", "config", "uploadpack.allowFilter", "true")
	c := newCache(t, nil)
	dir := t.TempDir()
	variants := []struct {
		name  string
		extra []string
		check func(t *testing.T, dest string)
	}{
		{"full", nil, func(t *testing.T, dest string) {
			f.fsck(t, dest)
			if n := strings.TrimSpace(mustRun(t, dest, f.env, "git", "rev-list", "--count", "HEAD")); n != "4" {
				t.Errorf("full clone has %s commits, want 4", n)
			}
		}},
		{"depth1", []string{"--depth=1"}, func(t *testing.T, dest string) {
			f.fsck(t, dest)
			if n := strings.TrimSpace(mustRun(t, dest, f.env, "git", "rev-list", "--count", "HEAD")); n != "1" {
				t.Errorf("--depth=1 clone has %s commits, want 1", n)
			}
		}},
		{"depth2", []string{"--depth=2"}, func(t *testing.T, dest string) {
			f.fsck(t, dest)
			if n := strings.TrimSpace(mustRun(t, dest, f.env, "git", "rev-list", "--count", "HEAD")); n != "2" {
				t.Errorf("--depth=2 clone has %s commits, want 2", n)
			}
		}},
		{"blobless", []string{"--filter=blob:none", "--no-checkout"}, func(t *testing.T, dest string) {
			missing := mustRun(t, dest, f.env, "git", "rev-list", "--objects", "--missing=print", "HEAD")
			if !strings.Contains(missing, "\n?") && !strings.HasPrefix(missing, "?") {
				t.Errorf("a blob:none clone has every blob: it got an unfiltered pack")
			}
		}},
		{"treeless", []string{"--filter=tree:0", "--no-checkout"}, func(t *testing.T, dest string) {
			missing := mustRun(t, dest, f.env, "git", "rev-list", "--objects", "--missing=print", "HEAD")
			if !strings.Contains(missing, "\n?") && !strings.HasPrefix(missing, "?") {
				t.Errorf("a tree:0 clone has every tree: it got an unfiltered pack")
			}
		}},
	}
	for round := range 2 {
		for _, v := range variants {
			dest := filepath.Join(dir, fmt.Sprint(v.name, round))
			if out, err := f.clone(t, c, 1, dest, v.extra...); err != nil {
				t.Fatalf("%s clone: %v\n%s", v.name, err, out)
			}
			v.check(t, dest)
		}
	}
	// Each variant computed once, then served once from its own entry.
	if s := c.Stats(); s.Misses != int64(len(variants)) || s.Hits != int64(len(variants)) || s.Shared != 0 {
		t.Errorf("stats = %+v, want %d misses then %d hits", s, len(variants), len(variants))
	}
}

// Identical requests on two repositories with the same objects never
// share: the session (the repository it was authorized for) is part of
// the key, and the hook cannot name another.
func TestNeverAcrossRepositories(t *testing.T) {
	t.Parallel()
	a := newRepo(t, 4, 1, 4, 1<<10)
	b := newRepo(t, 4, 1, 4, 1<<10)
	headA := strings.TrimSpace(mustRun(t, a.bare, a.env, "git", "rev-parse", "main"))
	headB := strings.TrimSpace(mustRun(t, b.bare, b.env, "git", "rev-parse", "main"))
	if headA != headB {
		t.Fatalf("fixtures differ (%s, %s): the test needs identical repositories", headA, headB)
	}
	c := newCache(t, nil)
	dir := t.TempDir()
	for i, run := range []struct {
		f  *fixture
		id int64
	}{{a, 1}, {b, 2}, {b, 1}} { // the last: another directory under a known id
		if out, err := run.f.clone(t, c, run.id, filepath.Join(dir, fmt.Sprint(i))); err != nil {
			t.Fatalf("clone %d: %v\n%s", i, err, out)
		}
	}
	if s := c.Stats(); s.Misses != 3 || s.Hits != 0 {
		t.Errorf("stats = %+v, want 3 misses: no pack shared across repositories", s)
	}
}

// The socket answers only sessions keygate attached after an access
// decision, while they last, and only pack-objects.
func TestOnlyLiveSessions(t *testing.T) {
	t.Parallel()
	f := newRepo(t, 5, 1, 2, 1<<10)
	head := strings.TrimSpace(mustRun(t, f.bare, f.env, "git", "rev-parse", "main"))
	c := newCache(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	_, env, release := c.Attach(ctx, 1, f.bare)
	defer release()
	stdin := head + "\n--not\n\n"

	out, _, code := hookCall(t, env, packArgs, stdin)
	if code != 0 || len(out) == 0 {
		t.Fatalf("a live session's request: exit %d, %d bytes", code, len(out))
	}
	f.verifyPack(t, out)

	forged := []string{envSocket + "=" + envValue(env, envSocket), envToken + "=" + strings.Repeat("0", 64)}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"unknown-token", forged, packArgs, "no such session"},
		{"not-pack-objects", env, []string{"git", "upload-pack", "--stdout"}, "not pack-objects"},
		{"a-path-argument", env, append(append([]string{}, packArgs...), "/etc/passwd"), "unexpected argument"},
		{"not-git", env, []string{"sh", "pack-objects", "--stdout"}, "not a git command"},
	} {
		out, errb, code := hookCall(t, tc.env, tc.args, stdin)
		if code == 0 || len(out) != 0 || !strings.Contains(string(errb), tc.want) {
			t.Errorf("%s: exit %d, %d bytes out, stderr %q; want a refusal naming %q", tc.name, code, len(out), errb, tc.want)
		}
	}
	// Its context ended (the client left, or revalidation revoked it):
	// refused, although the pack is in the cache.
	cancel()
	if out, errb, code := hookCall(t, env, packArgs, stdin); code == 0 || len(out) != 0 || !strings.Contains(string(errb), "no such session") {
		t.Errorf("ended session: exit %d, %d bytes, %q", code, len(out), errb)
	}
	release()
	if out, errb, code := hookCall(t, env, packArgs, stdin); code == 0 || len(out) != 0 {
		t.Errorf("released session: exit %d, %d bytes, %q", code, len(out), errb)
	}
	if s := c.Stats(); s.Misses != 1 || s.Hits != 0 {
		t.Errorf("stats = %+v: refused requests must never be served", s)
	}
}

// A reader that stops reading does not stall the others: a pack larger
// than the entry bound goes through a ring, the producer waits for the
// slowest reader, and after ReaderTimeout without progress that reader is
// cut; the others finish with valid packs.
func TestStalledReaderDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	f := newRepo(t, 6, 1, 16, 256<<10) // ~4 MiB of incompressible blobs
	head := strings.TrimSpace(mustRun(t, f.bare, f.env, "git", "rev-parse", "main"))
	c := newCache(t, func(cfg *Config) {
		cfg.MaxEntryBytes = 256 << 10
		cfg.ReaderTimeout = 300 * time.Millisecond
	})
	c.holdProducer = make(chan struct{})
	_, env, release := c.Attach(context.Background(), 1, f.bare)
	defer release()
	stdin := head + "\n--not\n\n"

	// The stalled reader: sends its request and never reads.
	stalled := dialSession(t, env)
	defer stalled.Close()
	if err := sendRequest(stalled, envValue(env, envToken), packArgs, strings.NewReader(stdin)); err != nil {
		t.Fatal(err)
	}
	if !waitFor(func() bool { return c.Stats().Misses == 1 }) {
		t.Fatal("the stalled reader's request did not arrive")
	}
	const others = 3
	var wg sync.WaitGroup
	outs := make([][]byte, others)
	codes := make([]int, others)
	for i := range others {
		wg.Go(func() { outs[i], _, codes[i] = hookCall(t, env, packArgs, stdin) })
	}
	if !waitFor(func() bool { return c.Stats().Shared == others }) {
		t.Fatalf("the other readers did not join: %+v", c.Stats())
	}
	close(c.holdProducer)
	start := time.Now()
	wg.Wait() // would hang if the stalled reader held the producer
	t.Logf("others done in %v", time.Since(start))
	for i := range others {
		if codes[i] != 0 {
			t.Fatalf("reader %d: exit %d", i, codes[i])
		}
		f.verifyPack(t, outs[i])
	}
	if s := c.Stats(); s.ReadersCut != 1 {
		t.Errorf("stats = %+v, want the stalled reader cut", s)
	}
	// The cut reader sees its answer end without an exit status.
	if code := relay(stalled, io.Discard, io.Discard); code == 0 {
		t.Error("the cut reader got a complete answer")
	}
	// A pack larger than the entry bound is never kept.
	if s := c.Stats(); s.Entries != 0 {
		t.Errorf("stats = %+v, want no entry kept", s)
	}
}

// The cache never holds more than MaxBytes on disk (in flight and
// completed, sampled throughout), keeps nothing over MaxEntryBytes, and
// evicts the least recently used packs to make room.
func TestByteBound(t *testing.T) {
	t.Parallel()
	f := newRepo(t, 7, 1, 1, 8)
	var heads []string
	for i := range 6 {
		b := make([]byte, 400<<10) // incompressible: each commit adds ~0.4 MiB to its pack
		_, _ = rand.Read(b)
		if err := os.WriteFile(filepath.Join(f.work, fmt.Sprintf("big%d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		mustRun(t, f.work, f.env, "git", "add", "-A")
		mustRun(t, f.work, f.env, "git", "commit", "--quiet", "-m", fmt.Sprint("big ", i))
		heads = append(heads, strings.TrimSpace(mustRun(t, f.work, f.env, "git", "rev-parse", "HEAD")))
	}
	mustRun(t, f.work, f.env, "git", "push", "--quiet", f.bare, "HEAD:refs/heads/main")
	const maxBytes, maxEntry = 2 << 20, 1 << 20
	c := newCache(t, func(cfg *Config) {
		cfg.MaxBytes, cfg.MaxEntryBytes = maxBytes, maxEntry
	})
	_, env, release := c.Attach(context.Background(), 1, f.bare)
	defer release()

	stop := make(chan struct{})
	sampled := make(chan error, 1)
	go func() {
		var worst int64
		for {
			select {
			case <-stop:
				if worst > maxBytes {
					sampled <- fmt.Errorf("the cache held %d bytes, over its bound of %d", worst, maxBytes)
				}
				close(sampled)
				return
			default:
			}
			c.mu.Lock()
			worst = max(worst, c.reserved)
			for _, e := range c.index {
				if e.done && e.cap > maxEntry {
					worst = max(worst, maxBytes+1)
				}
			}
			c.mu.Unlock()
			worst = max(worst, dirBytes(c.cfg.Dir))
			time.Sleep(time.Millisecond)
		}
	}()
	// Packs of ~0.4, 0.8, … 2.4 MiB: the first two fit an entry, the rest
	// go through a ring of 1 MiB.
	for _, h := range append(heads, heads[0], heads[1], heads[5]) {
		out, errb, code := hookCall(t, env, packArgs, h+"\n--not\n\n")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errb)
		}
		f.verifyPack(t, out)
	}
	close(stop)
	if err := <-sampled; err != nil {
		t.Error(err)
	}
	s := c.Stats()
	if s.Evictions == 0 || s.Bytes > maxBytes {
		t.Errorf("stats = %+v: want evictions and at most %d bytes", s, maxBytes)
	}
	// The largest pack was computed twice: over the entry bound, never kept.
	if s.Misses < 8 {
		t.Errorf("stats = %+v: a pack over the entry bound must not be kept", s)
	}
}

// dirBytes is the size of the regular files in dir.
func dirBytes(dir string) int64 {
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}
