package keystore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	store *Store

	mu sync.RWMutex
	// keys is read without mu (see keyTable); writers hold mu.
	keys  atomic.Pointer[keyTable]
	keyFP map[int64]uint64 // key id -> first word of its fingerprint
	users userTable
	// blocked holds only the blocked users, copied on write and read
	// without mu: small, so the auth path stays in cache.
	blocked  atomic.Pointer[map[int64]struct{}]
	groups   map[int64]groupRec
	members  map[memberKey]uint8
	byUser   map[int64][]int64 // user id -> group ids (rarely large)
	cas      map[[32]byte]caRec
	caFP     map[int64][32]byte
	revs     map[revKey]struct{}
	revByID  map[int64]revKey
	targets  map[int64]targetRec // bastion targets: few, so pointers are fine
	allows   map[int64]allowRec  // bastion allowances, by id
	applied  int64
	onChange []func(Change)
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
}

type groupRec struct {
	Parent, Top int64
	Enforce     bool
}

type memberKey struct{ Group, User int64 }

type targetRec struct {
	GroupID  int64
	MinLevel int
	Pattern  string
	parsed   bastionPattern
	admin    bool // an admin made it; else it needs a covering allowance
}

type allowRec struct {
	GroupID int64
	parsed  allowance
}

type caRec struct{ ID, GroupID int64 }

// revKey is a revocation: the CA key's fingerprint, the kind and the
// SHA-256 of the canonical value (key ids lower-cased).
type revKey struct {
	CA   [32]byte
	Kind uint8
	Hash [32]byte
}

const (
	usageAuth uint8 = 1 << iota
	usageSigning
)

func usageBits(u string) uint8 {
	switch u {
	case UsageAuth:
		return usageAuth
	case UsageSigning:
		return usageSigning
	case UsageAuthAndSigning:
		return usageAuth | usageSigning
	}
	return 0
}

// IndexedKey is what the index knows of a user key.
type IndexedKey struct {
	ID, UserID int64
	ExpiresMS  int64 // Unix milliseconds; 0: never expires
	usage      uint8
}

// CanAuthenticate reports whether the key's usage allows logins.
func (k IndexedKey) CanAuthenticate() bool { return k.usage&usageAuth != 0 }

// Expired reports whether the key has expired at nowMS (Unix milliseconds).
func (k IndexedKey) Expired(nowMS int64) bool { return k.ExpiresMS != 0 && nowMS >= k.ExpiresMS }

// IndexedUser is what the index knows of a user.
type IndexedUser struct {
	ID      int64
	Active  bool
	IsAdmin bool
	// EnterpriseGroupID is the top-level group whose CAs may vouch for the
	// user (0: none).
	EnterpriseGroupID int64
}

// IndexedCA is a group certificate authority.
type IndexedCA struct{ ID, GroupID int64 }

// IndexedGroup is a group's place in the hierarchy.
type IndexedGroup struct {
	ID, ParentID, TopLevelID int64
	EnforceSSHCertificates   bool
}

// NewIndex returns an empty index over store. Call Load, then Follow.
func NewIndex(store *Store) *Index {
	ix := &Index{store: store}
	ix.reset()
	return ix
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
	ix.members = map[memberKey]uint8{}
	ix.byUser = map[int64][]int64{}
	ix.cas = map[[32]byte]caRec{}
	ix.caFP = map[int64][32]byte{}
	ix.revs = map[revKey]struct{}{}
	ix.revByID = map[int64]revKey{}
	ix.targets = map[int64]targetRec{}
	ix.allows = map[int64]allowRec{}
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

// ParseSHA256Fingerprint turns "SHA256:base64" into its 32 bytes.
func ParseSHA256Fingerprint(fp string) ([32]byte, bool) {
	var out [32]byte
	b64, ok := strings.CutPrefix(fp, "SHA256:")
	if !ok || base64.RawStdEncoding.DecodedLen(len(b64)) != 32 {
		return out, false
	}
	n, err := base64.RawStdEncoding.Decode(out[:], []byte(b64))
	return out, err == nil && n == 32
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
	case RevokeSerial:
		return revKindSerial
	case RevokeKeyID:
		return revKindKeyID
	case RevokeFingerprint:
		return revKindFingerprint
	}
	return 0
}

