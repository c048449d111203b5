package keystore

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"time"
)

// AddMember adds a direct member to a group, without an expiry.
func (s *Store) AddMember(ctx context.Context, a Actor, groupID, userID int64, level int) (*Member, error) {
	return s.AddMemberUntil(ctx, a, groupID, userID, level, nil)
}

// AddMemberUntil adds a direct member to a group whose membership ends at
// expiresAt (nil: never; otherwise it must be in the future).
func (s *Store) AddMemberUntil(ctx context.Context, a Actor, groupID, userID int64, level int, expiresAt *time.Time) (*Member, error) {
	if err := s.validateMember(level, expiresAt); err != nil {
		return nil, err
	}
	err := s.write(ctx, a, func(t *tx) error {
		if err := t.mustExist(ctx, "groups", groupID, "Group"); err != nil {
			return err
		}
		if err := t.mustExist(ctx, "users", userID, "User"); err != nil {
			return err
		}
		return t.upsertMember(ctx, groupID, userID, level, true, truncMS(expiresAt), true)
	})
	if err != nil {
		return nil, err
	}
	return s.Member(ctx, groupID, userID)
}

// UpdateMember changes a direct member's access level; its expiry stays.
func (s *Store) UpdateMember(ctx context.Context, a Actor, groupID, userID int64, level int) (*Member, error) {
	return s.updateMember(ctx, a, groupID, userID, level, nil, false)
}

// UpdateMemberUntil changes a direct member's access level and sets when
// the membership ends (nil: never).
func (s *Store) UpdateMemberUntil(ctx context.Context, a Actor, groupID, userID int64, level int, expiresAt *time.Time) (*Member, error) {
	return s.updateMember(ctx, a, groupID, userID, level, expiresAt, true)
}

func (s *Store) updateMember(ctx context.Context, a Actor, groupID, userID int64, level int, expiresAt *time.Time, setExpiry bool) (*Member, error) {
	if err := s.validateMember(level, expiresAt); err != nil {
		return nil, err
	}
	err := s.write(ctx, a, func(t *tx) error {
		if level < Owner || (setExpiry && expiresAt != nil) {
			if err := t.keepAnOwner(ctx, groupID, userID); err != nil {
				return err
			}
		}
		return t.upsertMember(ctx, groupID, userID, level, false, truncMS(expiresAt), setExpiry)
	})
	if err != nil {
		return nil, err
	}
	return s.Member(ctx, groupID, userID)
}

// validateMember checks an access level and an expiry, which must lie in
// the future: GitLab's "cannot be a date in the past".
func (s *Store) validateMember(level int, expiresAt *time.Time) error {
	p := problems{}
	if !ValidAccessLevel(level) {
		p.add("access_level", "is not a valid access level (10, 20, 30, 40 or 50)")
	}
	if expiresAt != nil && !expiresAt.After(s.now()) {
		p.add("expires_at", "cannot be a date in the past (a membership ends at the start of its expiry date, UTC)")
	}
	return p.err()
}

// RemoveMember removes a direct member.
func (s *Store) RemoveMember(ctx context.Context, a Actor, groupID, userID int64) error {
	return s.write(ctx, a, func(t *tx) error {
		if err := t.keepAnOwner(ctx, groupID, userID); err != nil {
			return err
		}
		if err := t.execOne(ctx, "Member", `DELETE FROM members WHERE group_id = ? AND user_id = ?`, groupID, userID); err != nil {
			return err
		}
		if err := t.audit(ctx, "member_removed", "group", groupID, map[string]any{"user_id": userID}); err != nil {
			return err
		}
		return t.change(ctx, EntityMember, groupID, "delete")
	})
}

// keepAnOwner refuses to remove, demote or give an expiry to the last
// owner of a top-level group whose membership does not expire: a group
// must never be left to expire into having no owner.
func (t *tx) keepAnOwner(ctx context.Context, groupID, userID int64) error {
	var parent, expires sql.NullInt64
	var level int
	err := t.queryRow(ctx, `SELECT g.parent_id, m.access_level, m.expires_at FROM members m JOIN groups g ON g.id = m.group_id
		WHERE m.group_id = ? AND m.user_id = ? AND `+currentMember(t.now), groupID, userID).Scan(&parent, &level, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("Member")
	} else if err != nil {
		return err
	}
	if parent.Valid || level != Owner || expires.Valid {
		return nil
	}
	var owners int
	if err := t.queryRow(ctx, `SELECT COUNT(*) FROM members WHERE group_id = ? AND access_level = ? AND expires_at IS NULL`,
		groupID, Owner).Scan(&owners); err != nil {
		return err
	}
	if owners <= 1 {
		return &ConflictError{Msg: "a top-level group must keep at least one owner (whose membership does not expire)"}
	}
	return nil
}

