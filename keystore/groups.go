package keystore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// GroupInput is the writable part of a group. Nil fields are unchanged on update.
type GroupInput struct {
	Name                   *string
	Path                   *string
	Description            *string
	ParentID               *int64
	EnforceSSHCertificates *bool
	// KRLPublic lets anyone read the group's KRL and CA keys without a
	// token (top-level groups only; httpapi lets only admins set it).
	KRLPublic *bool
	// SSHCertificateMaxTTL is the longest certificate the group's managed
	// CAs issue to people (top-level groups only).
	SSHCertificateMaxTTL *time.Duration
}

const groupCols = `id, name, path, description, parent_id, full_path, enforce_ssh_certificates, created_at, krl_public, ssh_certificate_max_ttl`

func scanGroup(row rowScanner) (*Group, error) {
	var g Group
	var parent sql.NullInt64
	var enforce, krlPublic int
	var created, maxTTL int64
	if err := row.Scan(&g.ID, &g.Name, &g.Path, &g.Description, &parent, &g.FullPath, &enforce, &created, &krlPublic, &maxTTL); err != nil {
		return nil, err
	}
	g.SSHCertificateMaxTTL = time.Duration(maxTTL) * time.Second
	if parent.Valid {
		g.ParentID = &parent.Int64
	}
	g.EnforceSSHCertificates = enforce != 0
	g.KRLPublic = krlPublic != 0
	g.CreatedAt = fromMS(created)
	return &g, nil
}

func validateGroupPath(p problems, v string) { validatePathName(p, "path", v, "an id") }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// newNamespaceEntry trims a new group's or project's name and path, fills
// the path from the name or the name from the path (as GitLab does), and
// validates the three.
func newNamespaceEntry(name, path *string, description string) problems {
	*name, *path = strings.TrimSpace(*name), strings.TrimSpace(*path)
	if *path == "" && pathRE.MatchString(*name) {
		*path = *name
	}
	if *name == "" {
		*name = *path
	}
	p := problems{}
	validateText(p, "name", *name, true)
	validateGroupPath(p, *path)
	if len(description) > 2000 {
		p.add("description", "is too long (maximum is 2000 characters)")
	}
	return p
}

