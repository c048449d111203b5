package authindex

import (
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Index is the in-memory view of the keystore that SSH authentication reads:
// user keys by SHA-256 fingerprint, group CAs by fingerprint, users by id,
// username and email, groups, memberships and certificate revocations.
//
// Its maps hold no pointers (fixed-size keys and values; names live in one
// byte arena), so a million keys cost the garbage collector almost nothing.
// Lookups never touch the database. The index follows the store's change
// log: Follow applies every committed change before the write returns
// (read-your-writes on this node), and a Feed (feed.go) applies changes
// made elsewhere as they are committed.
type Index struct {
	src Source
	log *slog.Logger
	// now is the clock membership expiry is judged by (SetClock).
	now func() time.Time

	unknownMu sync.Mutex
	unknown   map[keystore.Entity]bool // entities warned about

	mu sync.RWMutex
	// keys is read without mu (see keyTable); writers hold mu.
	keys  atomic.Pointer[keyTable]
	keyFP map[int64]uint64 // key id -> first word of its fingerprint
	users userTable
	// blocked holds only the blocked users, copied on write and read
	// without mu: small, so the auth path stays in cache.
	blocked atomic.Pointer[map[int64]struct{}]
	groups  map[int64]groupRec
	members map[memberKey]memberRec
	byUser  map[int64][]int64  // user id -> group ids (rarely large)
	cas     map[caKey]int64    // (CA key, top-level group) -> CA id
	caFP    map[int64]caKey    // CA id -> its key and group
	caKnown map[[32]byte]int32 // CA key -> how many groups registered it
	revs    map[revKey]struct{}
	revByID map[int64]revKey
	targets map[int64]targetRec // bastion targets: few, so pointers are fine
	allows  map[int64]allowRec  // bastion allowances, by id
	deploys map[int64]deployRec // deploy keys, by id (few)
	// projects maps a project's id to its group's: an open git session
	// on a deleted project ends (revalidation asks ProjectGroup).
	projects map[int64]int64
	applied  int64
	loading  bool // building a fresh, unpublished index: no entry exists yet

	// applyMu serializes Apply (its database read and its update) and the
	// swap of a reload, so an older read never lands after a newer one.
	applyMu sync.Mutex
	// ahead holds changes above applied that were applied already (a local
	// write that committed while an earlier change was still unapplied);
	// applied advances over them once the gap below them is filled.
	ahead map[int64]struct{}
	// retry, when a Feed runs, asks it to retry a change whose Apply failed.
	retry func()
	// changed is signalled after each applied change and reload (Changed).
	changed chan struct{}
}

type groupRec struct {
	Parent, Top int64
	Enforce     bool
}

type memberKey struct{ Group, User int64 }

// memberRec is a membership: its level and when it ends (Unix
// milliseconds; 0: never). An expired one stays until the store deletes
// it, and grants nothing (accessLevelLocked).
type memberRec struct {
	Expires int64
	Level   uint8
}

type targetRec struct {
	GroupID  int64
	MinLevel int
	Pattern  string
	parsed   keystore.BastionPattern
	admin    bool // an admin made it; else it needs a covering allowance
}

type allowRec struct {
	GroupID int64
	parsed  keystore.Allowance
}

// caKey is a CA: its key's fingerprint and its (top-level) group. A key
// is unique within a group only; each group's CA with it is its own.
type caKey struct {
	FP    [32]byte
	Group int64
}

// revKey is a revocation: the group that made it, the CA key's
// fingerprint, the kind and the SHA-256 of the canonical value (key ids
// lower-cased).
type revKey struct {
	Group int64
	CA    [32]byte
	Kind  uint8
	Hash  [32]byte
}

const (
	// UsageAuth and UsageSigning are the bits of Key.Usage.
	UsageAuth uint8 = 1 << iota
	UsageSigning
)

func usageBits(u string) uint8 {
	switch u {
	case keystore.UsageAuth:
		return UsageAuth
	case keystore.UsageSigning:
		return UsageSigning
	case keystore.UsageAuthAndSigning:
		return UsageAuth | UsageSigning
	}
	return 0
}

// Key is what the index knows of a user key.
type Key struct {
	ID, UserID int64
	ExpiresMS  int64 // Unix milliseconds; 0: never expires
	Usage      uint8 // UsageAuth, UsageSigning or both
}

// CanAuthenticate reports whether the key's usage allows logins.
func (k Key) CanAuthenticate() bool { return k.Usage&UsageAuth != 0 }

// Expired reports whether the key has expired at nowMS (Unix milliseconds).
func (k Key) Expired(nowMS int64) bool { return k.ExpiresMS != 0 && nowMS >= k.ExpiresMS }

// User is what the index knows of a user.
type User struct {
	ID      int64
	Active  bool
	IsAdmin bool
	// EnterpriseGroupID is the top-level group whose CAs may vouch for the
	// user (0: none).
	EnterpriseGroupID int64
}

// CA is a group certificate authority.
type CA struct{ ID, GroupID int64 }

// Group is a group's place in the hierarchy.
type Group struct {
	ID, ParentID, TopLevelID int64
	EnforceSSHCertificates   bool
}

// New returns an empty index over src (nil: an index filled only through
// InsertKey and InsertUser, for benchmarks and tests). Call Load, then
// Follow.
func New(src Source) *Index {
	ix := &Index{src: src, log: slog.New(slog.DiscardHandler), now: time.Now, changed: make(chan struct{}, 1)}
	ix.reset()
	return ix
}

// Changed is signalled after every change the index applies and after every
// reload, coalesced and without blocking the writer: the SSH server
// re-decides its open sessions and forwards at once instead of at its next
// tick. It has one reader.
func (ix *Index) Changed() <-chan struct{} { return ix.changed }

// signal wakes Changed's reader (never blocks).
func (ix *Index) signal() {
	select {
	case ix.changed <- struct{}{}:
	default:
	}
}

// SetClock sets the clock the index judges membership expiry by (nil:
// time.Now), as keystore.Config.Now and FeedConfig.Now do for theirs. Call
// it before the index is used.
func (ix *Index) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	ix.now = now
}

