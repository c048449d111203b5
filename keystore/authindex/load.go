package authindex

import (
	"context"
	"errors"

	"github.com/keygate/keygate/keystore"
)

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
	s := ix.src
	seq, err := s.LastChange(ctx)
	if err != nil {
		return err
	}
	fresh := &Index{src: s, log: ix.log, now: ix.now, loading: true}
	fresh.reset()
	// Pre-size the big maps: growing them one insert at a time dominates
	// the load of a million keys.
	nUsers, nKeys, err := s.IndexCounts(ctx)
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
	if err := s.ScanCAs(ctx, func(id, groupID int64, fp string, managed bool) error {
		fresh.putCA(&keystore.GroupCA{ID: id, GroupID: groupID, FingerprintSHA256: fp, Managed: managed})
		return nil
	}); err != nil {
		return err
	}
	if err := s.ScanRevocations(ctx, func(r *keystore.Revocation) error {
		fresh.putRevocation(r)
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
	// Deploy keys after the user keys: they share the key table.
	if err := s.ScanDeployKeys(ctx, func(k *keystore.DeployKey) error {
		fresh.putDeployKey(k)
		return nil
	}); err != nil {
		return err
	}
	if err := s.ScanProjects(ctx, func(id, groupID int64) error {
		fresh.projects[id] = groupID
		return nil
	}); err != nil {
		return err
	}
	if err := fresh.loadPolicies(ctx); err != nil {
		return err
	}
	ix.applyMu.Lock()
	defer ix.applyMu.Unlock()
	ix.mu.Lock()
	ix.targets, ix.allows, ix.deploys, ix.projects = fresh.targets, fresh.allows, fresh.deploys, fresh.projects
	ix.policy.Store(fresh.policy.Load())
	ix.policies = fresh.policies
	ix.setKeys(fresh.keys.Load())
	ix.keyFP, ix.users = fresh.keyFP, fresh.users
	ix.blocked.Store(fresh.blocked.Load())
	ix.groups, ix.members, ix.byUser = fresh.groups, fresh.members, fresh.byUser
	ix.cas, ix.caFP, ix.caKnown, ix.revs, ix.revByID = fresh.cas, fresh.caFP, fresh.caKnown, fresh.revs, fresh.revByID
	ix.applied = seq
	ix.ahead = map[int64]struct{}{} // applied to the old maps only
	ix.mu.Unlock()
	ix.signal()
	return nil
}

// loadUsersAndGroups reads users, groups and members into an unpublished
// index.
func (ix *Index) loadUsersAndGroups(ctx context.Context) error {
	s := ix.src
	// Only the columns the index needs, scanned without a string per value.
	if err := s.ScanUsers(ctx, func(r keystore.UserRow) error {
		ix.addUserBytes(r.ID, r.Username, r.Email, r.Active, r.Admin, r.EnterpriseGroupID)
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
	return s.ScanMembers(ctx, func(gid int64, m keystore.MemberLevel) error {
		ix.putMember(gid, m)
		return nil
	})
}

// loadKeys reads the user keys into an unpublished index.
func (ix *Index) loadKeys(ctx context.Context) error {
	return ix.src.ScanKeys(ctx, func(r keystore.KeyRow) error {
		b, ok := parseFingerprintBytes(r.FingerprintSHA256)
		if !ok {
			return nil // unparseable: never matches (fail closed)
		}
		ix.putKeyFP(r.ID, r.UserID, &b, usageBitsBytes(r.Usage), r.ExpiresMS, r.Expires,
			shapeOfBytes(keystore.KeyKind(string(r.Type)), r.Bits, r.CreatedMS, r.ExpiresMS, r.Expires))
		return nil
	})
}

func ptrVal(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}
