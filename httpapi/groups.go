package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

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
	return groupJSON{ID: g.ID, Name: g.Name, Path: g.Path, Description: g.Description, Visibility: "private",
		FullName: strings.Join(names, " / "), FullPath: g.FullPath, ParentID: g.ParentID,
		CreatedAt: fmtTime(g.CreatedAt), WebURL: baseURL(r) + "/groups/" + g.FullPath,
		EnforceSSHCertificates: g.EnforceSSHCertificates}, nil
}

// groupAccess loads {id} (numeric or URL-encoded full path) and reports the
// caller's effective access level. Admins are owners everywhere. A group the
// caller cannot see is "not found".
func (a *API) groupAccess(r *http.Request) (*keystore.Group, int, error) {
	v := pathParam(r, "id")
	var g *keystore.Group
	var err error
	if n, perr := strconv.ParseInt(v, 10, 64); perr == nil {
		g, err = a.store.Group(r.Context(), n)
	} else if v != "" && len(v) <= 2000 {
		g, err = a.store.GroupByPath(r.Context(), v)
	} else {
		err = notFound("Group")
	}
	if err != nil {
		return nil, 0, err
	}
	u := me(r)
	if u.IsAdmin {
		return g, keystore.Owner, nil
	}
	level, err := a.store.AccessLevel(r.Context(), u.ID, g)
	if err != nil {
		return nil, 0, err
	}
	return g, level, nil
}

// visibleGroup requires at least guest access; otherwise "not found".
func (a *API) visibleGroup(r *http.Request) (*keystore.Group, int, error) {
	g, level, err := a.groupAccess(r)
	if err != nil {
		return nil, 0, err
	}
	if level < keystore.Guest {
		return nil, 0, notFound("Group")
	}
	return g, level, nil
}

// ownedGroup requires owner access: not found for outsiders, 403 for members.
func (a *API) ownedGroup(r *http.Request) (*keystore.Group, error) {
	g, level, err := a.visibleGroup(r)
	if err != nil {
		return nil, err
	}
	if level < keystore.Owner {
		return nil, errForbidden
	}
	return g, nil
}

func (a *API) writeGroups(w http.ResponseWriter, r *http.Request, f keystore.GroupFilter) error {
	pg, err := parsePaging(r, 20)
	if err != nil {
		return err
	}
	if u := me(r); !u.IsAdmin || r.URL.Query().Get("all_available") == "false" {
		f.VisibleTo = u.ID
	}
	f.Search = r.URL.Query().Get("search")
	if r.URL.Query().Get("top_level_only") == "true" {
		f.TopLevelOnly = true
	}
	groups, total, err := a.store.ListGroups(r.Context(), f, pg.store())
	if err != nil {
		return err
	}
	out := make([]groupJSON, 0, len(groups))
	for _, g := range groups {
		j, err := a.renderGroup(r, g)
		if err != nil {
			return err
		}
		out = append(out, j)
	}
	setPageHeaders(w, r, pg, total)
	writeJSON(w, http.StatusOK, out)
	return nil
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

func (a *API) getGroup(w http.ResponseWriter, r *http.Request) error {
	g, _, err := a.visibleGroup(r)
	if err != nil {
		return err
	}
	j, err := a.renderGroup(r, g)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, j)
	return nil
}

func groupInput(p params) (keystore.GroupInput, error) {
	enforce, err := p.boolPtr("enforce_ssh_certificates")
	if err != nil {
		return keystore.GroupInput{}, err
	}
	return keystore.GroupInput{Name: p.strPtr("name"), Path: p.strPtr("path"), Description: p.strPtr("description"),
		EnforceSSHCertificates: enforce}, nil
}

func (a *API) createGroup(w http.ResponseWriter, r *http.Request) error {
	p, err := readParams(r)
	if err != nil {
		return err
	}
	if err := p.require("name", "path"); err != nil {
		return err
	}
	in, err := groupInput(p)
	if err != nil {
		return err
	}
	if in.ParentID, err = p.int64Ptr("parent_id"); err != nil {
		return err
	}
	u := me(r)
	owner := u.ID
	if in.ParentID != nil {
		parent, err := a.store.Group(r.Context(), *in.ParentID)
		if err != nil {
			return badRequest("parent_id", "does not exist")
		}
		level := keystore.Owner
		if !u.IsAdmin {
			if level, err = a.store.AccessLevel(r.Context(), u.ID, parent); err != nil {
				return err
			}
		}
		if level < keystore.Guest {
			return badRequest("parent_id", "does not exist")
		}
		if level < keystore.Maintainer {
			return errStatus(http.StatusForbidden, "403 Forbidden - you need the maintainer role in the parent group to create subgroups")
		}
		owner = 0 // members of the parent already have inherited access
	}
	g, err := a.store.CreateGroup(r.Context(), actor(r), in, owner)
	if err != nil {
		return err
	}
	j, err := a.renderGroup(r, g)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, j)
	return nil
}

