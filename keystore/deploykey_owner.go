package keystore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
)

// A deploy key answers to its owner (DeployKey.UserID): what the key may
// do is DeployKeyAccess of its owner's state and levels. These are the
// owner's statuses, as admins list them.
const (
	// OwnerActive: the owner answers for everything the key is enabled for.
	OwnerActive = "active"
	// OwnerInsufficient: the owner is active but, somewhere the key is
	// enabled, below what its grant needs (Maintainer to push, Reporter to
	// read; an admin for an instance key), so the key does less there.
	OwnerInsufficient = "insufficient_access"
	// OwnerBlocked, OwnerDeleted, OwnerUnknown (never recorded): the key
	// answers to no one and does nothing.
	OwnerBlocked = "blocked"
	OwnerDeleted = "deleted"
	OwnerUnknown = "unknown"
)

// rowQuerier is what *Store and *tx share for single-row reads.
type rowQuerier interface {
	queryRow(ctx context.Context, query string, args ...any) rowScanner
}

// deployPlace is one grant of a deploy key, where it applies: the group
// (a project's group for a project grant), its full path, and a name for
// messages.
type deployPlace struct {
	groupID   int64
	groupPath string
	name      string
	canPush   bool
}

func deployPlaces(ctx context.Context, q rowQuerier, k *DeployKey) ([]deployPlace, error) {
	var out []deployPlace
	for _, g := range k.Projects {
		var p deployPlace
		var path string
		err := q.queryRow(ctx, `SELECT g.id, g.full_path, p.path FROM projects p JOIN groups g ON g.id = p.group_id WHERE p.id = ?`, g.ID).
			Scan(&p.groupID, &p.groupPath, &path)
		if errors.Is(err, sql.ErrNoRows) {
			continue // deleted meanwhile: its grant went with it
		} else if err != nil {
			return nil, err
		}
		p.name, p.canPush = p.groupPath+"/"+path, g.CanPush
		out = append(out, p)
	}
	for _, g := range k.Groups {
		p := deployPlace{groupID: g.ID, canPush: g.CanPush}
		err := q.queryRow(ctx, `SELECT full_path FROM groups WHERE id = ?`, g.ID).Scan(&p.groupPath)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		} else if err != nil {
			return nil, err
		}
		p.name = p.groupPath
		out = append(out, p)
	}
	return out, nil
}

// ownerShortfall lists the places where deploy key k does less than its
// grant there, were the active user userID (admin: an admin) its owner.
func ownerShortfall(ctx context.Context, q rowQuerier, k *DeployKey, userID int64, admin bool) ([]string, error) {
	places, err := deployPlaces(ctx, q, k)
	if err != nil {
		return nil, err
	}
	var short []string
	for _, p := range places {
		level := 0
		if !admin {
			var l sql.NullInt64
			if err := q.queryRow(ctx, `SELECT MAX(m.access_level) FROM members m JOIN groups mg ON mg.id = m.group_id
				WHERE m.user_id = ? AND `+groupOrAncestorOf, userID, p.groupID, p.groupPath).Scan(&l); err != nil {
				return nil, err
			}
			level = int(l.Int64)
		}
		if read, push := DeployKeyAccess(k.Instance, p.canPush, true, admin, level); !read || push != p.canPush {
			short = append(short, p.name)
		}
	}
	return short, nil
}

// DeployKeyOwnerStatus reports how k's owner answers for it (OwnerActive,
// OwnerInsufficient, OwnerBlocked, OwnerDeleted or OwnerUnknown).
func (s *Store) DeployKeyOwnerStatus(ctx context.Context, k *DeployKey) (string, error) {
	return deployKeyOwnerStatus(ctx, s, k)
}

func deployKeyOwnerStatus(ctx context.Context, q rowQuerier, k *DeployKey) (string, error) {
	if k.UserID == nil {
		if k.UserRecorded {
			return OwnerDeleted, nil
		}
		return OwnerUnknown, nil
	}
	var state string
	var admin int
	err := q.queryRow(ctx, `SELECT state, is_admin FROM users WHERE id = ?`, *k.UserID).Scan(&state, &admin)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return OwnerDeleted, nil
	case err != nil:
		return "", err
	case state != StateActive:
		return OwnerBlocked, nil
	case k.Instance && admin == 0:
		return OwnerInsufficient, nil
	}
	short, err := ownerShortfall(ctx, q, k, *k.UserID, admin != 0)
	if err != nil {
		return "", err
	}
	if len(short) > 0 {
		return OwnerInsufficient, nil
	}
	return OwnerActive, nil
}

// DeployKeyEdit is what an admin may change of any deploy key.
type DeployKeyEdit struct {
	Title *string
	// UserID transfers the key to another owner: an active user who
	// answers for everything the key does (an admin for an instance key;
	// otherwise Maintainer or more wherever it can push and Reporter or
	// more wherever it reads).
	UserID *int64
}

