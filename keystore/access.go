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