func (a *API) updateGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := a.ownedGroup(r)
	if err != nil {
		return err
	}
	p, err := readParams(r)
	if err != nil {
		return err
	}
	in, err := groupInput(p)
	if err != nil {
		return err
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
	j, err := a.renderGroup(r, g)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, j)
	return nil
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
	// GitLab answers 202: deletion is scheduled there; here it is done.
	writeJSON(w, http.StatusAccepted, map[string]string{"message": "202 Accepted"})
	return nil
}

// members

type memberJSON struct {
	userJSON
	AccessLevel int     `json:"access_level"`
	MemberSince string  `json:"created_at"`
	ExpiresAt   *string `json:"expires_at"`
}

func (a *API) renderMember(r *http.Request, m *keystore.Member) memberJSON {
	j := memberJSON{userJSON: a.renderUser(r, &m.User), AccessLevel: m.AccessLevel, MemberSince: fmtTime(m.CreatedAt)}
	return j
}

// MarshalJSON flattens the user fields with the membership's created_at.
func (m memberJSON) MarshalJSON() ([]byte, error) {
	u := m.userJSON
	type flat struct {
		ID          int64   `json:"id"`
		Username    string  `json:"username"`
		Name        string  `json:"name"`
		State       string  `json:"state"`
		AvatarURL   *string `json:"avatar_url"`
		WebURL      string  `json:"web_url"`
		Email       string  `json:"email,omitempty"`
		AccessLevel int     `json:"access_level"`
		CreatedAt   string  `json:"created_at"`
		ExpiresAt   *string `json:"expires_at"`
	}
	return json.Marshal(flat{ID: u.ID, Username: u.Username, Name: u.Name, State: u.State, WebURL: u.WebURL,
		Email: u.Email, AccessLevel: m.AccessLevel, CreatedAt: m.MemberSince, ExpiresAt: m.ExpiresAt})
}

func (a *API) listMembers(w http.ResponseWriter, r *http.Request) error {
	g, _, err := a.visibleGroup(r)
	if err != nil {
		return err
	}
	pg, err := parsePaging(r, 20)
	if err != nil {
		return err
	}
	ms, total, err := a.store.ListMembers(r.Context(), g.ID, pg.store())
	if err != nil {
		return err
	}
	return writePage(w, r, pg, total, ms, func(m *keystore.Member) memberJSON { return a.renderMember(r, m) })
}

func (a *API) getMember(w http.ResponseWriter, r *http.Request) error {
	g, _, err := a.visibleGroup(r)
	if err != nil {
		return err
	}
	uid, err := pathInt(r, "user_id", "Member")
	if err != nil {
		return err
	}
	m, err := a.store.Member(r.Context(), g.ID, uid)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.renderMember(r, m))
	return nil
}

func accessLevelParam(p params) (int, error) {
	level, ok, err := p.intVal("access_level")
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, badRequest("access_level", "is missing")
	}
	if !keystore.ValidAccessLevel(level) {
		return 0, badRequest("access_level", "does not have a valid value (10, 20, 30, 40 or 50)")
	}
	return level, nil
}

func (a *API) addMember(w http.ResponseWriter, r *http.Request) error {
	g, err := a.ownedGroup(r)
	if err != nil {
		return err
	}
	p, err := readParams(r)
	if err != nil {
		return err
	}
	level, err := accessLevelParam(p)
	if err != nil {
		return err
	}
	var uid int64
	if id, err := p.int64Ptr("user_id"); err != nil {
		return err
	} else if id != nil {
		uid = *id
	} else if name, ok := p.str("username"); ok {
		u, err := a.store.UserByUsername(r.Context(), name)
		if err != nil {
			return err
		}
		uid = u.ID
	} else {
		return badRequest("user_id", "is missing")
	}
	m, err := a.store.AddMember(r.Context(), actor(r), g.ID, uid, level)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, a.renderMember(r, m))
	return nil
}

func (a *API) updateMember(w http.ResponseWriter, r *http.Request) error {
	g, err := a.ownedGroup(r)
	if err != nil {
		return err
	}
	uid, err := pathInt(r, "user_id", "Member")
	if err != nil {
		return err
	}
	p, err := readParams(r)
	if err != nil {
		return err
	}
	level, err := accessLevelParam(p)
	if err != nil {
		return err
	}
	m, err := a.store.UpdateMember(r.Context(), actor(r), g.ID, uid, level)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.renderMember(r, m))
	return nil
}

