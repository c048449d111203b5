package authindex

import (
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// modelFP builds a fingerprint whose first word is w0 and the rest from i,
// so tests can force many keys onto one 8-byte prefix.
func modelFP(w0 uint64, i int) [32]byte {
	var fp [32]byte
	binary.LittleEndian.PutUint64(fp[0:], w0)
	binary.LittleEndian.PutUint64(fp[8:], uint64(i)*0x9e3779b97f4a7c15+1)
	binary.LittleEndian.PutUint64(fp[16:], uint64(i))
	return fp
}

// checkTable verifies the table against the model: every model key is found
// with its record, the count matches, and every slot holds a model key
// reachable from its home slot.
func checkTable(t *testing.T, ix *Index, model map[[32]byte]Key) {
	t.Helper()
	tab := ix.keys.Load()
	if tab.count != len(model) || ix.Len() != len(model) {
		t.Fatalf("count %d, Len %d, model %d", tab.count, ix.Len(), len(model))
	}
	for fp, want := range model {
		got, ok := ix.Key(fp)
		if !ok || got != want {
			t.Fatalf("Key(%x) = %+v %v, want %+v", fp[:8], got, ok, want)
		}
	}
	used := 0
	for i := range tab.slots {
		if !tab.used(i) {
			continue
		}
		used++
		s := tab.slot(i)
		// No empty slot between an entry's home and its slot (else a
		// lookup would stop early).
		for j := tab.home(s[0]); j != i; j = tab.next(j) {
			if !tab.used(j) {
				t.Fatalf("slot %d: empty slot %d on the probe path from home %d", i, j, tab.home(s[0]))
			}
		}
	}
	if used != len(model) {
		t.Fatalf("%d used slots, model %d", used, len(model))
	}
}

func TestKeyTableRandomizedAgainstMap(t *testing.T) {
	ix := New(nil)
	model := map[[32]byte]Key{}
	shapes := map[[32]byte]KeyShape{}
	byID := map[int64][32]byte{}
	rng := rand.New(rand.NewPCG(1, 2))
	// Few distinct prefixes in the first half force long probe runs,
	// collisions on the 8-byte prefix and wrap-around at the table's end.
	prefixes := []uint64{0, ^uint64(0), 1 << 63, 42}
	fpFor := func(i int) [32]byte {
		if i%2 == 0 {
			return modelFP(prefixes[i%len(prefixes)], i)
		}
		return modelFP(rng.Uint64(), i)
	}
	for step := range 20000 {
		id := int64(rng.IntN(3000) + 1)
		switch op := rng.IntN(10); {
		case op < 6: // insert or replace key id (sometimes under a new fingerprint)
			fp, had := byID[id]
			if !had || rng.IntN(4) == 0 {
				fp = fpFor(int(id)*100000 + step)
			}
			if had && byID[id] != fp {
				delete(model, byID[id])
			}
			// The policy fields share the flags word with usage: every bit
			// of each must come back as it went in.
			sh := keyShape{kind: uint8(rng.IntN(256)), bits: uint16(rng.IntN(1 << 16)), life: uint32(rng.IntN(maxLife + 1))}
			rec := Key{ID: id, UserID: id * 10, ExpiresMS: int64(rng.IntN(3)), Usage: uint8(rng.IntN(4))}
			ix.putKeyFP(id, rec.UserID, &fp, rec.Usage, rec.ExpiresMS, rec.ExpiresMS != 0, sh)
			shapes[fp] = KeyShape{Kind: sh.kind, Bits: sh.bits, LifetimeMin: sh.life}
			model[fp] = rec
			byID[id] = fp
		default: // delete key id
			ix.dropKey(id)
			if fp, ok := byID[id]; ok {
				delete(model, fp)
				delete(byID, id)
			}
		}
		if step%997 == 0 {
			checkTable(t, ix, model)
		}
	}
	checkTable(t, ix, model)
	// The policy fields share the flags word with usage: every bit of
	// each comes back as it went in.
	for fp := range model {
		if got, ok := ix.KeyShape(fp); !ok || got != shapes[fp] {
			t.Fatalf("KeyShape(%x) = %+v %v, want %+v", fp[:8], got, ok, shapes[fp])
		}
	}
	// Unknown fingerprints, including ones sharing a prefix with stored keys.
	for i := range 1000 {
		fp := modelFP(prefixes[i%len(prefixes)], -i-1)
		if _, ok := ix.Key(fp); ok {
			t.Fatalf("unknown fingerprint %x found", fp[:8])
		}
	}
	// Delete everything: the table ends empty, with no slot left in use.
	for id := range byID {
		ix.dropKey(id)
	}
	checkTable(t, ix, map[[32]byte]Key{})
}

func TestKeyTableGrowsAndRetiresOldTable(t *testing.T) {
	ix := New(nil)
	first := ix.keys.Load()
	model := map[[32]byte]Key{}
	for i := range 5000 {
		fp := modelFP(uint64(i)*0x9e3779b97f4a7c15, i)
		ix.InsertKey(int64(i+1), 7, fp, keystore.UsageAuth, 0)
		model[fp] = Key{ID: int64(i + 1), UserID: 7, Usage: UsageAuth}
	}
	if ix.keys.Load() == first {
		t.Fatal("table did not grow")
	}
	if first.seq.Load()&1 == 0 {
		t.Fatal("replaced table not retired")
	}
	tab := ix.keys.Load()
	if uint64(tab.count)*keyTableMaxLoadDen > tab.slots*keyTableMaxLoadNum {
		t.Fatalf("load %d/%d above the maximum", tab.count, tab.slots)
	}
	checkTable(t, ix, model)
}

func TestKeyTableSamePrefixDistinctKeys(t *testing.T) {
	ix := New(nil)
	a, b := modelFP(99, 1), modelFP(99, 2)
	ix.InsertKey(1, 1, a, keystore.UsageAuth, 0)
	ix.InsertKey(2, 2, b, keystore.UsageSigning, 5)
	if k, ok := ix.Key(a); !ok || k.ID != 1 || !k.CanAuthenticate() {
		t.Fatalf("a: %+v %v", k, ok)
	}
	if k, ok := ix.Key(b); !ok || k.ID != 2 || k.CanAuthenticate() || k.ExpiresMS != 5 {
		t.Fatalf("b: %+v %v", k, ok)
	}
	ix.mu.Lock()
	ix.dropKey(1)
	ix.mu.Unlock()
	if _, ok := ix.Key(a); ok {
		t.Fatal("a still found after delete")
	}
	if k, ok := ix.Key(b); !ok || k.ID != 2 {
		t.Fatalf("b lost after deleting a: %+v %v", k, ok)
	}
	// A third key on the prefix whose fingerprint differs only in the last word.
	c := b
	c[31] ^= 1
	if _, ok := ix.Key(c); ok {
		t.Fatal("fingerprint differing in its last byte matched")
	}
}

// TestKeyTableConcurrentReaders runs lock-free lookups while a writer
// inserts, deletes and grows the table; stable keys must always be found
// with their exact record (run with -race).
func TestKeyTableConcurrentReaders(t *testing.T) {
	ix := New(nil)
	const stable = 200
	for i := range stable {
		ix.InsertKey(int64(i+1), int64(i+1), modelFP(uint64(i%3), i), keystore.UsageAuthAndSigning, int64(i))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				i := n % stable
				k, ok := ix.Key(modelFP(uint64(i%3), i))
				if !ok || k.ID != int64(i+1) || k.UserID != int64(i+1) || k.ExpiresMS != int64(i) {
					select {
					case errs <- "stable key lost or torn":
					default:
					}
					return
				}
			}
		}()
	}
	for range 20 {
		for i := range 2000 {
			id := int64(100000 + i)
			w0 := uint64(i) * 0x9e3779b97f4a7c15
			if i%10 == 0 {
				w0 = uint64(i % 3) // share the stable keys' prefixes
			}
			ix.InsertKey(id, id, modelFP(w0, 100000+i), keystore.UsageAuth, 0)
		}
		for i := range 2000 {
			ix.mu.Lock()
			ix.dropKey(int64(100000 + i))
			ix.mu.Unlock()
		}
	}
	close(stop)
	wg.Wait()
	select {
	case e := <-errs:
		t.Fatal(e)
	default:
	}
	if ix.Len() != stable {
		t.Fatalf("Len %d, want %d", ix.Len(), stable)
	}
}

