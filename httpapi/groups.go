package httpapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
)

type groupJSON struct {
	ID                     int64  `json:"id"`
	Name                   string `json:"name"`
	Path                   string `json:"path"`
	Description            string `json:"description"`
	Visibility             string `json:"visibility"`
	FullName               string `json:"full_name"`
	FullPath               string `json:"full_path"`
	ParentID               *int64 `json:"parent_id"`
	CreatedAt              string `json:"created_at"`
	WebURL                 string `json:"web_url"`
	EnforceSSHCertificates bool   `json:"enforce_ssh_certificates"`
	KRLPublic              bool   `json:"krl_public"`
	// SSHCertificateMaxTTL (seconds, top-level groups): the longest
	// certificate the group's managed CAs issue to people.
	SSHCertificateMaxTTL *int64 `json:"ssh_certificate_max_ttl,omitempty"`
}

func (a *API) renderGroup(r *http.Request, g *keystore.Group) (groupJSON, error) {
	chain, err := a.store.Ancestors(r.Context(), g)
	if err != nil {
		return groupJSON{}, err
	}
	names := make([]string, len(chain))
	for i, c := range chain {
		names[len(chain)-1-i] = c.Name
	}
	j := groupJSON{ID: g.ID, Name: g.Name, Path: g.Path, Description: g.Description, Visibility: "private",
		FullName: strings.Join(names, " / "), FullPath: g.FullPath, ParentID: g.ParentID,
		CreatedAt: fmtTime(g.CreatedAt), WebURL: baseURL(r) + "/groups/" + g.FullPath,
		EnforceSSHCertificates: g.EnforceSSHCertificates, KRLPublic: g.KRLPublic}
	if g.TopLevel() {
		secs := int64(g.SSHCertificateMaxTTL / time.Second)
		j.SSHCertificateMaxTTL = &secs
	}
	return j, nil
}

func (a *API) writeGroups(w http.ResponseWriter, r *http.Request, f keystore.GroupFilter) error {
	pg, p, err := listParams(r, 20)
	if err != nil {
		return err
	}
	if err := p.listing([]string{"path", "name"},
		"skip_groups", "with_custom_attributes", "statistics", "with_projects", "marked_for_deletion_on",
		"visibility", "repository_storage", "active", "archived"); err != nil {
		return err
	}
	if f.TopLevelOnly, err = p.flag("top_level_only"); err != nil {
		return err
	}
	// all_available=false limits an admin to their own groups.
	if f.VisibleTo, f.MinAccessLevel, err = membershipFilter(p, me(r), "all_available", false); err != nil {
		return err
	}
	f.Search, _ = p.str("search")
	groups, total, err := a.store.ListGroups(r.Context(), f, pg.store())
	if err != nil {
		return err
	}
	return writePageE(w, r, pg, total, groups, func(g *keystore.Group) (groupJSON, error) { return a.renderGroup(r, g) })
}

func (a *API) listGroups(w http.ResponseWriter, r *http.Request) error {
	return a.writeGroups(w, r, keystore.GroupFilter{})
}

func (a *API) listSubgroups(w http.ResponseWriter, r *http.Request) error {
	g, _, err := a.visibleGroup(r)
	if err != nil {
		return err
	}
	return a.writeGroups(w, r, keystore.GroupFilter{ParentID: g.ID})
}

// listDescendantGroups is GET /groups/:id/descendant_groups: subgroups at
// any depth, with the filters of GET /groups.
func (a *API) listDescendantGroups(w http.ResponseWriter, r *http.Request) error {
	g, _, err := a.visibleGroup(r)
	if err != nil {
		return err
	}
	return a.writeGroups(w, r, keystore.GroupFilter{DescendantOf: g.FullPath})
}

func (a *API) getGroup(w http.ResponseWriter, r *http.Request) error {
	g, _, err := a.visibleGroup(r)
	if err != nil {
		return err
	}
	return a.respondGroup(w, r, http.StatusOK, g)
}

