package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/keygate/keygate/keystore"
)

// Deploy keys, in GitLab v4's shapes (client-go's DeployKeys service):
// instance keys at /deploy_keys (admins), per project at
// /projects/:id/deploy_keys, keygate's own per group at
// /groups/:id/deploy_keys, and GitHub v3's /repos/:owner/:repo/keys.
// Who manages: a maintainer or more of the project (of the group for group
// keys); admins everywhere. A key answers to its owner (user_id: who made
// it, or whom an admin transferred it to; keystore.DeployKeyAccess), and
// its title is its owner's: see mayRenameDeployKey.

type deployKeyJSON struct {
	ID                int64   `json:"id"`
	Title             string  `json:"title"`
	Key               string  `json:"key"`
	Fingerprint       string  `json:"fingerprint"`
	FingerprintSHA256 string  `json:"fingerprint_sha256"`
	CreatedAt         string  `json:"created_at"`
	ExpiresAt         *string `json:"expires_at"`
	CanPush           bool    `json:"can_push"`
}

func renderDeployKey(k *keystore.DeployKey, scope keystore.DeployScope) deployKeyJSON {
	j := deployKeyJSON{ID: k.ID, Title: k.Title, Key: k.Key, Fingerprint: strings.TrimPrefix(k.FingerprintMD5, "MD5:"),
		FingerprintSHA256: k.FingerprintSHA256, CreatedAt: fmtTime(k.CreatedAt), ExpiresAt: fmtTimePtr(k.ExpiresAt)}
	if scope == (keystore.DeployScope{}) {
		for _, g := range append(append([]keystore.DeployKeyGrant{}, k.Projects...), k.Groups...) {
			j.CanPush = j.CanPush || g.CanPush
		}
	} else if g, ok := k.Grant(scope); ok {
		j.CanPush = g.CanPush
	}
	return j
}

type deployKeyProjectJSON struct {
	ID                int64  `json:"id"`
	Description       string `json:"description"`
	Name              string `json:"name"`
	NameWithNamespace string `json:"name_with_namespace"`
	Path              string `json:"path"`
	PathWithNamespace string `json:"path_with_namespace"`
	CreatedAt         string `json:"created_at"`
}

type deployKeyGroupJSON struct {
	ID       int64  `json:"id"`
	Name     string `json:"name"`
	FullPath string `json:"full_path"`
}

type instanceDeployKeyJSON struct {
	ID                         int64                  `json:"id"`
	Title                      string                 `json:"title"`
	Key                        string                 `json:"key"`
	Fingerprint                string                 `json:"fingerprint"`
	FingerprintSHA256          string                 `json:"fingerprint_sha256"`
	CreatedAt                  string                 `json:"created_at"`
	ExpiresAt                  *string                `json:"expires_at"`
	ProjectsWithWriteAccess    []deployKeyProjectJSON `json:"projects_with_write_access"`
	ProjectsWithReadonlyAccess []deployKeyProjectJSON `json:"projects_with_readonly_access"`
	GroupsWithWriteAccess      []deployKeyGroupJSON   `json:"groups_with_write_access"`
	GroupsWithReadonlyAccess   []deployKeyGroupJSON   `json:"groups_with_readonly_access"`
	// keygate's: the key's owner and whether they answer for everything
	// the key is enabled for (keystore.Owner*).
	UserID      *int64 `json:"user_id"`
	OwnerStatus string `json:"owner_status"`
}