// SetLogger sets where the index logs (nil: nowhere).
func (ix *Index) SetLogger(l *slog.Logger) {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	ix.log = l
}

// setKeys publishes t and retires the table it replaces.
func (ix *Index) setKeys(t *keyTable) {
	if old := ix.keys.Swap(t); old != nil {
		old.retire()
	}
}

func (ix *Index) reset() {
	ix.setKeys(newKeyTable(0))
	ix.keyFP = map[int64]uint64{}
	ix.users.init(0)
	ix.blocked.Store(&map[int64]struct{}{})
	ix.groups = map[int64]groupRec{}
	ix.members = map[memberKey]memberRec{}
	ix.byUser = map[int64][]int64{}
	ix.cas = map[caKey]int64{}
	ix.caFP = map[int64]caKey{}
	ix.caKnown = map[[32]byte]int32{}
	ix.revs = map[revKey]struct{}{}
	ix.revByID = map[int64]revKey{}
	ix.targets = map[int64]targetRec{}
	ix.allows = map[int64]allowRec{}
	ix.deploys = map[int64]deployRec{}
	ix.projects = map[int64]int64{}
	ix.ahead = map[int64]struct{}{}
}

// hashName is FNV-1a over the ASCII-lowercased name (SQLite's lower() is
// ASCII-only too, so uniqueness matches the database's).
func hashName[S ~string | ~[]byte](s S) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// parseFingerprintBytes is ParseSHA256Fingerprint for a raw column value.
func parseFingerprintBytes(fp []byte) ([32]byte, bool) {
	var out [32]byte
	const prefix = "SHA256:"
	if len(fp) < len(prefix) || string(fp[:len(prefix)]) != prefix {
		return out, false
	}
	b64 := fp[len(prefix):]
	if base64.RawStdEncoding.DecodedLen(len(b64)) != 32 {
		return out, false
	}
	n, err := base64.RawStdEncoding.Decode(out[:], b64)
	return out, err == nil && n == 32
}

func usageBitsBytes(u []byte) uint8 { return usageBits(string(u)) }

func revHash(kind uint8, value string) revKey {
	if kind == revKindKeyID {
		value = strings.ToLower(value)
	}
	return revKey{Kind: kind, Hash: sha256.Sum256([]byte(value))}
}

const (
	revKindSerial uint8 = 1 + iota
	revKindKeyID
	revKindFingerprint
)

func revKind(kind string) uint8 {
	switch kind {
	case keystore.RevokeSerial:
		return revKindSerial
	case keystore.RevokeKeyID:
		return revKindKeyID
	case keystore.RevokeFingerprint:
		return revKindFingerprint
	}
	return 0
}

// The put/drop helpers run with ix.mu held (or on an unpublished index).

func (ix *Index) putKey(id, userID int64, fp, usage string, expMS *int64) {
	b, ok := keystore.ParseSHA256Fingerprint(fp)
	if !ok {
		return // unparseable: never matches (fail closed)
	}
	var exp int64
	if expMS != nil {
		exp = *expMS
	}
	ix.putKeyFP(id, userID, &b, usageBits(usage), exp, expMS != nil)
}

func (ix *Index) putKeyFP(id, userID int64, fp *[32]byte, usage uint8, expMS int64, expires bool) {
	k := keySlot{fp: fpWords(fp), id: id, userID: userID, usage: usage}
	if expires {
		k.expires = expMS
		if k.expires == 0 {
			k.expires = 1
		}
	}
	ix.insertKey(&k)
}

// insertKey adds or replaces a key, dropping the entry key k.id had under
// another fingerprint.
func (ix *Index) insertKey(k *keySlot) {
	t := ix.keys.Load()
	if !ix.loading {
		if old, ok := ix.keyFP[k.id]; ok {
			if i, ok := t.findID(old, k.id); ok {
				if s := t.slot(i); s[1] != k.fp[1] || s[2] != k.fp[2] || s[3] != k.fp[3] || s[0] != k.fp[0] {
					t.remove(i)
				}
			}
		}
	}
	if t.full() {
		t = t.grown()
		ix.setKeys(t)
	}
	t.put(k)
	ix.keyFP[k.id] = k.fp[0]
}