// Load (re)builds the index from the database.
func (ix *Index) Load(ctx context.Context) error {
	if err := ix.reload(ctx); err != nil {
		return err
	}
	// Changes committed while loading are applied again (idempotent).
	return ix.CatchUp(ctx)
}

// reload builds a fresh index off to the side and swaps it in: lookups see
// the old index until the new one is complete. Afterwards every change up to
// the newest committed when the reload began is applied.
func (ix *Index) reload(ctx context.Context) error {
	s := ix.store
	seq, err := s.LastChange(ctx)
	if err != nil {
		return err
	}
	fresh := &Index{store: s, loading: true}
	fresh.reset()
	// Pre-size the big maps: growing them one insert at a time dominates
	// the load of a million keys.
	nUsers, err := s.count(ctx, `SELECT COUNT(*) FROM users`)
	if err != nil {
		return err
	}
	nKeys, err := s.count(ctx, `SELECT COUNT(*) FROM keys`)
	if err != nil {
		return err
	}
	fresh.users.init(nUsers)
	fresh.keys.Store(newKeyTable(nKeys))
	fresh.keyFP = make(map[int64]uint64, nKeys)
	// Users (with groups and members) and keys go into separate tables, so
	// they load in parallel, each from its own read of the database: on two
	// CPUs that halves the start of a node with a million keys. A change
	// committed between the reads is applied again by the catch-up below.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	usersDone := make(chan error, 1)
	go func() {
		err := fresh.loadUsersAndGroups(lctx)
		if err != nil {
			cancel()
		}
		usersDone <- err
	}()
	keysErr := fresh.loadKeys(lctx)
	if keysErr != nil {
		cancel()
	}
	usersErr := <-usersDone
	if usersErr != nil || keysErr != nil {
		// The error that stopped the load, not the other half's cancellation.
		if usersErr == nil || (errors.Is(usersErr, context.Canceled) && keysErr != nil) {
			return keysErr
		}
		return usersErr
	}
	if err := s.forEachRow(ctx, `SELECT id, group_id, fingerprint_sha256 FROM group_cas`, func(sc func(...any) error) error {
		var c GroupCA
		if err := sc(&c.ID, &c.GroupID, &c.FingerprintSHA256); err != nil {
			return err
		}
		fresh.putCA(&c)
		return nil
	}); err != nil {
		return err
	}
	if err := s.forEachRow(ctx, `SELECT id, ca_fingerprint, kind, value FROM cert_revocations`, func(sc func(...any) error) error {
		var r Revocation
		if err := sc(&r.ID, &r.CAFingerprint, &r.Kind, &r.Value); err != nil {
			return err
		}
		fresh.putRevocation(&r)
		return nil
	}); err != nil {
		return err
	}
	targets, err := s.AllBastionTargets(ctx)
	if err != nil {
		return err
	}
	for _, b := range targets {
		fresh.putTarget(b)
	}
	allows, err := s.AllBastionAllowances(ctx)
	if err != nil {
		return err
	}
	for _, b := range allows {
		fresh.putAllowance(b)
	}
	ix.applyMu.Lock()
	defer ix.applyMu.Unlock()
	ix.mu.Lock()
	ix.targets, ix.allows = fresh.targets, fresh.allows
	ix.setKeys(fresh.keys.Load())
	ix.keyFP, ix.users = fresh.keyFP, fresh.users
	ix.blocked.Store(fresh.blocked.Load())
	ix.groups, ix.members, ix.byUser = fresh.groups, fresh.members, fresh.byUser
	ix.cas, ix.caFP, ix.revs, ix.revByID = fresh.cas, fresh.caFP, fresh.revs, fresh.revByID
	ix.applied = seq
	ix.ahead = map[int64]struct{}{} // applied to the old maps only
	ix.mu.Unlock()
	return nil
}

