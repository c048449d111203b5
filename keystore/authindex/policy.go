package authindex

import (
	"context"

	"github.com/keygate/keygate/keystore"
)

// Key policies in the index: the instance's is one pointer read without a
// lock on every login; top-level groups' stricter ones are a small map
// read by the git decision.

// policies is the index's copy of the key policies: rows by id (a change
// names a row) and the instance's and groups' policies they hold.
type policies struct {
	rows  map[int64]int64 // row id -> group id (0: the instance)
	group map[int64]keystore.KeyPolicy
}

// KeyPolicy returns the instance's key policy (never nil;
// keystore.NoKeyPolicy when none restricts anything). It takes no lock and
// does not allocate.
func (ix *Index) KeyPolicy() *keystore.KeyPolicy {
	if p := ix.policy.Load(); p != nil {
		return p
	}
	return keystore.NoKeyPolicy
}

// GroupKeyPolicy returns top-level group groupID's own key policy, if it
// set one (to be merged with the instance's: keystore.KeyPolicy.Stricter).
func (ix *Index) GroupKeyPolicy(groupID int64) (keystore.KeyPolicy, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	p, ok := ix.policies.group[groupID]
	return p, ok
}

// putPolicy adds or replaces a policy row (ix.mu held, or unpublished).
func (ix *Index) putPolicy(r *keystore.KeyPolicyRow) {
	ix.dropPolicy(r.ID)
	ix.policies.rows[r.ID] = r.GroupID
	if r.GroupID == 0 {
		if r.Policy.IsZero() {
			ix.policy.Store(nil)
			return
		}
		p := r.Policy
		ix.policy.Store(&p)
		return
	}
	ix.policies.group[r.GroupID] = r.Policy
}

func (ix *Index) dropPolicy(id int64) {
	gid, ok := ix.policies.rows[id]
	if !ok {
		return
	}
	delete(ix.policies.rows, id)
	if gid == 0 {
		ix.policy.Store(nil)
		return
	}
	delete(ix.policies.group, gid)
}

// loadPolicies reads every key policy into an unpublished index.
func (ix *Index) loadPolicies(ctx context.Context) error {
	rows, err := ix.src.AllKeyPolicies(ctx)
	if err != nil {
		return err
	}
	for _, r := range rows {
		ix.putPolicy(r)
	}
	return nil
}

// SetKeyPolicy sets the instance's key policy directly, bypassing the
// store (for benchmarks and tests, like InsertKey).
func (ix *Index) SetKeyPolicy(p keystore.KeyPolicy) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if p.IsZero() {
		ix.policy.Store(nil)
		return
	}
	ix.policy.Store(&p)
}
