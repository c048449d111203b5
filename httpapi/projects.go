package httpapi

import (
	"fmt"
	"net/http"

	"github.com/keygate/keygate/keystore"
)

type projectJSON struct {
	ID                int64          `json:"id"`
	Name              string         `json:"name"`
	Path              string         `json:"path"`
	PathWithNamespace string         `json:"path_with_namespace"`
	Description       string         `json:"description"`
	CreatedAt         string         `json:"created_at"`
	SSHURLToRepo      string         `json:"ssh_url_to_repo"`
	WebURL            string         `json:"web_url"`
	Namespace         map[string]any `json:"namespace"`
	Visibility        string         `json:"visibility"`
	DefaultBranch     string         `json:"default_branch"`
}

// sshURL is the clone URL: git@HOST:path.git, or the ssh:// form with a port.
func (a *API) sshURL(fullPath string) string {
	if a.sshPort == 0 || a.sshPort == 22 {
		return fmt.Sprintf("%s@%s:%s.git", a.gitUser, a.hostname, fullPath)
	}
	return fmt.Sprintf("ssh://%s@%s:%d/%s.git", a.gitUser, a.hostname, a.sshPort, fullPath)
}

func (a *API) renderProject(r *http.Request, p *keystore.Project) projectJSON {
	ns := p.FullPath[:len(p.FullPath)-len(p.Path)-1]
	return projectJSON{ID: p.ID, Name: p.Name, Path: p.Path, PathWithNamespace: p.FullPath, Description: p.Description,
		CreatedAt: fmtTime(p.CreatedAt), SSHURLToRepo: a.sshURL(p.FullPath), WebURL: baseURL(r) + "/" + p.FullPath,
		Namespace: map[string]any{"id": p.GroupID, "full_path": ns, "kind": "group"}, Visibility: "private",
		DefaultBranch: keystore.DefaultBranch}
}

func (a *API) createProject(w http.ResponseWriter, r *http.Request) error {
	p, err := readParams(r)
	if err != nil {
		return err
	}
	nsID, err := p.int64Ptr("namespace_id")
	if err != nil {
		return err
	}
	if nsID == nil { // absent or empty
		return badRequest("namespace_id", "is missing; keygate has no personal namespaces: give the id of a group where you are a maintainer")
	}
	if _, ok := p.str("name"); !ok {
		if _, ok := p.str("path"); !ok {
			return badRequest("name", "is missing; give name or path")
		}
	}
	g, err := a.maintainedGroup(r, *nsID, "namespace_id", "you need the maintainer role in the namespace to create projects")
	if err != nil {
		return err
	}
	name, _ := p.str("name")
	path, _ := p.str("path")
	desc, _ := p.str("description")
	proj, err := a.store.CreateProject(r.Context(), actor(r), keystore.ProjectInput{GroupID: g.ID, Name: name, Path: path, Description: desc})
	if err != nil {
		return err
	}
	if err := a.repos.Create(r.Context(), proj.FullPath); err != nil {
		// Keep the database and the disk in step.
		_ = a.store.DeleteProject(r.Context(), actor(r), proj.ID)
		return err
	}
	return respond(w, http.StatusCreated, a.renderProject(r, proj))
}

func (a *API) getProject(w http.ResponseWriter, r *http.Request) error {
	p, _, err := a.projectAccess(r)
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, a.renderProject(r, p))
}

func (a *API) deleteProject(w http.ResponseWriter, r *http.Request) error {
	p, level, err := a.projectAccess(r)
	if err != nil {
		return err
	}
	if level < keystore.Owner {
		return errForbidden // as in GitLab: deleting a project needs owner
	}
	if err := a.store.DeleteProject(r.Context(), actor(r), p.ID); err != nil {
		return err
	}
	if err := a.repos.Remove(p.FullPath); err != nil {
		a.log.Warn("removing repository failed", "project", p.FullPath, "err", err)
	}
	return accepted(w)
}

// listProjects is GET /projects: the projects the caller can see (an
// admin: all of them), with GitLab's search, membership, owned and
// min_access_level filters.
func (a *API) listProjects(w http.ResponseWriter, r *http.Request) error {
	pg, p, err := listParams(r, 20)
	if err != nil {
		return err
	}
	if err := p.listing([]string{"id"},
		"archived", "visibility", "starred", "statistics", "with_custom_attributes", "with_issues_enabled",
		"with_merge_requests_enabled", "with_programming_language", "wiki_checksum_failed", "repository_checksum_failed",
		"id_after", "id_before", "last_activity_after", "last_activity_before", "repository_storage", "topic", "topic_id",
		"imported", "include_hidden", "include_pending_delete", "marked_for_deletion_on", "active", "updated_after", "updated_before"); err != nil {
		return err
	}
	// simple only trims the response in GitLab; keygate's is already short.
	if _, err := p.boolPtr("simple"); err != nil {
		return err
	}
	var f keystore.ProjectFilter
	// membership=true limits an admin to their own projects.
	if f.VisibleTo, f.MinAccessLevel, err = membershipFilter(p, me(r), "membership", true); err != nil {
		return err
	}
	f.Search, _ = p.str("search")
	ps, total, err := a.store.ListProjectsFiltered(r.Context(), f, pg.store())
	if err != nil {
		return err
	}
	return writePage(w, r, pg, total, ps, func(p *keystore.Project) projectJSON { return a.renderProject(r, p) })
}

func (a *API) listGroupProjects(w http.ResponseWriter, r *http.Request) error {
	g, _, err := a.visibleGroup(r)
	if err != nil {
		return err
	}
	return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.Project, int, error) {
		return a.store.ListProjects(r.Context(), g.ID, pg)
	}, func(p *keystore.Project) projectJSON { return a.renderProject(r, p) })
}

// certificate revocations