func (a *API) renderInstanceDeployKey(ctx context.Context, k *keystore.DeployKey) (instanceDeployKeyJSON, error) {
	j := instanceDeployKeyJSON{ID: k.ID, Title: k.Title, Key: k.Key, Fingerprint: strings.TrimPrefix(k.FingerprintMD5, "MD5:"),
		FingerprintSHA256: k.FingerprintSHA256, CreatedAt: fmtTime(k.CreatedAt), ExpiresAt: fmtTimePtr(k.ExpiresAt),
		ProjectsWithWriteAccess: []deployKeyProjectJSON{}, ProjectsWithReadonlyAccess: []deployKeyProjectJSON{},
		GroupsWithWriteAccess: []deployKeyGroupJSON{}, GroupsWithReadonlyAccess: []deployKeyGroupJSON{}, UserID: k.UserID}
	var err error
	if j.OwnerStatus, err = a.store.DeployKeyOwnerStatus(ctx, k); err != nil {
		return j, err
	}
	for _, g := range k.Projects {
		p, err := a.store.Project(ctx, g.ID)
		if errors.Is(err, keystore.ErrNotFound) {
			continue
		} else if err != nil {
			return j, err
		}
		pj := deployKeyProjectJSON{ID: p.ID, Description: p.Description, Name: p.Name, NameWithNamespace: p.FullPath,
			Path: p.Path, PathWithNamespace: p.FullPath, CreatedAt: fmtTime(p.CreatedAt)}
		if g.CanPush {
			j.ProjectsWithWriteAccess = append(j.ProjectsWithWriteAccess, pj)
		} else {
			j.ProjectsWithReadonlyAccess = append(j.ProjectsWithReadonlyAccess, pj)
		}
	}
	for _, g := range k.Groups {
		grp, err := a.store.Group(ctx, g.ID)
		if errors.Is(err, keystore.ErrNotFound) {
			continue
		} else if err != nil {
			return j, err
		}
		gj := deployKeyGroupJSON{ID: grp.ID, Name: grp.Name, FullPath: grp.FullPath}
		if g.CanPush {
			j.GroupsWithWriteAccess = append(j.GroupsWithWriteAccess, gj)
		} else {
			j.GroupsWithReadonlyAccess = append(j.GroupsWithReadonlyAccess, gj)
		}
	}
	return j, nil
}

// Instance deploy keys (admins).

func (a *API) listInstanceDeployKeys(w http.ResponseWriter, r *http.Request) error {
	pg, p, err := listParams(r, 20)
	if err != nil {
		return err
	}
	public, err := p.flag("public")
	if err != nil {
		return err
	}
	orphaned, err := p.flag("orphaned")
	if err != nil {
		return err
	}
	keys, total, err := a.store.ListDeployKeys(r.Context(), keystore.DeployKeyFilter{InstanceOnly: public, Orphaned: orphaned}, pg.store())
	if err != nil {
		return err
	}
	return writePageE(w, r, pg, total, keys, func(k *keystore.DeployKey) (instanceDeployKeyJSON, error) {
		return a.renderInstanceDeployKey(r.Context(), k)
	})
}

func (a *API) createInstanceDeployKey(w http.ResponseWriter, r *http.Request) error {
	in, _, err := deployKeyInput(r)
	if err != nil {
		return err
	}
	k, err := a.store.CreateDeployKey(r.Context(), actor(r), keystore.DeployScope{}, in)
	return a.respondInstanceDeployKey(w, r, http.StatusCreated, k, err)
}

// respondInstanceDeployKey writes k as the instance routes show it, unless
// err.
func (a *API) respondInstanceDeployKey(w http.ResponseWriter, r *http.Request, code int, k *keystore.DeployKey, err error) error {
	if err != nil {
		return err
	}
	j, err := a.renderInstanceDeployKey(r.Context(), k)
	if err != nil {
		return err
	}
	return respond(w, code, j)
}

// getInstanceDeployKey and deleteInstanceDeployKey are keygate's (GitLab
// has them proposed, gitlab-org/gitlab#525018): an admin reads or deletes
// any deploy key, an instance key included, wherever it is enabled.
func (a *API) getInstanceDeployKey(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "key_id", "Deploy Key")
	if err != nil {
		return err
	}
	k, err := a.store.DeployKey(r.Context(), id)
	return a.respondInstanceDeployKey(w, r, http.StatusOK, k, err)
}

// updateInstanceDeployKey: PUT /deploy_keys/:key_id (keygate's, admins):
// rename any deploy key (title) or transfer it to another owner (user_id),
// who must answer for everything it does (keystore.DeployKeyEdit).
func (a *API) updateInstanceDeployKey(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "key_id", "Deploy Key")
	if err != nil {
		return err
	}
	p, err := readParams(r)
	if err != nil {
		return err
	}
	var in keystore.DeployKeyEdit
	if in.UserID, err = p.int64Ptr("user_id"); err != nil {
		return err
	}
	in.Title = p.strPtr("title")
	if in.UserID == nil && in.Title == nil {
		return badRequest("user_id", "give user_id (the new owner) or title")
	}
	k, err := a.store.EditDeployKey(r.Context(), actor(r), id, in)
	return a.respondInstanceDeployKey(w, r, http.StatusOK, k, err)
}

func (a *API) deleteInstanceDeployKey(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "key_id", "Deploy Key")
	if err != nil {
		return err
	}
	return noContent(w, a.store.DeleteDeployKey(r.Context(), actor(r), id))
}

