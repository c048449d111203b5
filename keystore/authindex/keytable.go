package authindex

import (
	"encoding/binary"
	"math/bits"
	"runtime"
	"sync/atomic"
)

// keyTable is the index's table of user keys: open addressing with linear
// probing over one flat, pointer-free []uint64, eight words (one 64-byte
// cache line) per slot:
//
//	w0..w3  SHA-256 fingerprint (little-endian words)
//	w4      key id
//	w5      user id
//	w6      expiry, Unix ms (0: never)
//	w7      slotUsed | usage bits << 8 | kind << 16 | bits << 24 |
//	        lifetime in minutes << 40 (0: empty slot)
//
// A fingerprint is uniformly random, so its first word is the hash: the home
// slot is that word scaled to the table size (no hashing, no power-of-two
// size). A lookup is one cache miss on the home slot plus, at high fill, a
// few adjacent lines in the same page (linear probing at 58–87 % fill
// probes 1.7–4.3 slots on average for a present key).
//
// Readers take no lock. Writers (serialised by Index.mu) bracket every change
// with seq (odd while writing); a reader that saw seq change retries. All
// slot words are read and written atomically, which costs plain moves on
// amd64 and arm64 and keeps the race detector's view exact. Deletion shifts
// later entries back (no tombstones). Growth builds a new table, publishes
// it, then retires the old one (seq stays odd), so readers still on the old
// table move to the new one.
type keyTable struct {
	seq   atomic.Uint64
	w     []uint64
	slots uint64
	count int // written only by the (single) writer; read under Index.mu
	// offHeap is the size of w when it is mapped outside the Go heap.
	offHeap int
}

const (
	slotWords = 8
	slotUsed  = 1
	// A new table is sized for a fill of keyTableLoadNum/Den; a table
	// grows (×1.5 slots) when it would pass keyTableMaxLoadNum/Den.
	keyTableLoadNum, keyTableLoadDen       = 3, 4
	keyTableMaxLoadNum, keyTableMaxLoadDen = 7, 8
)

// keySlot is a slot's contents outside the table.
type keySlot struct {
	fp                  [4]uint64
	id, userID, expires int64
	usage               uint8
	kind                uint8  // keystore.KeyKind
	bits                uint16 // the key's size
	life                uint32 // minutes from added to expiry, rounded up; at most maxLife
}

// maxLife is the largest lifetime a slot holds (24 bits of minutes, about
// 31 years); longer ones are held as maxLife.
const maxLife = 1<<24 - 1

// flags packs a slot's last word.
func (k *keySlot) flags() uint64 {
	return slotUsed | uint64(k.usage)<<8 | uint64(k.kind)<<16 | uint64(k.bits)<<24 | uint64(k.life&maxLife)<<40
}

// shapeOfFlags unpacks a slot's last word's key shape.
func shapeOfFlags(flags uint64) KeyShape {
	return KeyShape{Kind: uint8(flags >> 16), Bits: uint16(flags >> 24), LifetimeMin: uint32(flags>>40) & maxLife}
}

func fpWords(fp *[32]byte) [4]uint64 {
	return [4]uint64{
		binary.LittleEndian.Uint64(fp[0:]), binary.LittleEndian.Uint64(fp[8:]),
		binary.LittleEndian.Uint64(fp[16:]), binary.LittleEndian.Uint64(fp[24:]),
	}
}

// newKeyTable returns a table sized for n keys.
func newKeyTable(n int) *keyTable {
	return newKeyTableSlots(uint64(n)*keyTableLoadDen/keyTableLoadNum + 16)
}

func newKeyTableSlots(slots uint64) *keyTable {
	t := &keyTable{slots: slots}
	t.w, t.offHeap = allocSlots(t, slots*slotWords)
	return t
}

func (t *keyTable) home(w0 uint64) uint64 {
	hi, _ := bits.Mul64(w0, t.slots)
	return hi
}

func (t *keyTable) next(i uint64) uint64 {
	i++
	if i == t.slots {
		return 0
	}
	return i
}

// lookup probes for fp and fills k from its slot. The caller checks seq
// around it. The four fingerprint words are compared without a branch per
// word: at a million keys the slot has just arrived from DRAM, and every
// mispredicted branch after that is added to the lookup's latency.
func (t *keyTable) lookup(fp *[4]uint64, k *Key) bool {
	w := t.w
	i := t.home(fp[0])
	for range t.slots {
		o := i * slotWords
		s := w[o : o+slotWords : o+slotWords]
		flags := atomic.LoadUint64(&s[7])
		if flags == 0 {
			break
		}
		if atomic.LoadUint64(&s[0])^fp[0]|atomic.LoadUint64(&s[1])^fp[1]|
			atomic.LoadUint64(&s[2])^fp[2]|atomic.LoadUint64(&s[3])^fp[3] == 0 {
			k.ID = int64(atomic.LoadUint64(&s[4]))
			k.UserID = int64(atomic.LoadUint64(&s[5]))
			k.ExpiresMS = int64(atomic.LoadUint64(&s[6]))
			k.Usage = uint8(flags >> 8)
			return true
		}
		i = t.next(i)
	}
	return false
}