func (ix *Index) dropKey(id int64) {
	w0, ok := ix.keyFP[id]
	if !ok {
		return
	}
	t := ix.keys.Load()
	if i, ok := t.findID(w0, id); ok {
		t.remove(i)
	}
	delete(ix.keyFP, id)
}

func (ix *Index) putUser(u *keystore.User) {
	ix.dropUser(u.ID)
	ix.addUser(u)
}

// addUser inserts a user known to be absent (a fresh load skips the lookup).
func (ix *Index) addUser(u *keystore.User) {
	ix.addUserBytes(u.ID, []byte(u.Username), []byte(u.Email), u.Active(), u.IsAdmin, ptrVal(u.EnterpriseGroupID))
}

// addUserBytes is addUser for a row scanned as raw bytes.
func (ix *Index) addUserBytes(id int64, name, email []byte, active, admin bool, enterprise int64) {
	ix.users.add(userRec{id: id, active: active, admin: admin, enterprise: enterprise}, name, email)
	if !active {
		ix.setBlocked(id, true)
	}
}

// setBlocked adds or removes id from the blocked set: in place while
// loading (unpublished), else by publishing a changed copy.
func (ix *Index) setBlocked(id int64, blocked bool) {
	m := *ix.blocked.Load()
	if _, ok := m[id]; ok == blocked {
		return
	}
	if !ix.loading {
		m = maps.Clone(m)
		if m == nil {
			m = map[int64]struct{}{}
		}
	}
	if blocked {
		m[id] = struct{}{}
	} else {
		delete(m, id)
	}
	ix.blocked.Store(&m)
}

func (ix *Index) dropUser(id int64) {
	if _, ok := ix.users.remove(id); ok {
		ix.setBlocked(id, false)
	}
}

func (ix *Index) groupRecFor(g *keystore.Group) groupRec {
	rec := groupRec{Parent: ptrVal(g.ParentID), Enforce: g.EnforceSSHCertificates}
	top := g.ID
	for p, depth := rec.Parent, 0; p != 0 && depth < 64; depth++ {
		top = p
		p = ix.groups[p].Parent
	}
	rec.Top = top
	return rec
}

func (ix *Index) putMember(gid int64, m keystore.MemberLevel) {
	k := memberKey{gid, m.UserID}
	if _, ok := ix.members[k]; !ok {
		ix.byUser[m.UserID] = append(ix.byUser[m.UserID], gid)
	}
	ix.members[k] = memberRec{Level: uint8(m.AccessLevel), Expires: m.ExpiresMS}
}

func (ix *Index) dropMember(gid, uid int64) {
	k := memberKey{gid, uid}
	if _, ok := ix.members[k]; !ok {
		return
	}
	delete(ix.members, k)
	gs := ix.byUser[uid]
	for i, g := range gs {
		if g == gid {
			gs = append(gs[:i:i], gs[i+1:]...)
			break
		}
	}
	if len(gs) == 0 {
		delete(ix.byUser, uid)
	} else {
		ix.byUser[uid] = gs
	}
}

func (ix *Index) putCA(c *keystore.GroupCA) {
	b, ok := keystore.ParseSHA256Fingerprint(c.FingerprintSHA256)
	if !ok {
		return
	}
	ix.dropCA(c.ID)
	k := caKey{FP: b, Group: c.GroupID}
	ix.cas[k] = c.ID
	ix.caFP[c.ID] = k
	ix.caKnown[b]++
}

func (ix *Index) dropCA(id int64) {
	k, ok := ix.caFP[id]
	if !ok {
		return
	}
	if ix.cas[k] == id {
		delete(ix.cas, k)
	}
	delete(ix.caFP, id)
	if ix.caKnown[k.FP]--; ix.caKnown[k.FP] <= 0 {
		delete(ix.caKnown, k.FP)
	}
}

func (ix *Index) putRevocation(r *keystore.Revocation) {
	ca, ok := keystore.ParseSHA256Fingerprint(r.CAFingerprint)
	if !ok {
		return // no CA key can match it
	}
	if old, ok := ix.revByID[r.ID]; ok {
		delete(ix.revs, old)
	}
	k := revHash(revKind(r.Kind), r.Value)
	k.Group, k.CA = r.GroupID, ca
	ix.revs[k] = struct{}{}
	ix.revByID[r.ID] = k
}

// InsertKey adds a key record directly, bypassing the store. It exists for
// bulk loaders and benchmarks; normal code lets the index follow the store.
func (ix *Index) InsertKey(id, userID int64, fp [32]byte, usage string, expiresMS int64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.insertKey(&keySlot{fp: fpWords(&fp), id: id, userID: userID, usage: usageBits(usage), expires: expiresMS})
}

// InsertUser adds a user record directly (see InsertKey).
func (ix *Index) InsertUser(u *keystore.User) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.putUser(u)
}