func deployKeyInput(r *http.Request) (keystore.DeployKeyInput, params, error) {
	var in keystore.DeployKeyInput
	p, err := readParams(r, "key", "title")
	if err != nil {
		return in, p, err
	}
	in.Key, _ = p.str("key")
	in.Title, _ = p.str("title")
	if in.ExpiresAt, err = p.timePtr("expires_at"); err != nil {
		return in, p, err
	}
	in.CanPush, err = p.flag("can_push")
	return in, p, err
}

// Project and group deploy keys: the scope comes from the route.

// deployScope resolves the route's project or group and requires
// maintainer or more there.
func (a *API) deployScope(r *http.Request, group bool) (keystore.DeployScope, error) {
	var scope keystore.DeployScope
	var level int
	var err error
	if group {
		var g *keystore.Group
		if g, level, err = a.visibleGroup(r); err == nil {
			scope.GroupID = g.ID
		}
	} else {
		var p *keystore.Project
		if p, level, err = a.projectAccess(r); err == nil {
			scope.ProjectID = p.ID
		}
	}
	if err != nil {
		return keystore.DeployScope{}, err
	}
	if level < keystore.Maintainer {
		return keystore.DeployScope{}, errForbidden
	}
	return scope, nil
}

// mayUseDeployKey reports whether the caller may enable k elsewhere: an
// admin, an instance key, or a key enabled where the caller is maintainer
// or more (GitLab: "accessible by the same user").
func (a *API) mayUseDeployKey(r *http.Request, k *keystore.DeployKey) (bool, error) {
	u := me(r)
	if u.IsAdmin || k.Instance {
		return true, nil
	}
	var groups []int64
	for _, g := range k.Projects {
		p, err := a.store.Project(r.Context(), g.ID)
		if errors.Is(err, keystore.ErrNotFound) {
			continue
		} else if err != nil {
			return false, err
		}
		groups = append(groups, p.GroupID)
	}
	for _, g := range k.Groups {
		groups = append(groups, g.ID)
	}
	for _, id := range groups {
		grp, err := a.store.Group(r.Context(), id)
		if errors.Is(err, keystore.ErrNotFound) {
			continue
		} else if err != nil {
			return false, err
		}
		if l, err := a.store.UserAccessLevel(r.Context(), u, grp); err != nil {
			return false, err
		} else if l >= keystore.Maintainer {
			return true, nil
		}
	}
	return false, nil
}

func (a *API) scopedDeployKeys(group bool) (list, create, get, update, del, enable handlerFunc) {
	list = func(w http.ResponseWriter, r *http.Request) error {
		scope, err := a.deployScope(r, group)
		if err != nil {
			return err
		}
		return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.DeployKey, int, error) {
			return a.store.ListDeployKeys(r.Context(), keystore.DeployKeyFilter{Scope: scope}, pg)
		}, func(k *keystore.DeployKey) deployKeyJSON { return renderDeployKey(k, scope) })
	}
	create = func(w http.ResponseWriter, r *http.Request) error {
		scope, err := a.deployScope(r, group)
		if err != nil {
			return err
		}
		in, _, err := deployKeyInput(r)
		if err != nil {
			return err
		}
		k, err := a.store.CreateDeployKey(r.Context(), actor(r), scope, in)
		if err != nil && isTaken(err) {
			// GitLab joins an existing deploy key the caller can use.
			if pk, perr := keystore.ParseUserKey(in.Key); perr == nil {
				if existing, ferr := a.store.DeployKeyByFingerprint(r.Context(), pk.FingerprintSHA256); ferr == nil {
					if ok, aerr := a.mayUseDeployKey(r, existing); aerr != nil {
						return aerr
					} else if ok {
						if k, err = a.store.EnableDeployKey(r.Context(), actor(r), existing.ID, scope); err == nil && in.CanPush {
							yes := true
							k, err = a.store.UpdateDeployKey(r.Context(), actor(r), existing.ID, scope, nil, &yes)
						}
					}
				}
			}
		}
		if err != nil {
			return err
		}
		return respond(w, http.StatusCreated, renderDeployKey(k, scope))
	}
	// withKey resolves {key_id} among the scope's keys before do.
	withKey := func(do func(w http.ResponseWriter, r *http.Request, scope keystore.DeployScope, k *keystore.DeployKey) error) handlerFunc {
		return func(w http.ResponseWriter, r *http.Request) error {
			scope, k, err := a.scopedDeployKey(r, group)
			if err != nil {
				return err
			}
			return do(w, r, scope, k)
		}
	}
	get = withKey(func(w http.ResponseWriter, r *http.Request, scope keystore.DeployScope, k *keystore.DeployKey) error {
		return respond(w, http.StatusOK, renderDeployKey(k, scope))
	})
	update = withKey(func(w http.ResponseWriter, r *http.Request, scope keystore.DeployScope, k *keystore.DeployKey) error {
		p, err := readParams(r)
		if err != nil {
			return err
		}
		push, err := p.boolPtr("can_push")
		if err != nil {
			return err
		}
		title := p.strPtr("title")
		if title != nil && strings.TrimSpace(*title) != k.Title && !mayRenameDeployKey(me(r), k, scope) {
			return errStatus(http.StatusForbidden, "403 Forbidden - title: a deploy key enabled elsewhere is renamed only by its owner or an admin")
		}
		k, err = a.store.UpdateDeployKey(r.Context(), actor(r), k.ID, scope, title, push)
		if err != nil {
			return err
		}
		return respond(w, http.StatusOK, renderDeployKey(k, scope))
	})
	del = withKey(func(w http.ResponseWriter, r *http.Request, scope keystore.DeployScope, k *keystore.DeployKey) error {
		return noContent(w, a.store.DisableDeployKey(r.Context(), actor(r), k.ID, scope))
	})
	enable = func(w http.ResponseWriter, r *http.Request) error {
		scope, err := a.deployScope(r, group)
		if err != nil {
			return err
		}
		id, err := pathInt(r, "key_id", "Deploy Key")
		if err != nil {
			return err
		}
		k, err := a.store.DeployKey(r.Context(), id)
		if err != nil {
			return err
		}
		if ok, err := a.mayUseDeployKey(r, k); err != nil {
			return err
		} else if !ok {
			return notFound("Deploy Key")
		}
		k, err = a.store.EnableDeployKey(r.Context(), actor(r), id, scope)
		if err != nil {
			return err
		}
		return respond(w, http.StatusCreated, renderDeployKey(k, scope))
	}
	return
}

