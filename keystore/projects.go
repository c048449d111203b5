package keystore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
)

// Project is a git repository in a group's namespace.
type Project struct {
	ID          int64
	GroupID     int64
	Name        string
	Path        string
	Description string
	// FullPath is the namespace's full path and the project path: "eng/tools/api".
	FullPath  string
	CreatedAt time.Time
}

// ProjectInput describes a project to create.
type ProjectInput struct {
	GroupID     int64
	Name        string
	Path        string
	Description string
}

const projectCols = `p.id, p.group_id, p.name, p.path, p.description, p.created_at, g.full_path`

func scanProject(row rowScanner) (*Project, error) {
	var p Project
	var created int64
	var ns string
	if err := row.Scan(&p.ID, &p.GroupID, &p.Name, &p.Path, &p.Description, &created, &ns); err != nil {
		return nil, err
	}
	p.CreatedAt = fromMS(created)
	p.FullPath = ns + "/" + p.Path
	return &p, nil
}

// CreateProject creates a project record. The caller creates the repository.
func (s *Store) CreateProject(ctx context.Context, a Actor, in ProjectInput) (*Project, error) {
	if err := newNamespaceEntry(&in.Name, &in.Path, in.Description).err(); err != nil {
		return nil, err
	}
	out := &Project{GroupID: in.GroupID, Name: in.Name, Path: in.Path, Description: in.Description}
	err := s.write(ctx, a, func(t *tx) error {
		var ns string
		if err := t.queryRow(ctx, `SELECT full_path FROM groups WHERE id = ?`, in.GroupID).Scan(&ns); errors.Is(err, sql.ErrNoRows) {
			return invalid("namespace_id", "does not exist")
		} else if err != nil {
			return err
		}
		var one int
		err := t.queryRow(ctx, `SELECT 1 FROM groups WHERE lower(full_path) = ?`, asciiLower(ns+"/"+in.Path)).Scan(&one)
		if err == nil {
			return invalid("path", "has already been taken by a subgroup")
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		out.FullPath = ns + "/" + in.Path
		out.CreatedAt = t.now
		id, err := t.insert(ctx, `INSERT INTO projects (group_id, name, path, description, created_at) VALUES (?, ?, ?, ?, ?)`,
			in.GroupID, in.Name, in.Path, in.Description, ms(t.now))
		if err != nil {
			return err
		}
		out.ID = id
		return t.record(ctx, "project_created", EntityProject, id, "create", map[string]any{"full_path": out.FullPath})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Project returns a project by id.
func (s *Store) Project(ctx context.Context, id int64) (*Project, error) {
	p, err := scanProject(s.queryRow(ctx, `SELECT `+projectCols+` FROM projects p JOIN groups g ON g.id = p.group_id WHERE p.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("Project")
	}
	return p, err
}

// ProjectByPath returns a project by "namespace/path" (case-insensitive).
func (s *Store) ProjectByPath(ctx context.Context, fullPath string) (*Project, error) {
	fullPath = strings.Trim(fullPath, "/")
	i := strings.LastIndexByte(fullPath, '/')
	if i <= 0 {
		return nil, notFound("Project")
	}
	p, err := scanProject(s.queryRow(ctx, `SELECT `+projectCols+` FROM projects p JOIN groups g ON g.id = p.group_id
		WHERE lower(g.full_path) = ? AND lower(p.path) = ?`, asciiLower(fullPath[:i]), asciiLower(fullPath[i+1:])))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("Project")
	}
	return p, err
}

// ListProjects lists a group's projects ordered by id.
func (s *Store) ListProjects(ctx context.Context, groupID int64, pg Page) ([]*Project, int, error) {
	return listPage(ctx, s, projectCols, `projects p JOIN groups g ON g.id = p.group_id WHERE p.group_id = ?`, []any{groupID}, "p.id", pg, scanProject)
}

// ProjectFilter narrows ListProjectsFiltered.
type ProjectFilter struct {
	// VisibleTo keeps projects in groups where this user has at least
	// MinAccessLevel (Guest if 0), directly or through an ancestor. 0: all.
	VisibleTo      int64
	MinAccessLevel int
	Search         string // substring of name or full path, any case
}

// ListProjectsFiltered lists projects ordered by id.
func (s *Store) ListProjectsFiltered(ctx context.Context, f ProjectFilter, pg Page) ([]*Project, int, error) {
	where, args := "1=1", []any{}
	if f.VisibleTo != 0 {
		where += " AND " + memberOfGroupOrAncestor("g", s.now())
		args = append(args, f.VisibleTo, max(f.MinAccessLevel, Guest))
	}
	if f.Search != "" {
		needle := asciiLower(f.Search)
		where += " AND (" + s.dialect.contains("lower(p.name)", "?") + " OR " + s.dialect.contains("lower(g.full_path || '/' || p.path)", "?") + ")"
		args = append(args, needle, needle)
	}
	return listPage(ctx, s, projectCols, `projects p JOIN groups g ON g.id = p.group_id WHERE `+where, args, "p.id", pg, scanProject)
}

// DeleteProject deletes a project record.
func (s *Store) DeleteProject(ctx context.Context, a Actor, id int64) error {
	return s.write(ctx, a, func(t *tx) error {
		keys, err := t.ids(ctx, `SELECT deploy_key_id FROM deploy_key_projects WHERE project_id = ?`, id)
		if err != nil {
			return err
		}
		if err := t.execOne(ctx, "Project", `DELETE FROM projects WHERE id = ?`, id); err != nil {
			return err
		}
		if err := t.settleDeployKeys(ctx, keys, "deploy_key_disabled", map[string]any{"project_id": id, "reason": "project deleted"}); err != nil {
			return err
		}
		return t.record(ctx, "project_deleted", EntityProject, id, "delete", nil)
	})
}

// TouchKeys records that keys were used at the given times, and returns the
// ids of keys that had never been used before (their first use).
func (s *Store) TouchKeys(ctx context.Context, used map[int64]time.Time) ([]int64, error) {
	var first []int64
	err := s.write(ctx, Actor{}, func(t *tx) error {
		for id, at := range used {
			// A negative id is deploy key -id (the auth index's convention).
			table, target, action := "keys", "key", "key_first_used"
			if id < 0 {
				table, target, action = "deploy_keys", "deploy_key", "deploy_key_first_used"
			}
			rowID := max(id, -id)
			var prev sql.NullInt64
			err := t.queryRow(ctx, `SELECT last_used_at FROM `+table+` WHERE id = ?`, rowID).Scan(&prev)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			} else if err != nil {
				return err
			}
			if _, err := t.exec(ctx, `UPDATE `+table+` SET last_used_at = ? WHERE id = ?`, ms(at), rowID); err != nil {
				return err
			}
			if !prev.Valid {
				first = append(first, id)
				if err := t.audit(ctx, action, target, rowID, nil); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return first, err
}
