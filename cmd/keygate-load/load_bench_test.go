package main

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// BenchmarkIndexLoad measures Index.Load of a seeded keystore (SPEC §10:
// 1,000,000 keys in ≤ 5 s) and the index's memory per key (≤ 250 bytes,
// one user per key; live heap growth plus the key table mapped off the
// heap). It seeds KEYGATE_LOAD_KEYS (default 1,000,000) users into a temp
// dir first (about a minute), or reuses the seeded KEYGATE_LOAD_DIR:
//
//	go test -run '^$' -bench IndexLoad -benchtime 3x ./cmd/keygate-load
func BenchmarkIndexLoad(b *testing.B) {
	ctx := context.Background()
	dir := os.Getenv("KEYGATE_LOAD_DIR")
	if dir == "" {
		n := 1_000_000
		if s := os.Getenv("KEYGATE_LOAD_KEYS"); s != "" {
			var err error
			if n, err = strconv.Atoi(s); err != nil {
				b.Fatal(err)
			}
		}
		dir = b.TempDir()
		if _, err := seed(ctx, seedOptions{DataDir: dir, Keys: n}); err != nil {
			b.Fatal(err)
		}
	}
	store, err := keystore.Open(ctx, keystore.Config{DSN: filepath.Join(dir, "keygate.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	var perKey float64
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.GC() // and what the first one's cleanups released
		runtime.ReadMemStats(&m0)
		ix := authindex.New(store)
		b.StartTimer()
		if err := ix.Load(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		perKey = float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)+int64(ix.OffHeapBytes())) / float64(max(ix.Len(), 1))
		runtime.KeepAlive(ix)
		b.StartTimer()
	}
	b.ReportMetric(perKey, "index-bytes/key")
}