func (a *API) respondGroup(w http.ResponseWriter, r *http.Request, code int, g *keystore.Group) error {
	j, err := a.renderGroup(r, g)
	if err != nil {
		return err
	}
	return respond(w, code, j)
}

// groupInput reads a group's attributes from the request.
func groupInput(r *http.Request, required ...string) (keystore.GroupInput, params, error) {
	p, err := readParams(r, required...)
	if err != nil {
		return keystore.GroupInput{}, p, err
	}
	enforce, err := p.boolPtr("enforce_ssh_certificates")
	if err != nil {
		return keystore.GroupInput{}, p, err
	}
	in := keystore.GroupInput{Name: p.strPtr("name"), Path: p.strPtr("path"), Description: p.strPtr("description"),
		EnforceSSHCertificates: enforce}
	if secs, ok, err := p.intVal("ssh_certificate_max_ttl"); err != nil {
		return in, p, err
	} else if ok {
		d := time.Duration(secs) * time.Second
		if secs < 0 || secs > 1<<31 {
			d = -1 // out of range, refused by the store (no overflow)
		}
		in.SSHCertificateMaxTTL = &d
	}
	return in, p, nil
}

func (a *API) createGroup(w http.ResponseWriter, r *http.Request) error {
	in, p, err := groupInput(r, "name", "path")
	if err != nil {
		return err
	}
	if in.ParentID, err = p.int64Ptr("parent_id"); err != nil {
		return err
	}
	u := me(r)
	owner := u.ID
	if in.ParentID == nil && !u.MayCreateTopLevelGroup() {
		// GitLab's can_create_group (false for external users). Subgroups
		// follow the parent group's role, as in GitLab.
		why := "your account cannot create top-level groups (can_create_group is false); ask an administrator"
		if u.External {
			why = "external users cannot create top-level groups; ask an administrator"
		}
		return errStatus(http.StatusForbidden, "403 Forbidden - "+why)
	}
	if in.ParentID != nil {
		if _, err := a.maintainedGroup(r, *in.ParentID, "parent_id", "you need the maintainer role in the parent group to create subgroups"); err != nil {
			return err
		}
		owner = 0 // members of the parent already have inherited access
	}
	g, err := a.store.CreateGroup(r.Context(), actor(r), in, owner)
	if err != nil {
		return err
	}
	return a.respondGroup(w, r, http.StatusCreated, g)
}

func (a *API) updateGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := a.ownedGroup(r)
	if err != nil {
		return err
	}
	in, p, err := groupInput(r)
	if err != nil {
		return err
	}
	// Publishing a group's revocation list (key ids, serials and
	// fingerprints, to anyone) is an admin's decision.
	if in.KRLPublic, err = p.boolPtr("krl_public"); err != nil {
		return err
	}
	if in.KRLPublic != nil && !me(r).IsAdmin {
		return errStatus(http.StatusForbidden, "403 Forbidden - only an administrator can change krl_public")
	}
	oldPath := g.FullPath
	g, err = a.store.UpdateGroup(r.Context(), actor(r), g.ID, in)
	if err != nil {
		return err
	}
	if g.FullPath != oldPath {
		if err := a.repos.MoveNamespace(oldPath, g.FullPath); err != nil {
			a.log.Error("moving the group's repositories failed", "from", oldPath, "to", g.FullPath, "err", err)
		}
	}
	return a.respondGroup(w, r, http.StatusOK, g)
}

func (a *API) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := a.ownedGroup(r)
	if err != nil {
		return err
	}
	if err := a.store.DeleteGroup(r.Context(), actor(r), g.ID); err != nil {
		return err
	}
	if err := a.repos.RemoveNamespace(g.FullPath); err != nil {
		a.log.Warn("removing the group's repositories failed", "group", g.FullPath, "err", err)
	}
	return accepted(w)
}

// members

// group SSH certificate authorities

// audit events
