package keystore

import "context"

// EffectiveLevel is keygate's one access rule, applied by the REST API
// (from SQL) and the SSH server (from the in-memory index) alike: an admin
// counts as owner everywhere; anyone else has membershipLevel, the highest
// of their memberships in the group and its ancestors (0: none).
func EffectiveLevel(isAdmin bool, membershipLevel int) int {
	if isAdmin {
		return Owner
	}
	return membershipLevel
}

// UserAccessLevel is u's effective level in g (EffectiveLevel).
func (s *Store) UserAccessLevel(ctx context.Context, u *User, g *Group) (int, error) {
	if u.IsAdmin {
		return EffectiveLevel(true, 0), nil
	}
	level, err := s.AccessLevel(ctx, u.ID, g)
	if err != nil {
		return 0, err
	}
	return EffectiveLevel(false, level), nil
}

// DeployKeyAccess is the rule a deploy key answers to, applied by the SSH
// server (from the index) and the REST API (owner_status) alike: what the
// key may do in a project where it is enabled (canPush: a grant there has
// can_push), given its owner. A key never does more than its owner could:
//   - no owner (deleted, or never recorded) or a blocked one: nothing;
//   - the owner's effective level in the project (EffectiveLevel: admins
//     are owners) below Reporter: nothing, as the owner could not read it;
//   - read otherwise, and push where canPush and the owner is Maintainer
//     or more there (an instance key's owner: an admin).
func DeployKeyAccess(instance, canPush, ownerActive, ownerAdmin bool, ownerLevel int) (read, push bool) {
	if !ownerActive {
		return false, false
	}
	level := EffectiveLevel(ownerAdmin, ownerLevel)
	if level < Reporter {
		return false, false
	}
	if instance {
		return true, canPush && ownerAdmin
	}
	return true, canPush && level >= Maintainer
}
