package authindex

import (
	"github.com/keygate/keygate/keystore"
)

// Deploy keys live in the same pointer-free key table as user keys (one
// lookup on the auth path decides for both): id -ID (so the id spaces
// never collide), user 0, usage UsageAuth|UsageDeploy. Their grants are
// small maps beside it, with the key's owner.
//
// A deploy key answers to its owner (keystore.DeployKeyAccess): DeployAccess
// reads the owner's state and levels from the user and member tables at each
// call, so a change of the owner, their memberships or the groups (applied
// as user, member and group changes) changes its answer at once, with no
// copy to keep in step.

// UsageDeploy marks a deploy key in Key.Usage.
const UsageDeploy uint8 = 1 << 2

// IsDeployKey reports whether the key is a deploy key (its id is -ID of
// the deploy key).
func (k Key) IsDeployKey() bool { return k.Usage&UsageDeploy != 0 }

type deployRec struct {
	title    string
	fp       [32]byte
	owner    int64 // user id (0: deleted or never recorded)
	instance bool
	projects map[int64]bool // project id -> can_push
	groups   map[int64]bool // group id -> can_push
}

// DeployKey is what the index knows of a deploy key besides its key-table
// entry.
type DeployKey struct {
	ID    int64
	Title string
	// OwnerActive: the key's owner exists and is not blocked (a key that
	// answers to no one logs in nowhere).
	OwnerActive bool
}

// putDeployKey adds or replaces a deploy key (ix.mu held, or unpublished).
func (ix *Index) putDeployKey(k *keystore.DeployKey) {
	ix.dropDeployKey(k.ID)
	fp, ok := keystore.ParseSHA256Fingerprint(k.FingerprintSHA256)
	if !ok {
		return // unparseable: never matches (fail closed)
	}
	var exp int64
	if k.ExpiresAt != nil {
		exp = k.ExpiresAt.UnixMilli()
	}
	ix.putKeyFP(-k.ID, 0, &fp, UsageAuth|UsageDeploy, exp, k.ExpiresAt != nil,
		shapeOf(k.Type, k.Bits, k.CreatedAt.UnixMilli(), exp, k.ExpiresAt != nil))
	rec := deployRec{title: k.Title, fp: fp, owner: ptrVal(k.UserID), instance: k.Instance,
		projects: map[int64]bool{}, groups: map[int64]bool{}}
	for _, g := range k.Projects {
		rec.projects[g.ID] = g.CanPush
	}
	for _, g := range k.Groups {
		rec.groups[g.ID] = g.CanPush
	}
	ix.deploys[k.ID] = rec
}

func (ix *Index) dropDeployKey(id int64) {
	if _, ok := ix.deploys[id]; ok {
		delete(ix.deploys, id)
		ix.dropKey(-id)
	}
}

// InsertDeployKey adds a deploy key directly, bypassing the store (for
// benchmarks and tests, like InsertKey).
func (ix *Index) InsertDeployKey(k *keystore.DeployKey) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.putDeployKey(k)
}

// DeployKey returns deploy key id's title.
func (ix *Index) DeployKey(id int64) (DeployKey, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	r, ok := ix.deploys[id]
	owner, known := ix.users.get(r.owner)
	return DeployKey{ID: id, Title: r.title, OwnerActive: r.owner != 0 && known && owner.active}, ok
}

// DeployAccess reports what deploy key id may do in a project: where it is
// enabled on the project or on its group or an ancestor (push where one of
// those grants has can_push), what its owner answers for there
// (keystore.DeployKeyAccess: nothing when the owner is blocked, deleted or
// unknown, or below Reporter in the project; push only when Maintainer or
// more, an admin for an instance key). A few map lookups per ancestor.
func (ix *Index) DeployAccess(id, projectID, groupID int64) (read, push bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	r, ok := ix.deploys[id]
	if !ok || r.owner == 0 {
		return false, false
	}
	owner, ok := ix.users.get(r.owner)
	if !ok || !owner.active {
		return false, false
	}
	enabled, canPush := false, false
	if p, ok := r.projects[projectID]; ok {
		enabled, canPush = true, p
	}
	for g, depth := groupID, 0; g != 0 && depth < 64; depth++ {
		if p, ok := r.groups[g]; ok {
			enabled, canPush = true, canPush || p
		}
		rec, ok := ix.groups[g]
		if !ok {
			return false, false // a deleted ancestor: no access
		}
		g = rec.Parent
	}
	if !enabled {
		return false, false
	}
	level := 0
	if !owner.admin {
		level = ix.accessLevelLocked(r.owner, groupID)
	}
	return keystore.DeployKeyAccess(r.instance, canPush, true, owner.admin, level)
}
