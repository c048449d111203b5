package httpapi

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/keygate/keygate/keystore"
)

// groupAccess loads {id} (numeric or URL-encoded full path) and reports the
// caller's effective access level. Admins are owners everywhere. A group the
// caller cannot see is "not found".
func (a *API) groupAccess(r *http.Request) (*keystore.Group, int, error) {
	g, err := a.pathGroup(r)
	if err != nil {
		return nil, 0, err
	}
	level, err := a.store.UserAccessLevel(r.Context(), me(r), g)
	if err != nil {
		return nil, 0, err
	}
	return g, level, nil
}

// pathGroup loads {id}, a numeric id or a URL-encoded full path, whoever
// asks (access is the caller's to check).
func (a *API) pathGroup(r *http.Request) (*keystore.Group, error) {
	v := pathParam(r, "id")
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return a.store.Group(r.Context(), n)
	} else if v != "" && len(v) <= 2000 {
		return a.store.GroupByPath(r.Context(), v)
	}
	return nil, notFound("Group")
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

// maintainedGroup is the group a create request names in field (a parent
// group, a project's namespace): the caller must be maintainer or more
// there. One the caller cannot see "does not exist" (a 400, as GitLab).
func (a *API) maintainedGroup(r *http.Request, id int64, field, forbidden string) (*keystore.Group, error) {
	g, err := a.store.Group(r.Context(), id)
	if err != nil {
		return nil, badRequest(field, "does not exist")
	}
	level, err := a.store.UserAccessLevel(r.Context(), me(r), g)
	if err != nil {
		return nil, err
	}
	if level < keystore.Guest {
		return nil, badRequest(field, "does not exist")
	}
	if level < keystore.Maintainer {
		return nil, errStatus(http.StatusForbidden, "403 Forbidden - "+forbidden)
	}
	return g, nil
}

// projectAccess loads {id} (numeric or URL-encoded path) with the caller's level.
func (a *API) projectAccess(r *http.Request) (*keystore.Project, int, error) {
	v := pathParam(r, "id")
	var p *keystore.Project
	var err error
	if n, perr := strconv.ParseInt(v, 10, 64); perr == nil {
		p, err = a.store.Project(r.Context(), n)
	} else if v != "" && len(v) <= 2000 {
		p, err = a.store.ProjectByPath(r.Context(), v)
	} else {
		err = notFound("Project")
	}
	if err != nil {
		return nil, 0, err
	}
	g, err := a.store.Group(r.Context(), p.GroupID)
	if err != nil {
		return nil, 0, err
	}
	level, err := a.store.UserAccessLevel(r.Context(), me(r), g)
	if err != nil {
		return nil, 0, err
	}
	if level < keystore.Guest {
		return nil, 0, notFound("Project")
	}
	return p, level, nil
}

// remoteIP is the client's address: behind trusted proxies, the one they
// forwarded (clientAddr); else the peer's.
func remoteIP(r *http.Request) string {
	if ip, ok := r.Context().Value(clientAddrKey{}).(netip.Addr); ok && ip.IsValid() {
		return ip.String()
	}
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}

// pathInt parses a numeric URL parameter; a malformed one is "not found".
func pathInt(r *http.Request, name, what string) (int64, error) {
	n, err := strconv.ParseInt(chi.URLParam(r, name), 10, 64)
	if err != nil || n < 1 {
		return 0, notFound(what)
	}
	return n, nil
}

// pathParam returns a URL parameter, unescaped (chi routes on the raw path).
func pathParam(r *http.Request, name string) string {
	v := chi.URLParam(r, name)
	if u, err := urlUnescape(v); err == nil {
		return u
	}
	return v
}

// lookupUser resolves {id} as a numeric id or a username.
func (a *API) lookupUser(r *http.Request, param string) (*keystore.User, error) {
	v := pathParam(r, param)
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return a.store.User(r.Context(), n)
	}
	if v == "" || len(v) > 255 {
		return nil, notFound("User")
	}
	return a.store.UserByUsername(r.Context(), v)
}

// userByID resolves a numeric {id} only (write routes).
func (a *API) userByID(r *http.Request, param string) (*keystore.User, error) {
	id, err := pathInt(r, param, "User")
	if err != nil {
		return nil, err
	}
	return a.store.User(r.Context(), id)
}

// inGroup resolves the group of a "/groups/:id/<things>/:param" route with
// pick (ownedGroup, caGroup, anyGroup) and its numeric param: how every
// such handler starts.
func (a *API) inGroup(r *http.Request, pick func(*http.Request) (*keystore.Group, error), param, what string) (*keystore.Group, int64, error) {
	g, err := pick(r)
	if err != nil {
		return nil, 0, err
	}
	id, err := pathInt(r, param, what)
	if err != nil {
		return nil, 0, err
	}
	return g, id, nil
}

// anyGroup resolves {id} for an admin-only route (admins see every group).
func (a *API) anyGroup(r *http.Request) (*keystore.Group, error) {
	g, _, err := a.groupAccess(r)
	return g, err
}

// noContent answers 204 unless err.
func noContent(w http.ResponseWriter, err error) error {
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// membershipFilter reads GitLab's owned and min_access_level for a list of
// groups or projects, and the parameter that limits an admin to their own
// memberships (onlyMine, when it has the value mineWhen). visibleTo is 0
// for "everything" (an admin), else the caller's id; minLevel is 0 or the
// level the caller must have (owned: Owner). GitLab applies owned and
// min_access_level to the caller, admins included.
func membershipFilter(p params, u *keystore.User, onlyMine string, mineWhen bool) (visibleTo int64, minLevel int, err error) {
	mine, err := p.boolPtr(onlyMine)
	if err != nil {
		return 0, 0, err
	}
	owned, err := p.boolPtr("owned")
	if err != nil {
		return 0, 0, err
	}
	minLevel, given, err := p.intVal("min_access_level")
	if err != nil {
		return 0, 0, err
	}
	if given && !keystore.ValidAccessLevel(minLevel) {
		return 0, 0, badRequest("min_access_level", "is not a valid access level (10, 20, 30, 40 or 50)")
	}
	if owned != nil && *owned {
		minLevel = keystore.Owner
	}
	if !u.IsAdmin || (mine != nil && *mine == mineWhen) || minLevel > 0 {
		visibleTo = u.ID
	}
	return visibleTo, minLevel, nil
}
