package keystore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
)

// DeployKey is a machine's SSH key for git (CI runners, Argo CD, build
// servers): no user seat, enabled on projects and on groups (every project
// of the group and its subgroups, present and future), each with can_push.
// It logs in only as the git user. Its fingerprint is unique across user
// keys and deploy keys.
type DeployKey struct {
	ID                int64
	Title             string
	Key               string // normalised "type base64 [comment]"
	Type              string
	Bits              int
	FingerprintSHA256 string
	FingerprintMD5    string
	// Instance: made by an admin through /deploy_keys; maintainers may
	// enable it on their projects.
	Instance bool
	// UserID is the key's owner, who answers for it (DeployKeyAccess):
	// who made it, or whom an admin transferred it to. nil: the owner was
	// deleted (UserRecorded) or never recorded; the key then does nothing.
	UserID       *int64
	UserRecorded bool
	ExpiresAt    *time.Time
	CreatedAt    time.Time
	LastUsedAt   *time.Time
	Projects     []DeployKeyGrant // where it is enabled, by project
	Groups       []DeployKeyGrant // and by group
}

// DeployKeyGrant enables a deploy key on one project or group.
type DeployKeyGrant struct {
	ID        int64 // the project or group
	CanPush   bool
	CreatedAt time.Time
}

// Expired reports whether the key has expired at now.
func (k *DeployKey) Expired(now time.Time) bool {
	return k.ExpiresAt != nil && !now.Before(*k.ExpiresAt)
}

// DeployScope names where a deploy key is enabled: a project or a group.
type DeployScope struct {
	ProjectID int64
	GroupID   int64
}

func (s DeployScope) table() (table, column string, id int64) {
	if s.GroupID != 0 {
		return "deploy_key_groups", "group_id", s.GroupID
	}
	return "deploy_key_projects", "project_id", s.ProjectID
}

// Grant returns the key's grant for the scope, if enabled there.
func (k *DeployKey) Grant(s DeployScope) (DeployKeyGrant, bool) {
	list, id := k.Projects, s.ProjectID
	if s.GroupID != 0 {
		list, id = k.Groups, s.GroupID
	}
	for _, g := range list {
		if g.ID == id {
			return g, true
		}
	}
	return DeployKeyGrant{}, false
}

// DeployKeyInput describes a deploy key to add.
type DeployKeyInput struct {
	Title     string
	Key       string
	ExpiresAt *time.Time
	CanPush   bool
}

const deployKeyCols = `id, title, key, type, bits, fingerprint_sha256, fingerprint_md5, instance, user_id, user_recorded, expires_at, created_at, last_used_at`

func scanDeployKey(row rowScanner) (*DeployKey, error) {
	var k DeployKey
	var instance, recorded int
	var user, exp, used sql.NullInt64
	var created int64
	if err := row.Scan(&k.ID, &k.Title, &k.Key, &k.Type, &k.Bits, &k.FingerprintSHA256, &k.FingerprintMD5,
		&instance, &user, &recorded, &exp, &created, &used); err != nil {
		return nil, err
	}
	k.Instance, k.UserRecorded = instance != 0, recorded != 0
	if user.Valid {
		k.UserID = &user.Int64
	}
	k.ExpiresAt, k.LastUsedAt, k.CreatedAt = fromNullMS(exp), fromNullMS(used), fromMS(created)
	return &k, nil
}

// validateDeployKey checks a deploy key exactly as a user key is checked
// (types, sizes, banned keys, private keys and certificates refused).
func (s *Store) validateDeployKey(in *DeployKeyInput) (*ParsedKey, error) {
	ki := KeyInput{Title: in.Title, Key: in.Key, ExpiresAt: in.ExpiresAt}
	pk, err := s.validateKeyInput(&ki)
	in.Title = ki.Title
	return pk, err
}