// CreateGroup creates a group. When ownerID is not 0 that user becomes its
// owner (GitLab does this for the creator of a top-level group).
func (s *Store) CreateGroup(ctx context.Context, a Actor, in GroupInput, ownerID int64) (*Group, error) {
	g := &Group{Name: deref(in.Name), Path: deref(in.Path), Description: deref(in.Description), ParentID: in.ParentID}
	p := newNamespaceEntry(&g.Name, &g.Path, g.Description)
	if in.EnforceSSHCertificates != nil && *in.EnforceSSHCertificates {
		if g.ParentID != nil {
			p.add("enforce_ssh_certificates", "can only be set on top-level groups")
		}
		g.EnforceSSHCertificates = true
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	err := s.write(ctx, a, func(t *tx) error {
		g.FullPath = g.Path
		if g.ParentID != nil {
			parent, err := scanGroup(t.queryRow(ctx, `SELECT `+groupCols+` FROM groups WHERE id = ?`, *g.ParentID))
			if errors.Is(err, sql.ErrNoRows) {
				return invalid("parent_id", "does not exist")
			} else if err != nil {
				return err
			}
			if strings.Count(parent.FullPath, "/") >= 19 {
				return invalid("parent_id", "is nested too deeply (maximum depth is 20)")
			}
			g.FullPath = parent.FullPath + "/" + g.Path
		}
		g.CreatedAt = t.now
		g.SSHCertificateMaxTTL = DefaultGroupCertMaxTTL // the column's default
		id, err := t.insert(ctx, `INSERT INTO groups (name, path, description, parent_id, full_path, enforce_ssh_certificates, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, g.Name, g.Path, g.Description, g.ParentID, g.FullPath, boolInt(g.EnforceSSHCertificates), ms(t.now))
		if err != nil {
			return err
		}
		g.ID = id
		if err := t.record(ctx, "group_created", EntityGroup, id, "create", map[string]any{"full_path": g.FullPath}); err != nil {
			return err
		}
		if ownerID != 0 {
			return t.upsertMember(ctx, id, ownerID, Owner, true, nil, false)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// UpdateGroup changes a group's name, path, description or certificate enforcement.
// Changing the path moves every subgroup with it.
func (s *Store) UpdateGroup(ctx context.Context, a Actor, id int64, in GroupInput) (*Group, error) {
	var out *Group
	err := s.write(ctx, a, func(t *tx) error {
		g, err := scanGroup(t.queryRow(ctx, `SELECT `+groupCols+` FROM groups WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("Group")
		} else if err != nil {
			return err
		}
		p := problems{}
		changed := map[string]any{}
		oldFull := g.FullPath
		if in.Name != nil {
			g.Name = strings.TrimSpace(*in.Name)
			validateText(p, "name", g.Name, true)
			changed["name"] = g.Name
		}
		if in.Path != nil && *in.Path != g.Path {
			g.Path = strings.TrimSpace(*in.Path)
			validateGroupPath(p, g.Path)
			g.FullPath = g.Path
			if i := strings.LastIndexByte(oldFull, '/'); i >= 0 {
				g.FullPath = oldFull[:i+1] + g.Path
			}
			changed["path"] = g.Path
		}
		if in.Description != nil {
			g.Description = *in.Description
			if len(g.Description) > 2000 {
				p.add("description", "is too long (maximum is 2000 characters)")
			}
			changed["description"] = g.Description
		}
		if in.EnforceSSHCertificates != nil {
			if !g.TopLevel() && *in.EnforceSSHCertificates {
				p.add("enforce_ssh_certificates", "can only be set on top-level groups")
			}
			g.EnforceSSHCertificates = *in.EnforceSSHCertificates
			changed["enforce_ssh_certificates"] = g.EnforceSSHCertificates
		}
		if in.KRLPublic != nil {
			if !g.TopLevel() && *in.KRLPublic {
				p.add("krl_public", "can only be set on top-level groups")
			}
			g.KRLPublic = *in.KRLPublic
			changed["krl_public"] = g.KRLPublic
		}
		if v := in.SSHCertificateMaxTTL; v != nil {
			switch {
			case !g.TopLevel():
				p.add("ssh_certificate_max_ttl", "can only be set on top-level groups")
			case *v < MinCertTTL || *v > MaxGroupCertTTL || *v%time.Second != 0:
				p.add("ssh_certificate_max_ttl", fmt.Sprintf("must be a whole number of seconds from %d to %d",
					int(MinCertTTL/time.Second), int(MaxGroupCertTTL/time.Second)))
			}
			g.SSHCertificateMaxTTL = *v
			changed["ssh_certificate_max_ttl"] = int64(*v / time.Second)
		}
		if err := p.err(); err != nil {
			return err
		}
		if _, err := t.exec(ctx, `UPDATE groups SET name = ?, path = ?, description = ?, full_path = ?, enforce_ssh_certificates = ?, krl_public = ?, ssh_certificate_max_ttl = ? WHERE id = ?`,
			g.Name, g.Path, g.Description, g.FullPath, boolInt(g.EnforceSSHCertificates), boolInt(g.KRLPublic), int64(g.SSHCertificateMaxTTL/time.Second), id); err != nil {
			return err
		}
		if g.FullPath != oldFull {
			if _, err := t.exec(ctx, `UPDATE groups SET full_path = ? || substr(full_path, ?) WHERE substr(full_path, 1, ?) = ?`,
				g.FullPath, len(oldFull)+1, len(oldFull)+1, oldFull+"/"); err != nil {
				return err
			}
		}
		out = g
		return t.record(ctx, "group_updated", EntityGroup, id, "update", changed)
	})
	return out, err
}

// DeleteGroup deletes a group with its subgroups, memberships, CAs and
// certificate revocations.
func (s *Store) DeleteGroup(ctx context.Context, a Actor, id int64) error {
	return s.write(ctx, a, func(t *tx) error {
		g, err := scanGroup(t.queryRow(ctx, `SELECT `+groupCols+` FROM groups WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("Group")
		} else if err != nil {
			return err
		}
		sub, err := t.ids(ctx, `SELECT id FROM groups WHERE substr(full_path, 1, ?) = ?`, len(g.FullPath)+1, g.FullPath+"/")
		if err != nil {
			return err
		}
		cas, err := t.ids(ctx, `SELECT id FROM group_cas WHERE group_id = ?`, id)
		if err != nil {
			return err
		}
		// Its revocations go too: they refuse no other group's logins, and
		// a group that gets its id again (an import reuses ids past the
		// highest) must not read them.
		revs, err := t.ids(ctx, `SELECT id FROM cert_revocations WHERE group_id = ?`, id)
		if err != nil {
			return err
		}
		if _, err := t.exec(ctx, `DELETE FROM cert_revocations WHERE group_id = ?`, id); err != nil {
			return err
		}
		// Its enterprise users lose their enterprise group (the foreign key
		// sets it to NULL); the index re-reads them.
		enterprise, err := t.ids(ctx, `SELECT id FROM users WHERE enterprise_group_id = ?`, id)
		if err != nil {
			return err
		}
		// Deploy keys enabled on the group, a subgroup or one of their
		// projects lose those grants with them.
		inTree := `(gr.id = ? OR substr(gr.full_path, 1, ?) = ?)`
		keys, err := t.ids(ctx, `SELECT dg.deploy_key_id FROM deploy_key_groups dg JOIN groups gr ON gr.id = dg.group_id WHERE `+inTree+`
			UNION SELECT dp.deploy_key_id FROM deploy_key_projects dp JOIN projects p ON p.id = dp.project_id JOIN groups gr ON gr.id = p.group_id WHERE `+inTree,
			id, len(g.FullPath)+1, g.FullPath+"/", id, len(g.FullPath)+1, g.FullPath+"/")
		if err != nil {
			return err
		}
		if _, err := t.exec(ctx, `DELETE FROM groups WHERE id = ?`, id); err != nil {
			return err
		}
		if err := t.settleDeployKeys(ctx, keys, "deploy_key_disabled", map[string]any{"group_id": id, "reason": "group deleted"}); err != nil {
			return err
		}
		for _, u := range enterprise {
			if err := t.change(ctx, EntityUser, u, "update"); err != nil {
				return err
			}
		}
		for _, c := range cas {
			if err := t.change(ctx, EntityCA, c, "delete"); err != nil {
				return err
			}
		}
		for _, r := range revs {
			if err := t.change(ctx, EntityRevocation, r, "delete"); err != nil {
				return err
			}
		}
		for _, sg := range sub {
			if err := t.change(ctx, EntityGroup, sg, "delete"); err != nil {
				return err
			}
		}
		return t.record(ctx, "group_deleted", EntityGroup, id, "delete", map[string]any{"full_path": g.FullPath})
	})
}

// Group returns a group by id.
func (s *Store) Group(ctx context.Context, id int64) (*Group, error) {
	g, err := scanGroup(s.queryRow(ctx, `SELECT `+groupCols+` FROM groups WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("Group")
	}
	return g, err
}

// GroupByPath returns a group by its full path (case-insensitive).
func (s *Store) GroupByPath(ctx context.Context, fullPath string) (*Group, error) {
	g, err := scanGroup(s.queryRow(ctx, `SELECT `+groupCols+` FROM groups WHERE lower(full_path) = ?`, asciiLower(strings.Trim(fullPath, "/"))))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("Group")
	}
	return g, err
}

// GroupFilter narrows ListGroups.
type GroupFilter struct {
	// VisibleTo limits the list to groups where this user is a member,
	// directly or through an ancestor. 0: all groups.
	VisibleTo int64
	// MinAccessLevel, with VisibleTo, keeps groups where that user has at
	// least this level (directly or through an ancestor).
	MinAccessLevel int
	TopLevelOnly   bool
	ParentID       int64  // direct subgroups of this group
	DescendantOf   string // every subgroup, at any depth, of the group with this full path
	Search         string
}

// ListGroups lists groups ordered by full path.
func (s *Store) ListGroups(ctx context.Context, f GroupFilter, pg Page) ([]*Group, int, error) {
	where := []string{"1=1"}
	var args []any
	if f.VisibleTo != 0 {
		where = append(where, memberOfGroupOrAncestor("g", s.now()))
		args = append(args, f.VisibleTo, max(f.MinAccessLevel, Guest))
	}
	if f.TopLevelOnly {
		where = append(where, "g.parent_id IS NULL")
	}
	if f.ParentID != 0 {
		where = append(where, "g.parent_id = ?")
		args = append(args, f.ParentID)
	}
	if f.DescendantOf != "" {
		where = append(where, "substr(g.full_path, 1, length(?) + 1) = ? || '/'")
		args = append(args, f.DescendantOf, f.DescendantOf)
	}
	if f.Search != "" {
		where = append(where, "("+s.dialect.contains("lower(g.name)", "?")+" OR "+s.dialect.contains("lower(g.full_path)", "?")+")")
		needle := asciiLower(f.Search)
		args = append(args, needle, needle)
	}
	return listPage(ctx, s, prefixCols("g.", groupCols), `groups g WHERE `+strings.Join(where, " AND "), args, "g.full_path, g.id", pg, scanGroup)
}

// AllGroups returns every group (for the auth index).
func (s *Store) AllGroups(ctx context.Context) ([]*Group, error) {
	gs, _, err := s.ListGroups(ctx, GroupFilter{}, Page{PerPage: 1 << 30})
	return gs, err
}

func prefixCols(prefix, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = prefix + parts[i]
	}
	return strings.Join(parts, ", ")
}

// Ancestors returns the group and its ancestors, nearest first.
func (s *Store) Ancestors(ctx context.Context, g *Group) ([]*Group, error) {
	out := []*Group{g}
	for cur := g; cur.ParentID != nil; {
		p, err := s.Group(ctx, *cur.ParentID)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
		cur = p
	}
	return out, nil
}

// AccessLevel reports a user's effective access level in a group: the
// highest of their memberships in the group and its ancestors that have
// not expired.
func (s *Store) AccessLevel(ctx context.Context, userID int64, g *Group) (int, error) {
	var level sql.NullInt64
	err := s.queryRow(ctx, `SELECT MAX(m.access_level) FROM members m JOIN groups mg ON mg.id = m.group_id
		WHERE m.user_id = ? AND `+currentMember(s.now())+` AND `+groupOrAncestorOf, userID, g.ID, g.FullPath).Scan(&level)
	if err != nil {
		return 0, err
	}
	return int(level.Int64), nil
}

// ValidAccessLevel reports whether l is one of GitLab's access levels.
func ValidAccessLevel(l int) bool {
	switch l {
	case Guest, Reporter, Developer, Maintainer, Owner:
		return true
	}
	return false
}
