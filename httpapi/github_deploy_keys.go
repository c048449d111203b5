package httpapi

// GitHub v3: /repos/:owner/:repo/keys, on the deploy-key table (:owner/:repo
// is the project's full path; a nested owner is URL-encoded, a%2Fb).

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/keygate/keygate/keystore"
)

type ghDeployKeyJSON struct {
	ID        int64  `json:"id"`
	Key       string `json:"key"`
	URL       string `json:"url"`
	Title     string `json:"title"`
	Verified  bool   `json:"verified"`
	CreatedAt string `json:"created_at"`
	ReadOnly  bool   `json:"read_only"`
}

func (a *API) ghRepoScope(r *http.Request) (*keystore.Project, keystore.DeployScope, error) {
	full := pathParam(r, "owner") + "/" + pathParam(r, "repo")
	p, err := a.store.ProjectByPath(r.Context(), full)
	if err != nil {
		return nil, keystore.DeployScope{}, errNotFound
	}
	g, err := a.store.Group(r.Context(), p.GroupID)
	if err != nil {
		return nil, keystore.DeployScope{}, err
	}
	level, err := a.store.UserAccessLevel(r.Context(), me(r), g)
	if err != nil {
		return nil, keystore.DeployScope{}, err
	}
	if level < keystore.Guest {
		return nil, keystore.DeployScope{}, errNotFound
	}
	if level < keystore.Maintainer {
		return nil, keystore.DeployScope{}, errStatus(http.StatusForbidden, "Must have admin rights to Repository.")
	}
	return p, keystore.DeployScope{ProjectID: p.ID}, nil
}

func renderGHDeployKey(r *http.Request, p *keystore.Project, k *keystore.DeployKey, scope keystore.DeployScope) ghDeployKeyJSON {
	g, _ := k.Grant(scope)
	return ghDeployKeyJSON{ID: k.ID, Key: ghKeyLine(k.Key), Title: k.Title, Verified: true, CreatedAt: ghTime(k.CreatedAt),
		ReadOnly: !g.CanPush, URL: baseURL(r) + "/api/v3/repos/" + p.FullPath + "/keys/" + strconv.FormatInt(k.ID, 10)}
}

func ghKeyLine(key string) string {
	if f := strings.Fields(key); len(f) >= 2 {
		return f[0] + " " + f[1]
	}
	return key
}

func (a *API) ghListRepoKeys(w http.ResponseWriter, r *http.Request) error {
	p, scope, err := a.ghRepoScope(r)
	if err != nil {
		return err
	}
	return paged(w, r, 30, func(pg keystore.Page) ([]*keystore.DeployKey, int, error) {
		return a.store.ListDeployKeys(r.Context(), keystore.DeployKeyFilter{Scope: scope}, pg)
	}, func(k *keystore.DeployKey) ghDeployKeyJSON { return renderGHDeployKey(r, p, k, scope) })
}

func (a *API) ghAddRepoKey(w http.ResponseWriter, r *http.Request) error {
	p, scope, err := a.ghRepoScope(r)
	if err != nil {
		return err
	}
	prm, err := readParams(r, "key")
	if err != nil {
		return err
	}
	in := keystore.DeployKeyInput{}
	in.Key, _ = prm.str("key")
	in.Title, _ = prm.str("title")
	if in.Title == "" {
		in.Title = "deploy key"
	}
	ro, err := prm.boolPtr("read_only")
	if err != nil {
		return err
	}
	in.CanPush = ro != nil && !*ro // GitHub: read_only defaults to false
	if ro == nil {
		in.CanPush = true
	}
	k, err := a.store.CreateDeployKey(r.Context(), actor(r), scope, in)
	if err != nil {
		return err
	}
	return respond(w, http.StatusCreated, renderGHDeployKey(r, p, k, scope))
}

func (a *API) ghRepoKey(r *http.Request) (*keystore.Project, keystore.DeployScope, *keystore.DeployKey, error) {
	p, scope, err := a.ghRepoScope(r)
	if err != nil {
		return nil, scope, nil, err
	}
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		return nil, scope, nil, errNotFound
	}
	k, err := a.store.DeployKey(r.Context(), id)
	if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		return nil, scope, nil, err
	}
	if err != nil {
		return nil, scope, nil, errNotFound
	}
	if _, ok := k.Grant(scope); !ok {
		return nil, scope, nil, errNotFound
	}
	return p, scope, k, nil
}

func (a *API) ghGetRepoKey(w http.ResponseWriter, r *http.Request) error {
	p, scope, k, err := a.ghRepoKey(r)
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, renderGHDeployKey(r, p, k, scope))
}

func (a *API) ghDeleteRepoKey(w http.ResponseWriter, r *http.Request) error {
	_, scope, k, err := a.ghRepoKey(r)
	if err != nil {
		return err
	}
	return noContent(w, a.store.DisableDeployKey(r.Context(), actor(r), k.ID, scope))
}