// EditDeployKey changes a deploy key's title and owner (admins, through
// /deploy_keys/:key_id; the caller decides who may).
func (s *Store) EditDeployKey(ctx context.Context, a Actor, id int64, in DeployKeyEdit) (*DeployKey, error) {
	p := problems{}
	if in.Title != nil {
		t := strings.TrimSpace(*in.Title)
		in.Title = &t
		validateText(p, "title", t, true)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	err := s.write(ctx, a, func(t *tx) error {
		k, err := scanDeployKey(t.queryRow(ctx, `SELECT `+deployKeyCols+` FROM deploy_keys WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("Deploy Key")
		} else if err != nil {
			return err
		}
		changed := map[string]any{}
		if in.Title != nil && *in.Title != k.Title {
			if _, err := t.exec(ctx, `UPDATE deploy_keys SET title = ? WHERE id = ?`, *in.Title, id); err != nil {
				return err
			}
			changed["title"] = *in.Title
		}
		if in.UserID != nil {
			if err := t.transferDeployKey(ctx, k, *in.UserID); err != nil {
				return err
			}
			changed["from_user_id"], changed["user_id"] = k.UserID, *in.UserID
		}
		if len(changed) == 0 {
			return nil
		}
		action := "deploy_key_updated"
		if in.UserID != nil {
			action = "deploy_key_transferred"
		}
		return t.record(ctx, action, EntityDeployKey, id, "update", changed)
	})
	if err != nil {
		return nil, err
	}
	return s.DeployKey(ctx, id)
}

// transferDeployKey makes userID the owner of k, if that user answers for
// everything k does.
func (t *tx) transferDeployKey(ctx context.Context, k *DeployKey, userID int64) error {
	var state string
	var admin int
	err := t.queryRow(ctx, `SELECT state, is_admin FROM users WHERE id = ?`, userID).Scan(&state, &admin)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return notFound("User")
	case err != nil:
		return err
	case state != StateActive:
		return invalid("user_id", "is blocked: a deploy key's owner must be an active user")
	case k.Instance && admin == 0:
		return invalid("user_id", "must be an admin: the key is an instance deploy key")
	}
	if err := t.loadGrants(ctx, k); err != nil {
		return err
	}
	short, err := ownerShortfall(ctx, t, k, userID, admin != 0)
	if err != nil {
		return err
	}
	if len(short) > 0 {
		return invalid("user_id", "must be Maintainer or more wherever the key can push and Reporter or more wherever it reads; not in: "+strings.Join(short, ", "))
	}
	_, err = t.exec(ctx, `UPDATE deploy_keys SET user_id = ?, user_recorded = 1 WHERE id = ?`, userID, k.ID)
	return err
}

// loadGrants fills k's grants inside the transaction.
func (t *tx) loadGrants(ctx context.Context, k *DeployKey) error {
	k.Projects, k.Groups = nil, nil
	for _, g := range []struct {
		q    string
		into *[]DeployKeyGrant
	}{
		{`SELECT project_id, can_push, created_at FROM deploy_key_projects WHERE deploy_key_id = ? ORDER BY project_id`, &k.Projects},
		{`SELECT group_id, can_push, created_at FROM deploy_key_groups WHERE deploy_key_id = ? ORDER BY group_id`, &k.Groups},
	} {
		rows, err := t.query(ctx, g.q, k.ID)
		grants, err := scanRows(rows, err, func(r rowScanner) (DeployKeyGrant, error) {
			var gr DeployKeyGrant
			var push int
			var created int64
			err := r.Scan(&gr.ID, &push, &created)
			gr.CanPush, gr.CreatedAt = push != 0, fromMS(created)
			return gr, err
		})
		if err != nil {
			return err
		}
		*g.into = grants
	}
	return nil
}

// listOrphanedDeployKeys is ListDeployKeys for f.Orphaned: the keys whose
// owner does not answer for everything they are enabled for (any status
// but OwnerActive). Deploy keys are few: the status is computed here.
func (s *Store) listOrphanedDeployKeys(ctx context.Context, f DeployKeyFilter, pg Page) ([]*DeployKey, int, error) {
	f.Orphaned = false
	all, _, err := s.ListDeployKeys(ctx, f, Page{PerPage: -1})
	if err != nil {
		return nil, 0, err
	}
	var out []*DeployKey
	for _, k := range all {
		st, err := s.DeployKeyOwnerStatus(ctx, k)
		if err != nil {
			return nil, 0, err
		}
		if st != OwnerActive {
			out = append(out, k)
		}
	}
	limit, offset := pg.limitOffset()
	total := len(out)
	if offset >= total {
		return nil, total, nil
	}
	if limit < total-offset {
		return out[offset : offset+limit], total, nil
	}
	return out[offset:], total, nil
}