// lookupFlags probes for fp and returns its slot's last word (0: none).
// The caller checks seq around it.
func (t *keyTable) lookupFlags(fp *[4]uint64) uint64 {
	w := t.w
	i := t.home(fp[0])
	for range t.slots {
		o := i * slotWords
		s := w[o : o+slotWords : o+slotWords]
		flags := atomic.LoadUint64(&s[7])
		if flags == 0 {
			break
		}
		if atomic.LoadUint64(&s[0])^fp[0]|atomic.LoadUint64(&s[1])^fp[1]|
			atomic.LoadUint64(&s[2])^fp[2]|atomic.LoadUint64(&s[3])^fp[3] == 0 {
			return flags
		}
		i = t.next(i)
	}
	return 0
}

// getFlags is a consistent, lock-free lookupFlags in the current table of p.
func getFlags(p *atomic.Pointer[keyTable], fp *[4]uint64) uint64 {
	for spins := 0; ; spins++ {
		t := p.Load()
		s := t.seq.Load()
		if s&1 == 0 {
			f := t.lookupFlags(fp)
			if t.seq.Load() == s {
				runtime.KeepAlive(t)
				return f
			}
		}
		if spins >= 8 {
			runtime.Gosched()
		}
	}
}

// getKey is a consistent, lock-free lookup in the current table of p.
func getKey(p *atomic.Pointer[keyTable], fp *[4]uint64, k *Key) bool {
	for spins := 0; ; spins++ {
		t := p.Load()
		s := t.seq.Load()
		if s&1 == 0 {
			ok := t.lookup(fp, k)
			if t.seq.Load() == s {
				runtime.KeepAlive(t) // t owns the memory lookup read
				if !ok {
					*k = Key{}
				}
				return ok
			}
		}
		if spins >= 8 {
			runtime.Gosched()
		}
	}
}

// The methods below are for the single writer (Index.mu held, or a table
// not yet published).

func (t *keyTable) slot(i uint64) []uint64 {
	return t.w[i*slotWords : i*slotWords+slotWords : i*slotWords+slotWords]
}

func (t *keyTable) store(i uint64, k *keySlot) {
	s := t.slot(i)
	atomic.StoreUint64(&s[0], k.fp[0])
	atomic.StoreUint64(&s[1], k.fp[1])
	atomic.StoreUint64(&s[2], k.fp[2])
	atomic.StoreUint64(&s[3], k.fp[3])
	atomic.StoreUint64(&s[4], uint64(k.id))
	atomic.StoreUint64(&s[5], uint64(k.userID))
	atomic.StoreUint64(&s[6], uint64(k.expires))
	atomic.StoreUint64(&s[7], k.flags())
}

func (t *keyTable) copySlot(dst, src uint64) {
	d, s := t.slot(dst), t.slot(src)
	for j := range slotWords {
		atomic.StoreUint64(&d[j], atomic.LoadUint64(&s[j]))
	}
}

func (t *keyTable) clear(i uint64) {
	s := t.slot(i)
	for j := range slotWords {
		atomic.StoreUint64(&s[j], 0)
	}
}

func (t *keyTable) used(i uint64) bool { return atomic.LoadUint64(&t.slot(i)[7]) != 0 }

func (t *keyTable) full() bool {
	return uint64(t.count+1)*keyTableMaxLoadDen > t.slots*keyTableMaxLoadNum
}

// put inserts or replaces k by fingerprint. The table must have room.
func (t *keyTable) put(k *keySlot) {
	i := t.home(k.fp[0])
	for t.used(i) {
		s := t.slot(i)
		if s[0] == k.fp[0] && s[1] == k.fp[1] && s[2] == k.fp[2] && s[3] == k.fp[3] {
			break
		}
		i = t.next(i)
	}
	if !t.used(i) {
		t.count++
	}
	t.seq.Add(1)
	t.store(i, k)
	t.seq.Add(1)
}

// findID returns the slot of key id whose fingerprint starts with w0.
func (t *keyTable) findID(w0 uint64, id int64) (uint64, bool) {
	for i := t.home(w0); t.used(i); i = t.next(i) {
		if s := t.slot(i); s[0] == w0 && int64(s[4]) == id {
			return i, true
		}
	}
	return 0, false
}

// remove deletes slot i, shifting later entries of its probe run back.
func (t *keyTable) remove(i uint64) {
	t.seq.Add(1)
	j := i
	for {
		j = t.next(j)
		if !t.used(j) {
			break
		}
		h := t.home(t.slot(j)[0])
		// The entry at j may move to i only if its home is not cyclically
		// within (i, j].
		var stay bool
		if i <= j {
			stay = i < h && h <= j
		} else {
			stay = i < h || h <= j
		}
		if stay {
			continue
		}
		t.copySlot(i, j)
		i = j
	}
	t.clear(i)
	t.count--
	t.seq.Add(1)
}

// grown returns a copy of t with room for more keys.
func (t *keyTable) grown() *keyTable {
	// 1.5× the slots: the fill factor after growth is ~58%, which keeps
	// bytes per key lower than doubling would.
	n := newKeyTableSlots(t.slots*3/2 + 16)
	for i := range t.slots {
		if !t.used(i) {
			continue
		}
		s := t.slot(i)
		sh := shapeOfFlags(s[7])
		n.put(&keySlot{
			fp: [4]uint64{s[0], s[1], s[2], s[3]}, id: int64(s[4]), userID: int64(s[5]), expires: int64(s[6]),
			usage: uint8(s[7] >> 8), kind: sh.Kind, bits: sh.Bits, life: sh.LifetimeMin,
		})
	}
	return n
}

// retire makes readers of t move on to the table published after it.
func (t *keyTable) retire() { t.seq.Store(1) }