// CreateDeployKey adds a deploy key made by actor a: an instance key (scope
// zero, admins), or enabled on the scope's project or group with
// in.CanPush. A fingerprint already used by a user key or a deploy key is
// refused (GitLab's 400); DeployKeyByFingerprint lets the caller enable an
// existing deploy key instead.
func (s *Store) CreateDeployKey(ctx context.Context, a Actor, scope DeployScope, in DeployKeyInput) (*DeployKey, error) {
	pk, err := s.validateDeployKey(&in)
	if err != nil {
		return nil, err
	}
	k := &DeployKey{Title: in.Title, Key: pk.Normalized, Type: pk.Type, Bits: pk.Bits,
		FingerprintSHA256: pk.FingerprintSHA256, FingerprintMD5: pk.FingerprintMD5,
		Instance: scope == (DeployScope{}), ExpiresAt: truncMS(in.ExpiresAt)}
	if a.UserID != 0 {
		uid := a.UserID
		k.UserID, k.UserRecorded = &uid, true
	}
	err = s.write(ctx, a, func(t *tx) error {
		if err := t.fingerprintFree(ctx, pk.FingerprintSHA256); err != nil {
			return err
		}
		if err := t.checkKeyPolicy(ctx, pk, k.ExpiresAt); err != nil {
			return err
		}
		if err := t.notRevoked(ctx, pk.FingerprintSHA256); err != nil {
			return err
		}
		k.CreatedAt = t.now
		id, err := t.insert(ctx, `INSERT INTO deploy_keys (title, key, type, bits, fingerprint_sha256, fingerprint_md5, instance, user_id, user_recorded, expires_at, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, k.Title, k.Key, k.Type, k.Bits, k.FingerprintSHA256, k.FingerprintMD5,
			boolInt(k.Instance), k.UserID, boolInt(k.UserRecorded), msPtr(k.ExpiresAt), ms(t.now))
		if err != nil {
			return err
		}
		k.ID = id
		if !k.Instance {
			if err := t.grantDeployKey(ctx, id, scope, in.CanPush); err != nil {
				return err
			}
		}
		return t.record(ctx, "deploy_key_created", EntityDeployKey, id, "create", map[string]any{
			"fingerprint": k.FingerprintSHA256, "title": k.Title, "instance": k.Instance,
			"project_id": scope.ProjectID, "group_id": scope.GroupID, "can_push": in.CanPush})
	})
	if err != nil {
		return nil, err
	}
	return s.DeployKey(ctx, k.ID)
}

// grantDeployKey enables key id on scope (an existing grant keeps its
// can_push unless canPush changes it).
func (t *tx) grantDeployKey(ctx context.Context, id int64, scope DeployScope, canPush bool) error {
	table, col, target := scope.table()
	parent := "projects"
	if scope.GroupID != 0 {
		parent = "groups"
	}
	if err := t.mustExist(ctx, parent, target, strings.TrimSuffix(strings.ToUpper(parent[:1])+parent[1:], "s")); err != nil {
		return err
	}
	var one int
	err := t.queryRow(ctx, `SELECT 1 FROM `+table+` WHERE deploy_key_id = ? AND `+col+` = ?`, id, target).Scan(&one)
	switch {
	case err == nil:
		_, err = t.exec(ctx, `UPDATE `+table+` SET can_push = ? WHERE deploy_key_id = ? AND `+col+` = ?`, boolInt(canPush), id, target)
		return err
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	_, err = t.exec(ctx, `INSERT INTO `+table+` (deploy_key_id, `+col+`, can_push, created_at) VALUES (?, ?, ?, ?)`,
		id, target, boolInt(canPush), ms(t.now))
	return err
}

// EnableDeployKey enables an existing deploy key on scope (GitLab's
// .../deploy_keys/:key_id/enable): read-only unless it was enabled there
// with can_push already.
func (s *Store) EnableDeployKey(ctx context.Context, a Actor, id int64, scope DeployScope) (*DeployKey, error) {
	err := s.write(ctx, a, func(t *tx) error {
		if err := t.mustExist(ctx, "deploy_keys", id, "Deploy Key"); err != nil {
			return err
		}
		table, col, target := scope.table()
		var push int
		err := t.queryRow(ctx, `SELECT can_push FROM `+table+` WHERE deploy_key_id = ? AND `+col+` = ?`, id, target).Scan(&push)
		if err == nil {
			return nil // enabled already
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err := t.grantDeployKey(ctx, id, scope, false); err != nil {
			return err
		}
		return t.record(ctx, "deploy_key_enabled", EntityDeployKey, id, "update",
			map[string]any{"project_id": scope.ProjectID, "group_id": scope.GroupID})
	})
	if err != nil {
		return nil, err
	}
	return s.DeployKey(ctx, id)
}

// UpdateDeployKey changes a deploy key's title and its can_push on scope
// (where it must be enabled).
func (s *Store) UpdateDeployKey(ctx context.Context, a Actor, id int64, scope DeployScope, title *string, canPush *bool) (*DeployKey, error) {
	p := problems{}
	if title != nil {
		t := strings.TrimSpace(*title)
		title = &t
		validateText(p, "title", t, true)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	err := s.write(ctx, a, func(t *tx) error {
		table, col, target := scope.table()
		var push int
		err := t.queryRow(ctx, `SELECT can_push FROM `+table+` WHERE deploy_key_id = ? AND `+col+` = ?`, id, target).Scan(&push)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("Deploy Key")
		} else if err != nil {
			return err
		}
		changed := map[string]any{"project_id": scope.ProjectID, "group_id": scope.GroupID}
		if title != nil {
			if _, err := t.exec(ctx, `UPDATE deploy_keys SET title = ? WHERE id = ?`, *title, id); err != nil {
				return err
			}
			changed["title"] = *title
		}
		if canPush != nil {
			if _, err := t.exec(ctx, `UPDATE `+table+` SET can_push = ? WHERE deploy_key_id = ? AND `+col+` = ?`, boolInt(*canPush), id, target); err != nil {
				return err
			}
			changed["can_push"] = *canPush
		}
		return t.record(ctx, "deploy_key_updated", EntityDeployKey, id, "update", changed)
	})
	if err != nil {
		return nil, err
	}
	return s.DeployKey(ctx, id)
}

// DisableDeployKey removes a deploy key from scope. A key that is then
// enabled nowhere and is not an instance key is deleted, as in GitLab.
func (s *Store) DisableDeployKey(ctx context.Context, a Actor, id int64, scope DeployScope) error {
	return s.write(ctx, a, func(t *tx) error {
		table, col, target := scope.table()
		if err := t.execOne(ctx, "Deploy Key", `DELETE FROM `+table+` WHERE deploy_key_id = ? AND `+col+` = ?`, id, target); err != nil {
			return err
		}
		return t.settleDeployKeys(ctx, []int64{id}, "deploy_key_disabled", map[string]any{"project_id": scope.ProjectID, "group_id": scope.GroupID})
	})
}

// DeleteDeployKey deletes a deploy key everywhere it is enabled, an
// instance key included (admins).
func (s *Store) DeleteDeployKey(ctx context.Context, a Actor, id int64) error {
	return s.write(ctx, a, func(t *tx) error {
		if err := t.execOne(ctx, "Deploy Key", `DELETE FROM deploy_keys WHERE id = ?`, id); err != nil {
			return err
		}
		return t.record(ctx, "deploy_key_deleted", EntityDeployKey, id, "delete", nil)
	})
}

// deleteOrphanedDeployKeys deletes the deploy keys, other than instance
// keys, that are enabled nowhere, as deleting their last project or group
// now does, and returns them. None can arise any more; this settles those
// an earlier keygate left.
func (s *Store) deleteOrphanedDeployKeys(ctx context.Context) ([]*DeployKey, error) {
	var out []*DeployKey
	err := s.write(ctx, Actor{}, func(t *tx) error {
		rows, err := t.query(ctx, `SELECT `+deployKeyCols+` FROM deploy_keys d WHERE instance = 0
			AND NOT EXISTS (SELECT 1 FROM deploy_key_projects p WHERE p.deploy_key_id = d.id)
			AND NOT EXISTS (SELECT 1 FROM deploy_key_groups g WHERE g.deploy_key_id = d.id) ORDER BY id`)
		if out, err = scanRows(rows, err, scanDeployKey); err != nil || len(out) == 0 {
			return err
		}
		ids := make([]int64, len(out))
		for i, k := range out {
			ids[i] = k.ID
		}
		return t.settleDeployKeys(ctx, ids, "deploy_key_disabled", map[string]any{"reason": "enabled nowhere: its project or group was deleted"})
	})
	return out, err
}

// settleDeployKeys follows the deploy keys ids after grants of theirs went
// (disabled, or their project or group deleted): a key enabled nowhere
// that is not an instance key is deleted, as in GitLab; the others are
// recorded as changed (action) so every index re-reads their grants.
func (t *tx) settleDeployKeys(ctx context.Context, ids []int64, action string, details map[string]any) error {
	for _, id := range ids {
		var instance, left int
		err := t.queryRow(ctx, `SELECT instance,
			(SELECT COUNT(*) FROM deploy_key_projects WHERE deploy_key_id = ?) + (SELECT COUNT(*) FROM deploy_key_groups WHERE deploy_key_id = ?)
			FROM deploy_keys WHERE id = ?`, id, id, id).Scan(&instance, &left)
		if err != nil {
			return err
		}
		if instance == 0 && left == 0 {
			if _, err := t.exec(ctx, `DELETE FROM deploy_keys WHERE id = ?`, id); err != nil {
				return err
			}
			err = t.record(ctx, "deploy_key_deleted", EntityDeployKey, id, "delete", details)
		} else {
			err = t.record(ctx, action, EntityDeployKey, id, "update", details)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// DeployKey returns a deploy key with its grants.
func (s *Store) DeployKey(ctx context.Context, id int64) (*DeployKey, error) {
	k, err := scanDeployKey(s.queryRow(ctx, `SELECT `+deployKeyCols+` FROM deploy_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("Deploy Key")
	} else if err != nil {
		return nil, err
	}
	if err := s.loadGrants(ctx, []*DeployKey{k}); err != nil {
		return nil, err
	}
	return k, nil
}

// DeployKeyByFingerprint returns the deploy key with this SHA-256
// fingerprint.
func (s *Store) DeployKeyByFingerprint(ctx context.Context, fp string) (*DeployKey, error) {
	var id int64
	err := s.queryRow(ctx, `SELECT id FROM deploy_keys WHERE fingerprint_sha256 = ?`, fp).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("Deploy Key")
	} else if err != nil {
		return nil, err
	}
	return s.DeployKey(ctx, id)
}

// DeployKeyFilter narrows ListDeployKeys (all keys when empty).
type DeployKeyFilter struct {
	Scope        DeployScope // keys enabled on this project or group
	InstanceOnly bool        // only instance keys (GitLab's public=true)
	UserID       int64       // keys this user owns
	// Orphaned: keys whose owner does not answer for everything they are
	// enabled for (DeployKeyOwnerStatus other than OwnerActive).
	Orphaned bool
}

// ListDeployKeys lists deploy keys by id, with their grants.
func (s *Store) ListDeployKeys(ctx context.Context, f DeployKeyFilter, pg Page) ([]*DeployKey, int, error) {
	if f.Orphaned {
		return s.listOrphanedDeployKeys(ctx, f, pg)
	}
	where, args := []string{"1=1"}, []any{}
	if f.Scope != (DeployScope{}) {
		table, col, target := f.Scope.table()
		where = append(where, `id IN (SELECT deploy_key_id FROM `+table+` WHERE `+col+` = ?)`)
		args = append(args, target)
	}
	if f.InstanceOnly {
		where = append(where, "instance = 1")
	}
	if f.UserID != 0 {
		where = append(where, "user_id = ?")
		args = append(args, f.UserID)
	}
	keys, total, err := listPage(ctx, s, deployKeyCols, `deploy_keys WHERE `+strings.Join(where, " AND "), args, "id", pg, scanDeployKey)
	if err != nil {
		return nil, 0, err
	}
	return keys, total, s.loadGrants(ctx, keys)
}

// loadGrants fills the grants of keys.
func (s *Store) loadGrants(ctx context.Context, keys []*DeployKey) error {
	for _, k := range keys {
		k.Projects, k.Groups = nil, nil
		for _, g := range []struct {
			q    string
			into *[]DeployKeyGrant
		}{
			{`SELECT project_id, can_push, created_at FROM deploy_key_projects WHERE deploy_key_id = ? ORDER BY project_id`, &k.Projects},
			{`SELECT group_id, can_push, created_at FROM deploy_key_groups WHERE deploy_key_id = ? ORDER BY group_id`, &k.Groups},
		} {
			if err := s.forEachRowArgs(ctx, g.q, []any{k.ID}, func(sc func(...any) error) error {
				var gr DeployKeyGrant
				var push int
				var created int64
				if err := sc(&gr.ID, &push, &created); err != nil {
					return err
				}
				gr.CanPush, gr.CreatedAt = push != 0, fromMS(created)
				*g.into = append(*g.into, gr)
				return nil
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// ScanDeployKeys streams every deploy key with its grants (for the index).
func (s *Store) ScanDeployKeys(ctx context.Context, fn func(*DeployKey) error) error {
	var all []*DeployKey
	if err := s.forEachRow(ctx, `SELECT `+deployKeyCols+` FROM deploy_keys ORDER BY id`, func(sc func(...any) error) error {
		k, err := scanDeployKey(scanFunc(sc))
		if err != nil {
			return err
		}
		all = append(all, k)
		return nil
	}); err != nil {
		return err
	}
	if err := s.loadGrantsBulk(ctx, all); err != nil {
		return err
	}
	for _, k := range all {
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}

// loadGrantsBulk fills the grants of many keys in two reads.
func (s *Store) loadGrantsBulk(ctx context.Context, keys []*DeployKey) error {
	byID := make(map[int64]*DeployKey, len(keys))
	for _, k := range keys {
		byID[k.ID] = k
	}
	for _, g := range []struct {
		q      string
		groups bool
	}{
		{`SELECT deploy_key_id, project_id, can_push, created_at FROM deploy_key_projects`, false},
		{`SELECT deploy_key_id, group_id, can_push, created_at FROM deploy_key_groups`, true},
	} {
		if err := s.forEachRow(ctx, g.q, func(sc func(...any) error) error {
			var id int64
			var gr DeployKeyGrant
			var push int
			var created int64
			if err := sc(&id, &gr.ID, &push, &created); err != nil {
				return err
			}
			k := byID[id]
			if k == nil {
				return nil // a key made after the first read: its change applies it
			}
			gr.CanPush, gr.CreatedAt = push != 0, fromMS(created)
			if g.groups {
				k.Groups = append(k.Groups, gr)
			} else {
				k.Projects = append(k.Projects, gr)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}