// A large table is mapped outside the Go heap (on Linux); growing retires
// and, once unreachable, unmaps the old mappings while lookups go on.
func TestKeyTableLargeOffHeap(t *testing.T) {
	ix := New(nil)
	const n = 200_000
	for i := range n {
		ix.InsertKey(int64(i+1), 1, modelFP(uint64(i)*0x9e3779b97f4a7c15, i), keystore.UsageAuth, 0)
		if i%50_000 == 0 {
			runtime.GC() // run cleanups of replaced tables
		}
	}
	runtime.GC()
	runtime.GC()
	if runtime.GOOS == "linux" && ix.OffHeapBytes() < n*slotWords*8 {
		t.Fatalf("OffHeapBytes %d for %d keys", ix.OffHeapBytes(), n)
	}
	for i := range n {
		if k, ok := ix.Key(modelFP(uint64(i)*0x9e3779b97f4a7c15, i)); !ok || k.ID != int64(i+1) {
			t.Fatalf("key %d: %+v %v", i, k, ok)
		}
	}
	if ix.Len() != n {
		t.Fatalf("Len %d", ix.Len())
	}
}

// BenchmarkMemoryLatencyReference is not keygate code: it chases pointers
// through 96 MiB (the size of the 1M-key table) in random order, so each
// step is one dependent cache miss: the floor for a cold key lookup on the
// machine at hand, to read sshd's BenchmarkAuthDecision at 1M keys against
// (docs/performance.md). pages=4KiB is a Go heap buffer; pages=2MiB is the
// memory of a key table of that size (mapped off the heap with
// MADV_HUGEPAGE where the platform has it), the floor that applies to the
// index.
func BenchmarkMemoryLatencyReference(b *testing.B) {
	const words = 96 << 20 / 8
	b.Run("pages=4KiB", func(b *testing.B) { pointerChase(b, make([]uint64, words)) })
	b.Run("pages=2MiB", func(b *testing.B) {
		t := newKeyTableSlots(words / slotWords)
		pointerChase(b, t.w)
		runtime.KeepAlive(t) // t owns the mapping
	})
}

func pointerChase(b *testing.B, buf []uint64) {
	lines := len(buf) / 8
	perm := rand.New(rand.NewPCG(1, 2)).Perm(lines)
	for i := range lines {
		buf[perm[i]*8] = uint64(perm[(i+1)%lines])
	}
	j := uint64(0)
	b.ResetTimer()
	for b.Loop() {
		j = buf[j*8]
	}
	runtime.KeepAlive(j)
}
