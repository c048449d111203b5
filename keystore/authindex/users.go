package authindex

import "math/bits"

// userTable holds the index's users: fixed-size records in one dense slice
// (a deleted user's slot is reused), names in a byte arena, and three
// open-addressing tables of record numbers (by id, by username, by email).
// Everything is pointer-free, and a user costs about 24 bytes of record,
// 3 × ~5 bytes of table slots and its names, instead of three Go map
// entries. It is read and written under Index.mu.
type userTable struct {
	recs    []userRec
	free    []uint32 // deleted record slots, for reuse
	byID    u32tab
	byName  u32tab
	byEmail u32tab
	arena   []byte
	n       int
}

// userRec is one user; id 0 marks a free slot. The email follows the
// username in the arena.
type userRec struct {
	id            int64
	nameOff       uint32
	nameLen       uint16
	emailLen      uint16
	active, admin bool
	enterprise    int64 // enterprise group id; 0: none
}

func (ut *userTable) init(n int) {
	*ut = userTable{recs: make([]userRec, 0, n), arena: make([]byte, 0, n*36)}
	ut.byID.init(n)
	ut.byName.init(n)
	ut.byEmail.init(n)
}

func (ut *userTable) name(r *userRec) []byte {
	return ut.arena[r.nameOff : r.nameOff+uint32(r.nameLen)]
}

func (ut *userTable) email(r *userRec) []byte {
	off := r.nameOff + uint32(r.nameLen)
	return ut.arena[off : off+uint32(r.emailLen)]
}

// mixID spreads sequential ids over the table (SplitMix64's finalizer).
func mixID(id int64) uint64 {
	x := uint64(id)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func (ut *userTable) idHash(ref uint32) uint64 { return mixID(ut.recs[ref-1].id) }
func (ut *userTable) nameHash(ref uint32) uint64 {
	return hashName(ut.name(&ut.recs[ref-1]))
}
func (ut *userTable) emailHash(ref uint32) uint64 {
	return hashName(ut.email(&ut.recs[ref-1]))
}

// get returns user id's record.
func (ut *userTable) get(id int64) (*userRec, bool) {
	ref, ok := ut.ref(id)
	if !ok {
		return nil, false
	}
	return &ut.recs[ref-1], true
}

// ref returns user id's record number.
func (ut *userTable) ref(id int64) (uint32, bool) {
	t := &ut.byID
	if len(t.s) == 0 || id == 0 {
		return 0, false
	}
	for i := t.home(mixID(id)); t.s[i] != 0; i = t.next(i) {
		if ut.recs[t.s[i]-1].id == id {
			return t.s[i], true
		}
	}
	return 0, false
}

// byLogin finds a user by username (email false) or email, ASCII
// case-insensitively.
func (ut *userTable) byLogin(login string, email bool) (*userRec, bool) {
	t := &ut.byName
	if email {
		t = &ut.byEmail
	}
	if len(t.s) == 0 {
		return nil, false
	}
	for i := t.home(hashName(login)); t.s[i] != 0; i = t.next(i) {
		r := &ut.recs[t.s[i]-1]
		var b []byte
		if email {
			b = ut.email(r)
		} else {
			b = ut.name(r)
		}
		if equalFoldASCII(b, login) {
			return r, true
		}
	}
	return nil, false
}

// compact trims the slack of a table built by appending.
func (ut *userTable) compact() {
	if cap(ut.arena) > len(ut.arena)+len(ut.arena)/8 {
		ut.arena = append([]byte(nil), ut.arena...)
	}
	if cap(ut.recs) > len(ut.recs)+len(ut.recs)/8 {
		ut.recs = append([]userRec(nil), ut.recs...)
	}
}

// add inserts a user known to be absent.
func (ut *userTable) add(rec userRec, name, email []byte) {
	name, email = name[:min(len(name), 0xffff)], email[:min(len(email), 0xffff)]
	rec.nameOff = uint32(len(ut.arena))
	rec.nameLen, rec.emailLen = uint16(len(name)), uint16(len(email))
	ut.arena = append(ut.arena, name...)
	ut.arena = append(ut.arena, email...)
	var ref uint32
	if n := len(ut.free); n > 0 {
		ref = ut.free[n-1]
		ut.free = ut.free[:n-1]
		ut.recs[ref-1] = rec
	} else {
		ut.recs = append(ut.recs, rec)
		ref = uint32(len(ut.recs))
	}
	ut.byID.put(ref, mixID(rec.id), ut.idHash)
	ut.byName.put(ref, hashName(name), ut.nameHash)
	ut.byEmail.put(ref, hashName(email), ut.emailHash)
	ut.n++
}

// remove deletes user id. Its names stay in the arena until the next Load.
func (ut *userTable) remove(id int64) (userRec, bool) {
	ref, ok := ut.ref(id)
	if !ok {
		return userRec{}, false
	}
	r := &ut.recs[ref-1]
	ut.byID.remove(ref, mixID(id), ut.idHash)
	ut.byName.remove(ref, hashName(ut.name(r)), ut.nameHash)
	ut.byEmail.remove(ref, hashName(ut.email(r)), ut.emailHash)
	old := *r
	*r = userRec{}
	ut.free = append(ut.free, ref)
	ut.n--
	return old, true
}

// u32tab is an open-addressing (linear probing) set of record numbers
// (1-based; 0 is an empty slot). The caller supplies the hash of a stored
// record number, so the table stores nothing but the numbers.
type u32tab struct {
	s     []uint32
	count int
}

func (t *u32tab) init(n int) {
	t.s = make([]uint32, n*4/3+8)
	t.count = 0
}

func (t *u32tab) home(h uint64) uint64 {
	hi, _ := bits.Mul64(h, uint64(len(t.s)))
	return hi
}

func (t *u32tab) next(i uint64) uint64 {
	i++
	if i == uint64(len(t.s)) {
		return 0
	}
	return i
}

func (t *u32tab) put(ref uint32, h uint64, hashOf func(uint32) uint64) {
	if (t.count+1)*8 > len(t.s)*7 {
		old := t.s
		t.init(max(t.count*2, 8))
		for _, r := range old {
			if r != 0 {
				t.insert(r, hashOf(r))
			}
		}
	}
	t.insert(ref, h)
}

func (t *u32tab) insert(ref uint32, h uint64) {
	i := t.home(h)
	for t.s[i] != 0 {
		i = t.next(i)
	}
	t.s[i] = ref
	t.count++
}

// remove deletes ref (whose hash is h), shifting later entries back.
func (t *u32tab) remove(ref uint32, h uint64, hashOf func(uint32) uint64) {
	i := t.home(h)
	for t.s[i] != ref {
		if t.s[i] == 0 {
			return
		}
		i = t.next(i)
	}
	j := i
	for {
		j = t.next(j)
		if t.s[j] == 0 {
			break
		}
		hm := t.home(hashOf(t.s[j]))
		var stay bool
		if i <= j {
			stay = i < hm && hm <= j
		} else {
			stay = i < hm || hm <= j
		}
		if stay {
			continue
		}
		t.s[i] = t.s[j]
		i = j
	}
	t.s[i] = 0
	t.count--
}