// upsertMember inserts (create) or updates a membership; setExpiry says
// whether expiresAt replaces the stored expiry.
func (t *tx) upsertMember(ctx context.Context, groupID, userID int64, level int, create bool, expiresAt *time.Time, setExpiry bool) error {
	if create {
		var old sql.NullInt64
		err := t.queryRow(ctx, `SELECT expires_at FROM members WHERE group_id = ? AND user_id = ?`, groupID, userID).Scan(&old)
		switch {
		case err == nil && (!old.Valid || old.Int64 > ms(t.now)):
			return &ConflictError{Msg: "Member already exists"}
		case err == nil:
			// An expired membership is gone (as GitLab deletes it): the
			// new one replaces it.
			if _, err := t.exec(ctx, `DELETE FROM members WHERE group_id = ? AND user_id = ?`, groupID, userID); err != nil {
				return err
			}
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if _, err := t.exec(ctx, `INSERT INTO members (group_id, user_id, access_level, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
			groupID, userID, level, ms(t.now), msPtr(expiresAt)); err != nil {
			return err
		}
	} else if setExpiry {
		if err := t.execOne(ctx, "Member", `UPDATE members SET access_level = ?, expires_at = ? WHERE group_id = ? AND user_id = ? AND `+
			notExpired("expires_at", t.now), level, msPtr(expiresAt), groupID, userID); err != nil {
			return err
		}
	} else {
		if err := t.execOne(ctx, "Member", `UPDATE members SET access_level = ? WHERE group_id = ? AND user_id = ? AND `+notExpired("expires_at", t.now),
			level, groupID, userID); err != nil {
			return err
		}
	}
	action := "member_added"
	if !create {
		action = "member_updated"
	}
	details := map[string]any{"user_id": userID, "access_level": level}
	if setExpiry {
		details["expires_at"] = nil
		if expiresAt != nil {
			details["expires_at"] = expiresAt.UTC().Format(time.RFC3339)
		}
	}
	if err := t.audit(ctx, action, "group", groupID, details); err != nil {
		return err
	}
	return t.change(ctx, EntityMember, groupID, "update")
}

const memberCols = `m.group_id, m.access_level, m.created_at, m.expires_at, u.id, u.username, u.email, u.name, u.state, u.is_admin, u.created_at`

func scanMember(row rowScanner) (*Member, error) {
	var m Member
	var mc, uc int64
	var exp sql.NullInt64
	var admin int
	if err := row.Scan(&m.GroupID, &m.AccessLevel, &mc, &exp, &m.User.ID, &m.User.Username, &m.User.Email, &m.User.Name,
		&m.User.State, &admin, &uc); err != nil {
		return nil, err
	}
	m.CreatedAt = fromMS(mc)
	m.ExpiresAt = fromNullMS(exp)
	m.User.CreatedAt = fromMS(uc)
	m.User.IsAdmin = admin != 0
	return &m, nil
}

// Member returns a direct membership. An expired one is gone ("not
// found"), as in GitLab, though its row stays until replaced.
func (s *Store) Member(ctx context.Context, groupID, userID int64) (*Member, error) {
	m, err := scanMember(s.queryRow(ctx, `SELECT `+memberCols+` FROM members m JOIN users u ON u.id = m.user_id
		WHERE m.group_id = ? AND m.user_id = ? AND `+currentMember(s.now()), groupID, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("Member")
	}
	return m, err
}

// MemberFilter narrows ListMembersFiltered.
type MemberFilter struct {
	Query   string  // substring of username or name, any case
	UserIDs []int64 // only these users
}

// ListMembers lists a group's direct members ordered by user id.
func (s *Store) ListMembers(ctx context.Context, groupID int64, pg Page) ([]*Member, int, error) {
	return s.ListMembersFiltered(ctx, groupID, MemberFilter{}, pg)
}

// ListMembersFiltered is ListMembers narrowed by f. Expired memberships
// are gone and not listed.
func (s *Store) ListMembersFiltered(ctx context.Context, groupID int64, f MemberFilter, pg Page) ([]*Member, int, error) {
	where, args := s.memberFilter(f)
	return listPage(ctx, s, memberCols, `members m JOIN users u ON u.id = m.user_id WHERE m.group_id = ? AND `+currentMember(s.now())+where,
		append([]any{groupID}, args...), "u.id", pg, scanMember)
}

// memberFilter is the SQL (" AND …") and arguments of f, on users u.
func (s *Store) memberFilter(f MemberFilter) (string, []any) {
	var where string
	var args []any
	if f.Query != "" {
		needle := asciiLower(f.Query)
		where += " AND (" + s.dialect.contains("lower(u.username)", "?") + " OR " + s.dialect.contains("lower(u.name)", "?") + ")"
		args = append(args, needle, needle)
	}
	if len(f.UserIDs) > 0 {
		where += " AND u.id IN (" + strings.TrimSuffix(strings.Repeat("?, ", len(f.UserIDs)), ", ") + ")"
		for _, id := range f.UserIDs {
			args = append(args, id)
		}
	}
	return where, args
}

// groupOrAncestorOf, with arguments (group id, group full path), holds for
// a group mg that is that group or one of its ancestors.
const groupOrAncestorOf = `(mg.id = ? OR substr(?, 1, length(mg.full_path) + 1) = mg.full_path || '/')`

// currentMember holds for a membership m that has not expired at now: the
// condition every read that grants access through members applies.
func currentMember(now time.Time) string { return notExpired("m.expires_at", now) }

// notExpired holds when the expiry column col is NULL (never) or after now.
func notExpired(col string, now time.Time) string {
	return `(` + col + ` IS NULL OR ` + col + ` > ` + strconv.FormatInt(ms(now), 10) + `)`
}

// memberOfGroupOrAncestor, with arguments (user id, minimum level), holds
// when that user has at least that level in group alias or an ancestor
// (GitLab's inherited membership) through a membership current at now.
func memberOfGroupOrAncestor(alias string, now time.Time) string {
	return `EXISTS (SELECT 1 FROM members m JOIN groups mg ON mg.id = m.group_id WHERE m.user_id = ? AND m.access_level >= ?
		AND ` + currentMember(now) + `
		AND (mg.id = ` + alias + `.id OR substr(` + alias + `.full_path, 1, length(mg.full_path) + 1) = mg.full_path || '/'))`
}

// ListEffectiveMembers lists a group's effective members (GitLab's
// members/all): direct members and those inherited from ancestors whose
// membership has not expired, one row per user at their highest level,
// ordered by user id. GroupID is g's; ExpiresAt is when the last of the
// user's memberships giving access ends (nil: one of them never does).
func (s *Store) ListEffectiveMembers(ctx context.Context, g *Group, f MemberFilter, pg Page) ([]*Member, int, error) {
	where, args := s.memberFilter(f)
	from := `(SELECT ` + strconv.FormatInt(g.ID, 10) + ` AS group_id, m.user_id, MAX(m.access_level) AS access_level, MIN(m.created_at) AS created_at,
		CASE WHEN COUNT(m.expires_at) < COUNT(*) THEN NULL ELSE MAX(m.expires_at) END AS expires_at
		FROM members m JOIN groups mg ON mg.id = m.group_id WHERE ` + groupOrAncestorOf + ` AND ` + currentMember(s.now()) + ` GROUP BY m.user_id) m
		JOIN users u ON u.id = m.user_id WHERE 1=1` + where
	return listPage(ctx, s, memberCols, from, append([]any{g.ID, g.FullPath}, args...), "u.id", pg, scanMember)
}

// EffectiveMember is one user's effective membership of g (members/all/:id).
func (s *Store) EffectiveMember(ctx context.Context, g *Group, userID int64) (*Member, error) {
	ms, _, err := s.ListEffectiveMembers(ctx, g, MemberFilter{UserIDs: []int64{userID}}, Page{Page: 1, PerPage: 1})
	if err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return nil, notFound("Member")
	}
	return ms[0], nil
}