// loadUsersAndGroups reads users, groups and members into an unpublished
// index.
func (ix *Index) loadUsersAndGroups(ctx context.Context) error {
	s := ix.store
	// Only the columns the index needs, scanned without a string per value.
	var name, email, state sql.RawBytes
	if err := s.forEachRow(ctx, `SELECT id, username, email, state, is_admin, enterprise_group_id FROM users`, func(sc func(...any) error) error {
		var id int64
		var admin int
		var enterprise sql.NullInt64
		if err := sc(&id, &name, &email, &state, &admin, &enterprise); err != nil {
			return err
		}
		ix.addUserBytes(id, name, email, string(state) == StateActive, admin != 0, enterprise.Int64)
		return nil
	}); err != nil {
		return err
	}
	ix.users.compact()
	groups, err := s.AllGroups(ctx)
	if err != nil {
		return err
	}
	for _, g := range groups {
		ix.groups[g.ID] = groupRec{Parent: ptrVal(g.ParentID)}
	}
	for _, g := range groups {
		ix.groups[g.ID] = ix.groupRecFor(g)
	}
	return s.forEachRow(ctx, `SELECT group_id, user_id, access_level FROM members`, func(sc func(...any) error) error {
		var gid, uid int64
		var level int
		if err := sc(&gid, &uid, &level); err != nil {
			return err
		}
		ix.putMember(gid, uid, level)
		return nil
	})
}

// loadKeys reads the user keys into an unpublished index.
func (ix *Index) loadKeys(ctx context.Context) error {
	s := ix.store
	var fp, usage sql.RawBytes
	return s.forEachRow(ctx, `SELECT id, user_id, fingerprint_sha256, usage_type, expires_at FROM keys`, func(sc func(...any) error) error {
		var id, userID int64
		var exp sql.NullInt64
		if err := sc(&id, &userID, &fp, &usage, &exp); err != nil {
			return err
		}
		b, ok := parseFingerprintBytes(fp)
		if !ok {
			return nil // unparseable: never matches (fail closed)
		}
		ix.putKeyFP(id, userID, &b, usageBitsBytes(usage), exp.Int64, exp.Valid)
		return nil
	})
}

