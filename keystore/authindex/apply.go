package authindex

import (
	"context"
	"errors"
	"fmt"

	"github.com/keygate/keygate/keystore"
)

// setRetry sets what Follow calls when a change fails to apply (a Feed's
// Wake while it runs; nil: reload at once).
func (ix *Index) setRetry(fn func()) {
	ix.mu.Lock()
	ix.retry = fn
	ix.mu.Unlock()
}

// Follow subscribes the index to the store's committed writes.
func (ix *Index) Follow() {
	ix.src.Subscribe(func(c keystore.Change) {
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
		changes, err := ix.src.ChangesSince(ctx, after, 1000)
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
func (ix *Index) Apply(ctx context.Context, c keystore.Change) error {
	ix.applyMu.Lock()
	locked := true
	defer func() {
		if locked {
			ix.applyMu.Unlock()
		}
	}()
	s := ix.src
	var apply func()
	switch c.Entity {
	case keystore.EntityKey:
		k, err := s.Key(ctx, c.EntityID)
		switch {
		case errors.Is(err, keystore.ErrNotFound):
			apply = func() { ix.dropKey(c.EntityID) }
		case err != nil:
			return err
		default:
			apply = func() { ix.putKey(k) }
		}
	case keystore.EntityUser:
		u, err := s.User(ctx, c.EntityID)
		switch {
		case errors.Is(err, keystore.ErrNotFound):
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
	case keystore.EntityGroup:
		g, err := s.Group(ctx, c.EntityID)
		switch {
		case errors.Is(err, keystore.ErrNotFound):
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
				for id, g := range ix.projects {
					if g == c.EntityID {
						delete(ix.projects, id) // deleted with their group
					}
				}
			}
		case err != nil:
			return err
		default:
			apply = func() { ix.groups[g.ID] = ix.groupRecFor(g) }
		}
	case keystore.EntityMember:
		ms, err := s.GroupMembers(ctx, c.EntityID)
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
				ix.putMember(c.EntityID, m)
			}
		}
	case keystore.EntityCA:
		ca, err := s.CA(ctx, 0, c.EntityID)
		switch {
		case errors.Is(err, keystore.ErrNotFound):
			// Its revocations stay: they belong to its group and key.
			apply = func() { ix.dropCA(c.EntityID) }
		case err != nil:
			return err
		default:
			apply = func() { ix.putCA(ca) }
		}
	case keystore.EntityRevocation:
		r, err := s.RevocationByID(ctx, c.EntityID)
		switch {
		case errors.Is(err, keystore.ErrNotFound):
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
	case keystore.EntityBastionAllowance:
		b, err := s.BastionAllowanceByID(ctx, 0, c.EntityID)
		switch {
		case errors.Is(err, keystore.ErrNotFound):
			apply = func() { delete(ix.allows, c.EntityID) }
		case err != nil:
			return err
		default:
			apply = func() { ix.putAllowance(b) }
		}
	case keystore.EntityBastionTarget:
		b, err := s.BastionTargetByID(ctx, 0, c.EntityID)
		switch {
		case errors.Is(err, keystore.ErrNotFound):
			apply = func() { delete(ix.targets, c.EntityID) }
		case err != nil:
			return err
		default:
			apply = func() { ix.putTarget(b) }
		}
	case keystore.EntityDeployKey:
		k, err := s.DeployKey(ctx, c.EntityID)
		switch {
		case errors.Is(err, keystore.ErrNotFound):
			apply = func() { ix.dropDeployKey(c.EntityID) }
		case err != nil:
			return err
		default:
			apply = func() { ix.putDeployKey(k) }
		}
	case keystore.EntityKeyPolicy:
		r, err := s.KeyPolicyByID(ctx, c.EntityID)
		switch {
		case errors.Is(err, keystore.ErrNotFound):
			apply = func() { ix.dropPolicy(c.EntityID) }
		case err != nil:
			return err
		default:
			apply = func() { ix.putPolicy(r) }
		}
	case keystore.EntityProject:
		p, err := s.Project(ctx, c.EntityID)
		switch {
		case errors.Is(err, keystore.ErrNotFound):
			apply = func() { delete(ix.projects, c.EntityID) }
		case err != nil:
			return err
		default:
			apply = func() { ix.projects[p.ID] = p.GroupID }
		}
	case keystore.EntityGPGKey, keystore.EntityToken:
		apply = func() {} // nothing of these is on the auth path
	default:
		// An entity this build does not know (a newer node wrote it): the
		// change is marked applied so the feed goes on, but not silently.
		ix.warnUnknown(c.Entity)
		apply = func() {}
	}
	ix.mu.Lock()
	apply()
	ix.markApplied(c.Seq)
	ix.mu.Unlock()
	ix.signal()
	ix.applyMu.Unlock()
	locked = false
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

// warnUnknown logs, once per entity, a change this index cannot apply.
func (ix *Index) warnUnknown(e keystore.Entity) {
	ix.unknownMu.Lock()
	defer ix.unknownMu.Unlock()
	if ix.unknown == nil {
		ix.unknown = map[keystore.Entity]bool{}
	}
	if !ix.unknown[e] {
		ix.unknown[e] = true
		ix.log.Warn("auth index: change of an unknown entity ignored (a newer keygate wrote it?)", "entity", string(e))
	}
}
