package authindex

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Lookups. All are safe for concurrent use with writes and allocation-free
// (but CAs, which is not on the auth path).

// Key looks up a user key by SHA-256 fingerprint.
func (ix *Index) Key(fp [32]byte) (Key, bool) {
	w := fpWords(&fp)
	var k Key
	ok := getKey(&ix.keys, &w, &k)
	return k, ok
}

// KeyShape looks up what the key policy reads of the key with SHA-256
// fingerprint fp (a second lookup, in the slot Key just read: the auth
// path asks only while a policy is in force). No lock, no allocation.
func (ix *Index) KeyShape(fp [32]byte) (KeyShape, bool) {
	w := fpWords(&fp)
	f := getFlags(&ix.keys, &w)
	return shapeOfFlags(f), f != 0
}

// User looks up a user by id.
func (ix *Index) User(id int64) (User, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	r, ok := ix.users.get(id)
	if !ok {
		return User{ID: id}, false
	}
	return User{ID: id, Active: r.active, IsAdmin: r.admin, EnterpriseGroupID: r.enterprise}, true
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
func (ix *Index) UserByLogin(login string) (User, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if r, ok := ix.users.byLogin(login, false); ok {
		return User{ID: r.id, Active: r.active, IsAdmin: r.admin, EnterpriseGroupID: r.enterprise}, true
	}
	if strings.IndexByte(login, '@') > 0 {
		if r, ok := ix.users.byLogin(login, true); ok {
			return User{ID: r.id, Active: r.active, IsAdmin: r.admin, EnterpriseGroupID: r.enterprise}, true
		}
	}
	return User{}, false
}

// CAKnown reports whether some group registered the CA key fp.
func (ix *Index) CAKnown(fp [32]byte) bool {
	ix.mu.RLock()
	_, ok := ix.caKnown[fp]
	ix.mu.RUnlock()
	return ok
}

// CA looks up the CA with the key fp (SHA-256 fingerprint of its public
// key) that top-level group groupID registered. Other groups may hold the
// same key; their CAs are theirs.
func (ix *Index) CA(fp [32]byte, groupID int64) (CA, bool) {
	ix.mu.RLock()
	id, ok := ix.cas[caKey{FP: fp, Group: groupID}]
	ix.mu.RUnlock()
	return CA{ID: id, GroupID: groupID}, ok
}

// CAs lists the CAs of every group that registered the key fp, by id (for
// checks and tests; the auth path asks CA).
func (ix *Index) CAs(fp [32]byte) []CA {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var out []CA
	if ix.caKnown[fp] == 0 {
		return out
	}
	for id, k := range ix.caFP {
		if k.FP == fp {
			out = append(out, CA{ID: id, GroupID: k.Group})
		}
	}
	slices.SortFunc(out, func(a, b CA) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// ManagedCA returns the managed CA whose key is fp: a CA keygate generated
// and signs with, so a certificate it signed was issued by keygate (other
// groups may register the same public key as an uploaded CA; that makes
// no certificate theirs).
func (ix *Index) ManagedCA(fp [32]byte) (CA, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	id, ok := ix.managed[fp]
	if !ok {
		return CA{}, false
	}
	return CA{ID: id, GroupID: ix.caFP[id].Group}, true
}

// CAExists reports whether a CA id is still registered.
func (ix *Index) CAExists(id int64) bool {
	ix.mu.RLock()
	_, ok := ix.caFP[id]
	ix.mu.RUnlock()
	return ok
}

// Revoked reports whether top-level group groupID revoked a certificate
// of its CA key caFP: by serial, by certificate key fingerprint
// ("SHA256:…"), or by key id. Key ids match as identities do:
// case-insensitively, and a key-id revocation that names a user (username
// or email) also revokes every certificate that logs in as userID, whatever
// its key id says. Another group's revocations of the same key never
// count.
func (ix *Index) Revoked(groupID int64, caFP [32]byte, serial uint64, keyID, certKeyFP string, userID int64) bool {
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
		k.Group, k.CA = groupID, caFP
		if _, ok := ix.revs[k]; ok {
			return true
		}
	}
	return false
}

// Group returns a group's place in the hierarchy.
func (ix *Index) Group(id int64) (Group, bool) {
	ix.mu.RLock()
	r, ok := ix.groups[id]
	ix.mu.RUnlock()
	return Group{ID: id, ParentID: r.Parent, TopLevelID: r.Top, EnforceSSHCertificates: r.Enforce}, ok
}

// AccessLevel is a user's effective level in a group: the highest of their
// memberships in the group and its ancestors that have not expired at the
// index's clock (SetClock). A membership stops counting at its expiry
// with no change to the database, so asking again after the deadline is
// enough to see the access gone.
func (ix *Index) AccessLevel(userID, groupID int64) int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.accessLevelLocked(userID, groupID)
}

func (ix *Index) accessLevelLocked(userID, groupID int64) int {
	best := 0
	nowMS := ix.now().UnixMilli()
	for g, depth := groupID, 0; g != 0 && depth < 64; depth++ {
		if m, ok := ix.members[memberKey{g, userID}]; ok && int(m.Level) > best && (m.Expires == 0 || nowMS < m.Expires) {
			best = int(m.Level)
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

// ProjectGroup returns the group of project id; false when the index holds
// no such project (deleted, or not yet created).
func (ix *Index) ProjectGroup(id int64) (groupID int64, ok bool) {
	ix.mu.RLock()
	groupID, ok = ix.projects[id]
	ix.mu.RUnlock()
	return groupID, ok
}

// InsertProject adds a project directly, bypassing the store (for tests and
// benchmarks, like InsertKey).
func (ix *Index) InsertProject(id, groupID int64) {
	ix.mu.Lock()
	ix.projects[id] = groupID
	ix.mu.Unlock()
}
