package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/packcache"
)

// TestPackCacheFlags is not parallel: it sets the environment.
func TestPackCacheFlags(t *testing.T) {
	for _, name := range []string{"KEYGATE_PACK_CACHE_MAX_BYTES", "KEYGATE_PACK_CACHE_MAX_ENTRY_BYTES", "KEYGATE_PACK_CACHE_TTL",
		"KEYGATE_PACK_CACHE_READER_TIMEOUT", "KEYGATE_PACK_CACHE_DIR"} {
		t.Setenv(name, "")
	}
	c, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.PackCacheMaxBytes != packcache.DefaultMaxBytes || c.PackCacheMaxEntryBytes != packcache.DefaultMaxEntryBytes ||
		c.PackCacheTTL != packcache.DefaultTTL || c.PackCacheReaderTimeout != packcache.DefaultReaderTimeout || c.PackCacheDir != "" {
		t.Fatalf("defaults: %+v", c)
	}
	t.Setenv("KEYGATE_PACK_CACHE_MAX_BYTES", "0")
	t.Setenv("KEYGATE_PACK_CACHE_MAX_ENTRY_BYTES", "1000")
	t.Setenv("KEYGATE_PACK_CACHE_TTL", "1m")
	t.Setenv("KEYGATE_PACK_CACHE_READER_TIMEOUT", "5s")
	t.Setenv("KEYGATE_PACK_CACHE_DIR", "/dev/shm/kg")
	if c, err = parseServe(nil, io.Discard); err != nil || c.PackCacheMaxBytes != 0 || c.PackCacheMaxEntryBytes != 1000 ||
		c.PackCacheTTL != time.Minute || c.PackCacheReaderTimeout != 5*time.Second || c.PackCacheDir != "/dev/shm/kg" {
		t.Fatalf("from env: %+v, %v", c, err)
	}
	if c, err = parseServe([]string{"--pack-cache-max-bytes", "5000", "--pack-cache-ttl", "2m"}, io.Discard); err != nil ||
		c.PackCacheMaxBytes != 5000 || c.PackCacheTTL != 2*time.Minute {
		t.Fatalf("flags over env: %+v, %v", c, err)
	}
	for _, args := range [][]string{{"--pack-cache-max-bytes", "-1"}, {"--pack-cache-max-entry-bytes", "0"},
		{"--pack-cache-ttl", "0s"}, {"--pack-cache-reader-timeout", "-1s"}} {
		if _, err := parseServe(args, io.Discard); err == nil || !strings.HasPrefix(err.Error(), args[0]+" ") {
			t.Errorf("%v: %v (want an error naming %s)", args, err, args[0])
		}
	}
	t.Setenv("KEYGATE_PACK_CACHE_MAX_BYTES", "lots")
	if _, err := parseServe(nil, io.Discard); err == nil {
		t.Error("KEYGATE_PACK_CACHE_MAX_BYTES=lots accepted")
	}
}

// TestPackCacheInTheBinary: the built keygate is its own hook — two clones
// through `keygate serve` compute one pack; what an earlier run left in the
// cache directory is gone at start.
func TestPackCacheInTheBinary(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"ssh", "git"} {
		if _, err := exec.LookPath(name); err != nil {
			t.Skipf("%s not installed", name)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	stale := filepath.Join(dataDir, "pack-cache", "pack-left-by-a-crash")
	if err := os.MkdirAll(filepath.Dir(stale), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	token := randomToken("pc-admin-")
	p := startServe(t, serveOpts{DataDir: dataDir, Env: []string{"KEYGATE_ADMIN_TOKEN=" + token}})
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("a file of an earlier run survived the start: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dataDir, "pack-cache")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("pack-cache directory: %v, %v; want mode 0700", fi, err)
	}
	g := p.must("POST", "/api/v4/groups", token, map[string]any{"name": "pc", "path": "pc"}, 201).Object(t)
	p.must("POST", "/api/v4/projects", token, map[string]any{"namespace_id": id(t, g), "name": "repo", "path": "repo"}, 201)
	work, sshEnv := p.gitKey(t, token, "pc")
	_, port, _ := strings.Cut(p.SSHAddr, ":")
	url := "ssh://git@127.0.0.1:" + port + "/pc/repo.git"
	must := func(dir string, args ...string) string {
		out, err := gitRun(ctx, dir, sshEnv, args...)
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return out
	}
	src := filepath.Join(work, "src")
	must(work, "init", "--quiet", "--initial-branch=main", src)
	if err := os.WriteFile(filepath.Join(src, "README"), []byte(strings.Repeat("pack cache\n", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	must(src, "add", "README")
	must(src, "commit", "--quiet", "-m", "first")
	must(src, "push", "--quiet", url, "HEAD:refs/heads/main")
	for _, name := range []string{"one", "two"} {
		must(work, "clone", "--quiet", url, filepath.Join(work, name))
		must(filepath.Join(work, name), "fsck", "--full", "--strict", "--no-progress")
	}
	metrics := string(p.must("GET", "/metrics", "", nil, 200).Body)
	for _, want := range []string{`keygate_pack_cache_requests_total{result="miss"} 1`, `keygate_pack_cache_requests_total{result="hit"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, strings.Join(regexp.MustCompile(`(?m)^keygate_pack_cache.*$`).FindAllString(metrics, -1), "\n"))
		}
	}
}