func (a *API) removeMember(w http.ResponseWriter, r *http.Request) error {
	g, err := a.ownedGroup(r)
	if err != nil {
		return err
	}
	uid, err := pathInt(r, "user_id", "Member")
	if err != nil {
		return err
	}
	if err := a.store.RemoveMember(r.Context(), actor(r), g.ID, uid); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// group SSH certificate authorities

type caJSON struct {
	ID        int64  `json:"id"`
	Title     string `json:"title"`
	Key       string `json:"key"`
	CreatedAt string `json:"created_at"`
}

func renderCA(c *keystore.GroupCA) caJSON {
	return caJSON{ID: c.ID, Title: c.Title, Key: c.Key, CreatedAt: fmtTime(c.CreatedAt)}
}

// caGroup resolves the group of a CA route: it must exist, be top-level and
// the caller must own it. A group the caller cannot see is "not found", as
// on every other group route.
func (a *API) caGroup(r *http.Request) (*keystore.Group, error) {
	g, level, err := a.visibleGroup(r)
	if err != nil {
		return nil, err
	}
	if !g.TopLevel() {
		return nil, errGroupScope
	}
	if level < keystore.Owner {
		return nil, errForbidden
	}
	return g, nil
}

func (a *API) listCAs(w http.ResponseWriter, r *http.Request) error {
	g, err := a.caGroup(r)
	if err != nil {
		return err
	}
	pg, err := parsePaging(r, 20)
	if err != nil {
		return err
	}
	cas, total, err := a.store.ListCAs(r.Context(), g.ID, pg.store())
	if err != nil {
		return err
	}
	return writePage(w, r, pg, total, cas, renderCA)
}

func (a *API) createCA(w http.ResponseWriter, r *http.Request) error {
	g, err := a.caGroup(r)
	if err != nil {
		return err
	}
	p, err := readParams(r)
	if err != nil {
		return err
	}
	if err := p.require("title", "key"); err != nil {
		return err
	}
	title, _ := p.str("title")
	key, _ := p.str("key")
	c, err := a.store.CreateCA(r.Context(), actor(r), g.ID, keystore.CAInput{Title: title, Key: key})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, renderCA(c))
	return nil
}

func (a *API) deleteCA(w http.ResponseWriter, r *http.Request) error {
	g, err := a.caGroup(r)
	if err != nil {
		return err
	}
	id, err := pathInt(r, "cert_id", "SSH Certificate")
	if err != nil {
		return err
	}
	if err := a.store.DeleteCA(r.Context(), actor(r), g.ID, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// audit events

type auditJSON struct {
	ID         int64          `json:"id"`
	AuthorID   *int64         `json:"author_id"`
	EntityID   int64          `json:"entity_id"`
	EntityType string         `json:"entity_type"`
	EventName  string         `json:"event_name"`
	Details    map[string]any `json:"details"`
	CreatedAt  string         `json:"created_at"`
}

func (a *API) writeAudit(w http.ResponseWriter, r *http.Request, f keystore.AuditFilter) error {
	pg, err := parsePaging(r, 20)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if f.TargetType == "" {
		f.TargetType = q.Get("entity_type")
	}
	if v := q.Get("entity_id"); v != "" {
		if f.TargetID, err = strconv.ParseInt(v, 10, 64); err != nil {
			return badRequest("entity_id", "must be an integer")
		}
	}
	p := params{v: q}
	if f.After, err = p.timePtr("created_after"); err != nil {
		return err
	}
	if f.Before, err = p.timePtr("created_before"); err != nil {
		return err
	}
	events, total, err := a.store.ListAuditEvents(r.Context(), f, pg.store())
	if err != nil {
		return err
	}
	out := make([]auditJSON, 0, len(events))
	for _, e := range events {
		d := map[string]any{}
		_ = json.Unmarshal([]byte(e.Details), &d)
		d["ip_address"] = e.RemoteIP
		d["action"] = e.Action
		out = append(out, auditJSON{ID: e.ID, AuthorID: e.ActorID, EntityID: e.TargetID, EntityType: e.TargetType,
			EventName: e.Action, Details: d, CreatedAt: fmtTime(e.At)})
	}
	setPageHeaders(w, r, pg, total)
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) listAuditEvents(w http.ResponseWriter, r *http.Request) error {
	return a.writeAudit(w, r, keystore.AuditFilter{})
}

func (a *API) listGroupAuditEvents(w http.ResponseWriter, r *http.Request) error {
	g, err := a.ownedGroup(r)
	if err != nil {
		return err
	}
	return a.writeAudit(w, r, keystore.AuditFilter{GroupID: g.ID})
}
