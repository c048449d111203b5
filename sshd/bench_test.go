package sshd

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// benchServer returns a server whose index holds n keys of n users.
func benchServer(b *testing.B, n int) (*Server, float64) {
	b.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ix := authindex.New(nil)
	now := time.Now()
	for i := range n {
		fp := benchFingerprint(i)
		id := int64(i + 1)
		ix.InsertUser(&keystore.User{ID: id, Username: fmt.Sprintf("user%d", i), Email: fmt.Sprintf("user%d@example.com", i),
			State: keystore.StateActive, CreatedAt: now})
		ix.InsertKey(id, id, fp, keystore.UsageAuthAndSigning, 0)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := gossh.NewSignerFromKey(priv)
	s, err := New(Config{HostKeys: []gossh.Signer{signer}, Auth: ix, Projects: nopProjects{}})
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// Heap growth plus the key table mapped outside the heap.
	return s, float64(after.HeapAlloc-before.HeapAlloc+uint64(ix.OffHeapBytes())) / float64(n)
}

// benchFingerprint derives a well-spread 32-byte fingerprint from i cheaply,
// so the benchmark loop does not pay a cache miss of its own reading a
// precomputed table (a real handshake has its fingerprint in cache).
func benchFingerprint(i int) [32]byte {
	var fp [32]byte
	x := uint64(i) + 0x9e3779b97f4a7c15
	for j := 0; j < 4; j++ {
		x ^= x >> 30
		x *= 0xbf58476d1ce4e5b9
		x ^= x >> 27
		x *= 0x94d049bb133111eb
		x ^= x >> 31
		for k := 0; k < 8; k++ {
			fp[j*8+k] = byte(x >> (8 * k))
		}
	}
	return fp
}

// benchOrder returns the n keys' fingerprints in a random order. The
// benchmarks walk it front to back: the hardware prefetcher streams the
// walk, so the loop reads each fingerprint from cache (as a handshake does:
// it has just hashed the key) and the index lookup is the only random
// memory access measured.
func benchOrder(n int) [][32]byte {
	fps := make([][32]byte, n)
	for i, j := range mrand.New(mrand.NewPCG(3, 4)).Perm(n) {
		fps[i] = benchFingerprint(j)
	}
	return fps
}

// BenchmarkAuthDecision measures the plain-key decision of SPEC §5 (index
// lookup, usage, expiry, user state, login name) at 1k and 1M keys, and at
// 1M user keys beside 100k deploy keys (which share the key table; the
// lookups are of user keys, the common case).
func BenchmarkAuthDecision(b *testing.B) {
	for _, c := range []struct {
		n, deploy int
		policy    bool
	}{{1_000, 0, false}, {1_000_000, 0, false}, {1_000_000, 100_000, false}, {1_000, 0, true}, {1_000_000, 0, true}} {
		n := c.n
		name := fmt.Sprintf("keys=%d", n)
		if c.deploy > 0 {
			name += fmt.Sprintf("+deploy=%d", c.deploy)
		}
		if c.policy {
			name += "+policy"
		}
		b.Run(name, func(b *testing.B) {
			s, perKey := benchServer(b, n)
			if c.policy {
				// An instance key policy in force: every decision reads
				// and applies it (the benchmark's keys pass it).
				s.cfg.Auth.(*authindex.Index).SetKeyPolicy(keystore.KeyPolicy{
					Restrictions: [7]int{keystore.KindRSA: 3072, keystore.KindECDSA: 384, keystore.KindED25519SK: -1}})
			}
			if c.deploy > 0 {
				ix := s.cfg.Auth.(*authindex.Index)
				for i := range c.deploy {
					fp := benchFingerprint(n + i)
					ix.InsertDeployKey(&keystore.DeployKey{ID: int64(i + 1), Title: "ci", FingerprintSHA256: keystore.FingerprintString(fp),
						Projects: []keystore.DeployKeyGrant{{ID: int64(i%1000 + 1)}}})
				}
			}
			fps := benchOrder(n)
			nowMS := time.Now().UnixMilli()
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if _, v := s.checkKey(fps[i], "git", nowMS); v != keyOK {
					b.Fatalf("verdict %d", v)
				}
				if i++; i == n {
					i = 0
				}
			}
			b.ReportMetric(perKey, "index-bytes/key")
		})
	}
}

// BenchmarkAuthDecisionParallel runs the decision from all cores at once.
func BenchmarkAuthDecisionParallel(b *testing.B) {
	const n = 1_000_000
	s, _ := benchServer(b, n)
	fps := benchOrder(n)
	nowMS := time.Now().UnixMilli()
	var worker atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(worker.Add(1)*7919) % n
		for pb.Next() {
			if _, v := s.checkKey(fps[i], "git", nowMS); v != keyOK {
				b.Errorf("verdict %d", v)
				return
			}
			if i++; i == n {
				i = 0
			}
		}
	})
}

// BenchmarkGCWithMillionKeys measures a forced GC cycle with 1M keys loaded
// (SPEC §10: ≤ 10 ms).
func BenchmarkGCWithMillionKeys(b *testing.B) {
	s, _ := benchServer(b, 1_000_000)
	b.ResetTimer()
	for b.Loop() {
		runtime.GC()
	}
	b.StopTimer()
	runtime.KeepAlive(s)
}
