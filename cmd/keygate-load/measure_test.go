//go:build loadmeasure

// Measurements on a seeded data directory; not part of the default suite:
//
//	keygate-load seed --data-dir /tmp/seed1m --keys 1000000 --write-keys /tmp/seed1m/id
//	KEYGATE_LOAD_DIR=/tmp/seed1m go test -tags loadmeasure -run TestMeasure -v ./cmd/keygate-load
package main

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

func TestMeasureOpenLoad(t *testing.T) {
	dir := os.Getenv("KEYGATE_LOAD_DIR")
	if dir == "" {
		t.Skip("KEYGATE_LOAD_DIR not set")
	}
	ctx := context.Background()
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	store, err := keystore.Open(ctx, keystore.Config{DSN: filepath.Join(dir, "keygate.db")})
	if err != nil {
		t.Fatal(err)
	}
	opened := time.Since(start)
	ix := authindex.New(store)
	if err := ix.Load(ctx); err != nil {
		t.Fatal(err)
	}
	total := time.Since(start)
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	heap := float64(m1.HeapAlloc - m0.HeapAlloc)
	off := float64(ix.OffHeapBytes())
	t.Logf("keys %d: keystore.Open %v, Index.Load %v, Open+Load %v, live heap after GC %.1f MiB + key table off heap %.1f MiB = %.0f bytes/key",
		ix.Len(), opened, total-opened, total, heap/(1<<20), off/(1<<20), (heap+off)/float64(max(ix.Len(), 1)))
	if b, err := os.ReadFile("/proc/self/smaps_rollup"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "AnonHugePages") {
				t.Log(l)
			}
		}
	}
	store.Close()
	runtime.KeepAlive(ix)

	// Handshakes against a keygate on the seeded index, with the seeded key.
	key := os.Getenv("KEYGATE_LOAD_KEY")
	if key == "" {
		return
	}
	s := startServer(t, dir)
	signer, err := loadSigner(key, "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := runLoad(ctx, runOptions{Addr: s.addr, Signer: signer, Concurrency: 4, Duration: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("run at %d keys: %d handshakes, %.1f/s, auth latency %+v, errors %v %v", s.index.Len(), res.Handshakes, res.HandshakesPerS, res.AuthLatency, res.Errors, res.ErrorSamples)
}
