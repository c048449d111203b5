package keystore

import (
	"context"
	"strings"
)

// EnterpriseGap is a group CA whose group has members its certificates
// cannot log in as: their enterprise_group_id is not the CA's group.
// Before enterprise users existed, membership was enough; after the
// upgrade such certificates are refused (with a banner) until an admin
// decides, so keygate lists them at start.
type EnterpriseGap struct {
	CAID          int64
	CAFingerprint string
	GroupID       int64
	GroupPath     string
	Members       []string // usernames of members who are not its enterprise users
}

// EnterpriseGaps lists the CAs with members outside their group's
// enterprise users.
func (s *Store) EnterpriseGaps(ctx context.Context) ([]EnterpriseGap, error) {
	rows, err := s.query(ctx, `SELECT c.id, c.fingerprint_sha256, g.id, g.full_path, u.username
		FROM group_cas c JOIN groups g ON g.id = c.group_id
		JOIN members m ON m.group_id = g.id AND `+currentMember(s.now())+` JOIN users u ON u.id = m.user_id
		WHERE u.enterprise_group_id IS NULL OR u.enterprise_group_id <> g.id
		ORDER BY c.id, u.username`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []EnterpriseGap
	for rows.Next() {
		var g EnterpriseGap
		var name string
		if err := rows.Scan(&g.CAID, &g.CAFingerprint, &g.GroupID, &g.GroupPath, &name); err != nil {
			return nil, err
		}
		if n := len(out); n > 0 && out[n-1].CAID == g.CAID {
			out[n-1].Members = append(out[n-1].Members, name)
			continue
		}
		g.Members = []string{name}
		out = append(out, g)
	}
	return out, rows.Err()
}

// EnterpriseAssignment is one user made an enterprise user by
// AssignEnterpriseUsers.
type EnterpriseAssignment struct {
	UserID    int64
	Username  string
	GroupID   int64
	GroupPath string
}

// AssignEnterpriseUsers is the opt-in upgrade path for deployments whose
// certificate users predate enterprise users: every user without an
// enterprise group who is a member of exactly one top-level group that
// has a CA becomes an enterprise user of that group. Users in several
// CA-bearing groups are left for an admin to decide. Each assignment is an
// audit event; with dryRun nothing is written.
func (s *Store) AssignEnterpriseUsers(ctx context.Context, a Actor, dryRun bool) ([]EnterpriseAssignment, error) {
	q := `SELECT u.id, u.username, MIN(g.id), MIN(g.full_path) FROM users u
		JOIN members m ON m.user_id = u.id AND ` + currentMember(s.now()) + `
		JOIN groups g ON g.id = m.group_id AND g.parent_id IS NULL
		WHERE u.enterprise_group_id IS NULL AND EXISTS (SELECT 1 FROM group_cas c WHERE c.group_id = g.id)
		GROUP BY u.id, u.username HAVING COUNT(DISTINCT g.id) = 1 ORDER BY u.id`
	var out []EnterpriseAssignment
	scan := func(rows interface {
		Next() bool
		Scan(...any) error
		Err() error
	}) error {
		for rows.Next() {
			var e EnterpriseAssignment
			if err := rows.Scan(&e.UserID, &e.Username, &e.GroupID, &e.GroupPath); err != nil {
				return err
			}
			out = append(out, e)
		}
		return rows.Err()
	}
	if dryRun {
		rows, err := s.query(ctx, q)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		return out, scan(rows)
	}
	err := s.write(ctx, a, func(t *tx) error {
		out = out[:0]
		rows, err := t.query(ctx, q)
		if err != nil {
			return err
		}
		err = scan(rows)
		rows.Close()
		if err != nil {
			return err
		}
		for _, e := range out {
			if _, err := t.exec(ctx, `UPDATE users SET enterprise_group_id = ? WHERE id = ? AND enterprise_group_id IS NULL`, e.GroupID, e.UserID); err != nil {
				return err
			}
			if err := t.record(ctx, "user_updated", EntityUser, e.UserID, "update",
				map[string]any{"enterprise_group_id": e.GroupID, "reason": "assigned by keygate enterprise-users --assign"}); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// String is the gap as one log-friendly phrase.
func (g EnterpriseGap) String() string {
	return g.GroupPath + " (CA " + g.CAFingerprint + "): " + strings.Join(g.Members, ", ")
}
