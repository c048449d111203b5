package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/keygate/keygate/keystore"
)

// userJSON is GitLab's user shape. Email and admin flags are shown to the
// user themselves and to admins only.
type userJSON struct {
	ID        int64   `json:"id"`
	Username  string  `json:"username"`
	Name      string  `json:"name"`
	State     string  `json:"state"`
	Locked    bool    `json:"locked"`
	AvatarURL *string `json:"avatar_url"`
	WebURL    string  `json:"web_url"`
	CreatedAt string  `json:"created_at"`
	Email     string  `json:"email,omitempty"`
	IsAdmin   *bool   `json:"is_admin,omitempty"`
	// GitLab's user limits, shown (like email) to admins and the user.
	CanCreateGroup   *bool `json:"can_create_group,omitempty"`
	CanCreateProject *bool `json:"can_create_project,omitempty"`
	External         *bool `json:"external,omitempty"`
	ProjectsLimit    *int  `json:"projects_limit,omitempty"`
	// EnterpriseGroupID is shown to admins and the user (null: none).
	EnterpriseGroupID *int64 `json:"enterprise_group_id,omitempty"`
	shownEnterprise   bool
}

// MarshalJSON writes enterprise_group_id (as null when unset) only for
// viewers who may see it.
func (j userJSON) MarshalJSON() ([]byte, error) {
	type plain userJSON
	if !j.shownEnterprise {
		return json.Marshal(plain(j))
	}
	return json.Marshal(struct {
		plain
		EnterpriseGroupID *int64 `json:"enterprise_group_id"`
	}{plain(j), j.EnterpriseGroupID})
}

func (a *API) renderUser(r *http.Request, u *keystore.User) userJSON {
	j := userJSON{ID: u.ID, Username: u.Username, Name: u.Name, State: u.State,
		WebURL: baseURL(r) + "/" + u.Username, CreatedAt: fmtTime(u.CreatedAt)}
	if viewer := me(r); viewer != nil && (viewer.IsAdmin || viewer.ID == u.ID) {
		j.Email = u.Email
		admin := u.IsAdmin
		j.IsAdmin = &admin
		j.EnterpriseGroupID, j.shownEnterprise = u.EnterpriseGroupID, true
		// can_create_group is what the user may do (GitLab's
		// can_create_group? is false for external users); can_create_project
		// is GitLab's personal-project check (projects_limit > 0), though
		// keygate has no personal namespaces.
		ccg, ext, limit := u.CanCreateGroup && !u.External, u.External, u.ProjectsLimit
		ccp := limit > 0 && !ext
		j.CanCreateGroup, j.External, j.ProjectsLimit, j.CanCreateProject = &ccg, &ext, &limit, &ccp
	}
	return j
}

func (a *API) getCurrentUser(w http.ResponseWriter, r *http.Request) error {
	return respond(w, http.StatusOK, a.renderUser(r, me(r)))
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) error {
	pg, p, err := listParams(r, 20)
	if err != nil {
		return err
	}
	if err := p.listing([]string{"id"},
		"external", "extern_uid", "provider", "created_before", "created_after", "exclude_external",
		"exclude_internal", "without_project_bots", "two_factor", "admins", "humans", "without_projects", "saml_provider_id",
		"skip_ldap", "auditors", "exclude_active", "public_email"); err != nil {
		return err
	}
	f := keystore.UserFilter{SearchEmails: me(r).IsAdmin}
	f.Username, _ = p.str("username")
	f.Search, _ = p.str("search")
	blocked, err := p.boolPtr("blocked")
	if err != nil {
		return err
	}
	active, err := p.boolPtr("active")
	if err != nil {
		return err
	}
	switch {
	case blocked != nil && *blocked && active != nil && *active:
		return badRequest("active", "cannot be combined with blocked=true")
	case blocked != nil && *blocked:
		f.Blocked = blocked
	case active != nil && *active:
		no := false
		f.Blocked = &no
	}
	users, total, err := a.store.ListUsers(r.Context(), f, pg.store())
	if err != nil {
		return err
	}
	return writePage(w, r, pg, total, users, func(u *keystore.User) userJSON { return a.renderUser(r, u) })
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request) error {
	u, err := a.lookupUser(r, "id")
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, a.renderUser(r, u))
}

// userInput reads a user's attributes from the request.
func userInput(r *http.Request, required ...string) (keystore.UserInput, error) {
	p, err := readParams(r, required...)
	if err != nil {
		return keystore.UserInput{}, err
	}
	admin, err := p.boolPtr("admin")
	if err != nil {
		return keystore.UserInput{}, err
	}
	if admin == nil {
		if admin, err = p.boolPtr("is_admin"); err != nil {
			return keystore.UserInput{}, err
		}
	}
	in := keystore.UserInput{Username: p.strPtr("username"), Email: p.strPtr("email"), Name: p.strPtr("name"), IsAdmin: admin}
	// GitLab's user limits; external users cannot create top-level groups
	// (see keystore.User.MayCreateTopLevelGroup).
	if in.CanCreateGroup, err = p.boolPtr("can_create_group"); err != nil {
		return in, err
	}
	if in.External, err = p.boolPtr("external"); err != nil {
		return in, err
	}
	if v, ok := p.str("projects_limit"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return in, badRequest("projects_limit", "must be an integer, 0 or more")
		}
		in.ProjectsLimit = &n
	}
	// enterprise_group_id: the top-level group whose CAs may vouch for the
	// user; 0 or "" clears it. These routes are admin-only.
	if v, ok := p.str("enterprise_group_id"); ok {
		var n int64
		if v != "" {
			var err error
			if n, err = strconv.ParseInt(v, 10, 64); err != nil || n < 0 {
				return in, badRequest("enterprise_group_id", "must be the id of a top-level group, or 0 to clear it")
			}
		}
		in.EnterpriseGroupID = &n
	}
	return in, nil
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request) error {
	in, err := userInput(r, "username", "email")
	if err != nil {
		return err
	}
	u, err := a.store.CreateUser(r.Context(), actor(r), in)
	if err != nil {
		return err
	}
	return respond(w, http.StatusCreated, a.renderUser(r, u))
}

func (a *API) updateUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "id", "User")
	if err != nil {
		return err
	}
	in, err := userInput(r)
	if err != nil {
		return err
	}
	if in.IsAdmin != nil && !*in.IsAdmin && me(r).ID == id {
		return badRequest("admin", "you cannot remove your own admin rights")
	}
	u, err := a.store.UpdateUser(r.Context(), actor(r), id, in)
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, a.renderUser(r, u))
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "id", "User")
	if err != nil {
		return err
	}
	if me(r).ID == id {
		return errStatus(http.StatusForbidden, "403 Forbidden - you cannot delete yourself")
	}
	return noContent(w, a.store.DeleteUser(r.Context(), actor(r), id))
}

func (a *API) setState(w http.ResponseWriter, r *http.Request, state string) error {
	id, err := pathInt(r, "id", "User")
	if err != nil {
		return err
	}
	if me(r).ID == id && state == keystore.StateBlocked {
		return errStatus(http.StatusForbidden, "403 Forbidden - you cannot block yourself")
	}
	if _, err := a.store.SetUserState(r.Context(), actor(r), id, state); err != nil {
		return err
	}
	return respond(w, http.StatusCreated, true)
}

func (a *API) blockUser(w http.ResponseWriter, r *http.Request) error {
	return a.setState(w, r, keystore.StateBlocked)
}

func (a *API) unblockUser(w http.ResponseWriter, r *http.Request) error {
	return a.setState(w, r, keystore.StateActive)
}

// tokens