func ptrVal(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// forEachRow streams a query's rows.
func (s *Store) forEachRow(ctx context.Context, query string, fn func(scan func(...any) error) error) error {
	rows, err := s.query(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}

// The put/drop helpers run with ix.mu held (or on an unpublished index).

func (ix *Index) putKey(id, userID int64, fp, usage string, expMS *int64) {
	b, ok := ParseSHA256Fingerprint(fp)
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

func (ix *Index) putUser(u *User) {
	ix.dropUser(u.ID)
	ix.addUser(u)
}

// addUser inserts a user known to be absent (a fresh load skips the lookup).
func (ix *Index) addUser(u *User) {
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

func (ix *Index) groupRecFor(g *Group) groupRec {
	rec := groupRec{Parent: ptrVal(g.ParentID), Enforce: g.EnforceSSHCertificates}
	top := g.ID
	for p, depth := rec.Parent, 0; p != 0 && depth < 64; depth++ {
		top = p
		p = ix.groups[p].Parent
	}
	rec.Top = top
	return rec
}

func (ix *Index) putMember(gid, uid int64, level int) {
	k := memberKey{gid, uid}
	if _, ok := ix.members[k]; !ok {
		ix.byUser[uid] = append(ix.byUser[uid], gid)
	}
	ix.members[k] = uint8(level)
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

func (ix *Index) putCA(c *GroupCA) {
	b, ok := ParseSHA256Fingerprint(c.FingerprintSHA256)
	if !ok {
		return
	}
	ix.dropCA(c.ID)
	ix.cas[b] = caRec{ID: c.ID, GroupID: c.GroupID}
	ix.caFP[c.ID] = b
}

func (ix *Index) dropCA(id int64) {
	if b, ok := ix.caFP[id]; ok {
		delete(ix.cas, b)
		delete(ix.caFP, id)
	}
}

func (ix *Index) putRevocation(r *Revocation) {
	ca, ok := ParseSHA256Fingerprint(r.CAFingerprint)
	if !ok {
		return // no CA key can match it
	}
	if old, ok := ix.revByID[r.ID]; ok {
		delete(ix.revs, old)
	}
	k := revHash(revKind(r.Kind), r.Value)
	k.CA = ca
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
func (ix *Index) InsertUser(u *User) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.putUser(u)
}

// Lookups. All are safe for concurrent use with writes and allocation-free.

// Key looks up a user key by SHA-256 fingerprint.
func (ix *Index) Key(fp [32]byte) (IndexedKey, bool) {
	w := fpWords(&fp)
	var k IndexedKey
	ok := getKey(&ix.keys, &w, &k)
	return k, ok
}

// User looks up a user by id.
func (ix *Index) User(id int64) (IndexedUser, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	r, ok := ix.users.get(id)
	if !ok {
		return IndexedUser{ID: id}, false
	}
	return IndexedUser{ID: id, Active: r.active, IsAdmin: r.admin, EnterpriseGroupID: r.enterprise}, true
}

// UserBlocked reports whether a user is blocked. It reads a set that holds
// only blocked users, so the common case costs no cache miss. A key's user
// always exists in the index (keys are deleted with their user, and the
// change log applies those deletions first).
func (ix *Index) UserBlocked(id int64) bool {
	_, b := (*ix.blocked.Load())[id]
	return b
}

// UsernameIs reports whether user id's username is name (case-insensitive).
func (ix *Index) UsernameIs(id int64, name string) bool {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	r, ok := ix.users.get(id)
	return ok && equalFoldASCII(ix.users.name(r), name)
}

// Username returns user id's username ("" if unknown).
func (ix *Index) Username(id int64) string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	r, ok := ix.users.get(id)
	if !ok {
		return ""
	}
	return string(ix.users.name(r))
}

// UserByLogin finds an active or blocked user by username or email.
func (ix *Index) UserByLogin(login string) (IndexedUser, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if r, ok := ix.users.byLogin(login, false); ok {
		return IndexedUser{ID: r.id, Active: r.active, IsAdmin: r.admin, EnterpriseGroupID: r.enterprise}, true
	}
	if strings.IndexByte(login, '@') > 0 {
		if r, ok := ix.users.byLogin(login, true); ok {
			return IndexedUser{ID: r.id, Active: r.active, IsAdmin: r.admin, EnterpriseGroupID: r.enterprise}, true
		}
	}
	return IndexedUser{}, false
}

// CA looks up a group CA by the SHA-256 fingerprint of its public key.
func (ix *Index) CA(fp [32]byte) (IndexedCA, bool) {
	ix.mu.RLock()
	r, ok := ix.cas[fp]
	ix.mu.RUnlock()
	return IndexedCA(r), ok
}

// CAExists reports whether a CA id is still registered.
func (ix *Index) CAExists(id int64) bool {
	ix.mu.RLock()
	_, ok := ix.caFP[id]
	ix.mu.RUnlock()
	return ok
}

// Revoked reports whether the CA key caFP revoked a certificate: by serial,
// by certificate key fingerprint ("SHA256:…"), or by key id. Key ids match
// as identities do: case-insensitively, and a key-id revocation that names
// a user (username or email) also revokes every certificate that logs in
// as userID, whatever its key id says.
func (ix *Index) Revoked(caFP [32]byte, serial uint64, keyID, certKeyFP string, userID int64) bool {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if len(ix.revs) == 0 {
		return false
	}
	keys := []revKey{
		revHash(revKindSerial, strconv.FormatUint(serial, 10)),
		revHash(revKindKeyID, keyID),
		revHash(revKindFingerprint, certKeyFP),
	}
	if r, ok := ix.users.get(userID); ok && userID != 0 {
		keys = append(keys, revHash(revKindKeyID, string(ix.users.name(r))), revHash(revKindKeyID, string(ix.users.email(r))))
	}
	for _, k := range keys {
		k.CA = caFP
		if _, ok := ix.revs[k]; ok {
			return true
		}
	}
	return false
}

// Group returns a group's place in the hierarchy.
func (ix *Index) Group(id int64) (IndexedGroup, bool) {
	ix.mu.RLock()
	r, ok := ix.groups[id]
	ix.mu.RUnlock()
	return IndexedGroup{ID: id, ParentID: r.Parent, TopLevelID: r.Top, EnforceSSHCertificates: r.Enforce}, ok
}

// AccessLevel is a user's effective level in a group: the highest of their
// memberships in the group and its ancestors.
func (ix *Index) AccessLevel(userID, groupID int64) int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.accessLevelLocked(userID, groupID)
}

func (ix *Index) accessLevelLocked(userID, groupID int64) int {
	best := 0
	for g, depth := groupID, 0; g != 0 && depth < 64; depth++ {
		if l, ok := ix.members[memberKey{g, userID}]; ok && int(l) > best {
			best = int(l)
		}
		r, ok := ix.groups[g]
		if !ok {
			return 0 // a deleted ancestor: no access
		}
		g = r.Parent
	}
	return best
}

// Applied reports the sequence number of the last change applied.
func (ix *Index) Applied() int64 {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.applied
}

// Len reports the number of keys indexed.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.keys.Load().count
}

// OffHeapBytes reports the index memory kept outside the Go heap (a large
// key table is mapped directly, with huge pages where the kernel allows),
// which runtime.MemStats does not count.
func (ix *Index) OffHeapBytes() int {
	return ix.keys.Load().offHeap
}

// OnChange registers fn to run after each applied change (e.g. to close
// sessions whose identity was revoked).
func (ix *Index) OnChange(fn func(Change)) {
	ix.mu.Lock()
	ix.onChange = append(ix.onChange, fn)
	ix.mu.Unlock()
}

// Follow subscribes the index to the store's committed writes.
func (ix *Index) Follow() {
	ix.store.Subscribe(func(c Change) {
		if err := ix.Apply(context.Background(), c); err != nil {
			ix.mu.RLock()
			retry := ix.retry
			ix.mu.RUnlock()
			if retry != nil {
				// The change stays unapplied; the feed retries it and
				// reloads if it keeps failing.
				retry()
				return
			}
			// Fail closed: rebuild from scratch.
			if lerr := ix.Load(context.Background()); lerr != nil {
				ix.mu.Lock()
				ix.reset()
				ix.mu.Unlock()
			}
		}
	})
}

// CatchUp applies changes recorded after the last applied one.
func (ix *Index) CatchUp(ctx context.Context) error {
	after := ix.Applied()
	for {
		changes, err := ix.store.ChangesSince(ctx, after, 1000)
		if err != nil {
			return err
		}
		for _, c := range changes {
			if err := ix.Apply(ctx, c); err != nil {
				return err
			}
			after = c.Seq
		}
		if len(changes) < 1000 {
			return nil
		}
	}
}

// Apply brings the entity named by c up to date from the database. It is
// idempotent: applying a change again re-reads the entity's current state.
func (ix *Index) Apply(ctx context.Context, c Change) error {
	ix.applyMu.Lock()
	locked := true
	defer func() {
		if locked {
			ix.applyMu.Unlock()
		}
	}()
	s := ix.store
	var apply func()
	switch c.Entity {
	case "key":
		k, err := s.Key(ctx, c.EntityID)
		switch {
		case errors.Is(err, ErrNotFound):
			apply = func() { ix.dropKey(c.EntityID) }
		case err != nil:
			return err
		default:
			apply = func() { ix.putKey(k.ID, k.UserID, k.FingerprintSHA256, k.UsageType, expPtr(k)) }
		}
	case "user":
		u, err := s.User(ctx, c.EntityID)
		switch {
		case errors.Is(err, ErrNotFound):
			apply = func() {
				ix.dropUser(c.EntityID)
				for _, g := range append([]int64(nil), ix.byUser[c.EntityID]...) {
					ix.dropMember(g, c.EntityID)
				}
			}
		case err != nil:
			return err
		default:
			apply = func() { ix.putUser(u) }
		}
	case "group":
		g, err := s.Group(ctx, c.EntityID)
		switch {
		case errors.Is(err, ErrNotFound):
			apply = func() {
				delete(ix.groups, c.EntityID)
				for id, t := range ix.targets {
					if t.GroupID == c.EntityID {
						delete(ix.targets, id)
					}
				}
				for id, a := range ix.allows {
					if a.GroupID == c.EntityID {
						delete(ix.allows, id)
					}
				}
				for k := range ix.members {
					if k.Group == c.EntityID {
						ix.dropMember(k.Group, k.User)
					}
				}
			}
		case err != nil:
			return err
		default:
			apply = func() { ix.groups[g.ID] = ix.groupRecFor(g) }
		}
	case "member":
		ms, _, err := s.ListMembers(ctx, c.EntityID, Page{PerPage: 1 << 30})
		if err != nil {
			return err
		}
		apply = func() {
			for k := range ix.members {
				if k.Group == c.EntityID {
					ix.dropMember(k.Group, k.User)
				}
			}
			for _, m := range ms {
				ix.putMember(c.EntityID, m.User.ID, m.AccessLevel)
			}
		}
	case "ca":
		ca, err := s.CA(ctx, 0, c.EntityID)
		switch {
		case errors.Is(err, ErrNotFound):
			// Its revocations stay: they belong to the key.
			apply = func() { ix.dropCA(c.EntityID) }
		case err != nil:
			return err
		default:
			apply = func() { ix.putCA(ca) }
		}
	case "revocation":
		r, err := s.RevocationByID(ctx, c.EntityID)
		switch {
		case errors.Is(err, ErrNotFound):
			apply = func() {
				if k, ok := ix.revByID[c.EntityID]; ok {
					delete(ix.revs, k)
					delete(ix.revByID, c.EntityID)
				}
			}
		case err != nil:
			return fmt.Errorf("keystore: index: %w", err)
		default:
			apply = func() { ix.putRevocation(r) }
		}
	case EntityBastionAllowance:
		b, err := s.BastionAllowanceByID(ctx, 0, c.EntityID)
		switch {
		case errors.Is(err, ErrNotFound):
			apply = func() { delete(ix.allows, c.EntityID) }
		case err != nil:
			return err
		default:
			apply = func() { ix.putAllowance(b) }
		}
	case EntityBastionTarget:
		b, err := s.BastionTargetByID(ctx, 0, c.EntityID)
		switch {
		case errors.Is(err, ErrNotFound):
			apply = func() { delete(ix.targets, c.EntityID) }
		case err != nil:
			return err
		default:
			apply = func() { ix.putTarget(b) }
		}
	default:
		apply = func() {}
	}
	ix.mu.Lock()
	apply()
	ix.markApplied(c.Seq)
	hooks := ix.onChange
	ix.mu.Unlock()
	ix.applyMu.Unlock()
	locked = false
	for _, fn := range hooks {
		fn(c)
	}
	return nil
}

// markApplied records change seq as applied (ix.mu held). applied only
// moves over an unbroken run of changes: a change above a gap waits in ahead
// until the gap is filled, so the feed never skips the missing one.
func (ix *Index) markApplied(seq int64) {
	switch {
	case seq <= ix.applied:
	case seq == ix.applied+1:
		ix.applied = seq
		for {
			if _, ok := ix.ahead[ix.applied+1]; !ok {
				break
			}
			delete(ix.ahead, ix.applied+1)
			ix.applied++
		}
	default:
		ix.ahead[seq] = struct{}{}
	}
}

func expPtr(k *Key) *int64 {
	if k.ExpiresAt == nil {
		return nil
	}
	v := k.ExpiresAt.UnixMilli()
	return &v
}

func (ix *Index) putTarget(b *BastionTarget) {
	p, _, ok := parseBastionPattern(b.Pattern)
	if !ok || b.DisabledReason != "" || (b.Origin != OriginAdmin && b.Origin != OriginOwner) {
		delete(ix.targets, b.ID) // unparseable, disabled or unclassified: never matches (fail closed)
		return
	}
	ix.targets[b.ID] = targetRec{GroupID: b.GroupID, MinLevel: b.MinAccessLevel, Pattern: b.Pattern, parsed: p,
		admin: b.Origin == OriginAdmin}
}

func (ix *Index) putAllowance(b *BastionAllowance) {
	a, _, ok := parseAllowance(b.Pattern)
	if !ok {
		delete(ix.allows, b.ID)
		return
	}
	ix.allows[b.ID] = allowRec{GroupID: b.GroupID, parsed: a}
}

// allowedLocked reports whether an owner-made target lies inside an
// allowance of its group or an ancestor (ix.mu held).
func (ix *Index) allowedLocked(t targetRec) bool {
	for _, a := range ix.allows {
		if !a.parsed.covers(t.parsed) {
			continue
		}
		for g, depth := t.GroupID, 0; g != 0 && depth < 64; depth++ {
			if g == a.GroupID {
				return true
			}
			g = ix.groups[g].Parent
		}
	}
	return false
}

// BastionMatch is a bastion target that allows a forwarding request.
type BastionMatch struct {
	TargetID, GroupID int64
	Pattern           string
	// Host is the pattern's host part (IPv6 without brackets); it names the
	// destination literally when it holds no "*".
	Host string
	// Admin: an admin made the target. Only such a target, naming an
	// address literally, can open a restricted address (loopback,
	// link-local, keygate's own listeners...).
	Admin bool
}

// Literal reports whether the target names its host without a wildcard.
func (m BastionMatch) Literal() bool { return !strings.Contains(m.Host, "*") }

// BastionTargets returns the targets that allow user userID to forward to
// host:port (host as the client asked for it): targets of groups in which
// the user's effective access level (membership inherited from ancestor
// groups) is at least the target's minimum. scopeTopGroupID, when not 0,
// limits the targets to groups under that top-level group (certificate
// logins). plainKey excludes groups whose top-level group enforces SSH
// certificates.
func (ix *Index) BastionTargets(userID, scopeTopGroupID int64, plainKey bool, host string, port uint32) []BastionMatch {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var out []BastionMatch
	for id, t := range ix.targets {
		if !t.parsed.matches(host, port) {
			continue
		}
		g, ok := ix.groups[t.GroupID]
		if !ok {
			continue
		}
		if scopeTopGroupID != 0 && g.Top != scopeTopGroupID {
			continue
		}
		if plainKey {
			if top, ok := ix.groups[g.Top]; !ok || top.Enforce {
				continue
			}
		}
		if l := ix.accessLevelLocked(userID, t.GroupID); l == 0 || l < t.MinLevel {
			continue
		}
		if !t.admin && !ix.allowedLocked(t) {
			continue // an owner's target outside every current allowance
		}
		out = append(out, BastionMatch{TargetID: id, GroupID: t.GroupID, Pattern: t.Pattern, Host: t.parsed.host, Admin: t.admin})
	}
	return out
}