// mayRenameDeployKey reports whether u (a maintainer or more of scope)
// may change k's title, which every project and group it is enabled on
// sees: an admin; else, for a key that is not an instance key, its owner,
// or anyone when the key is enabled only on scope (GitLab's
// update_deploy_key_title: a key "almost orphaned"). can_push, which is
// scope's own, needs no more than the route's access.
func mayRenameDeployKey(u *keystore.User, k *keystore.DeployKey, scope keystore.DeployScope) bool {
	switch {
	case u.IsAdmin:
		return true
	case k.Instance:
		return false
	case k.UserID != nil && *k.UserID == u.ID:
		return true
	}
	_, here := k.Grant(scope)
	return here && len(k.Projects)+len(k.Groups) == 1
}

// scopedDeployKey resolves {key_id} among the keys enabled on the route's
// scope; others are "not found".
func (a *API) scopedDeployKey(r *http.Request, group bool) (keystore.DeployScope, *keystore.DeployKey, error) {
	scope, err := a.deployScope(r, group)
	if err != nil {
		return scope, nil, err
	}
	id, err := pathInt(r, "key_id", "Deploy Key")
	if err != nil {
		return scope, nil, err
	}
	k, err := a.store.DeployKey(r.Context(), id)
	if err != nil {
		return scope, nil, err
	}
	if _, ok := k.Grant(scope); !ok {
		return scope, nil, notFound("Deploy Key")
	}
	return scope, k, nil
}

func isTaken(err error) bool {
	var ve *keystore.ValidationError
	if !errors.As(err, &ve) {
		return false
	}
	for _, r := range ve.Fields["fingerprint_sha256"] {
		if r == "has already been taken" {
			return true
		}
	}
	return false
}

// listUserProjectDeployKeys: GET /users/:id_or_username/project_deploy_keys,
// the deploy keys a user made (the user or an admin).
func (a *API) listUserProjectDeployKeys(w http.ResponseWriter, r *http.Request) error {
	u, err := a.lookupUser(r, "id")
	if err != nil {
		return err
	}
	if viewer := me(r); !viewer.IsAdmin && viewer.ID != u.ID {
		return notFound("User")
	}
	return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.DeployKey, int, error) {
		return a.store.ListDeployKeys(r.Context(), keystore.DeployKeyFilter{UserID: u.ID}, pg)
	}, func(k *keystore.DeployKey) deployKeyJSON { return renderDeployKey(k, keystore.DeployScope{}) })
}
