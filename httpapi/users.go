package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

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
	}
	return j
}

func (a *API) getCurrentUser(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, a.renderUser(r, me(r)))
	return nil
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

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) error {
	pg, err := parsePaging(r, 20)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := keystore.UserFilter{Username: q.Get("username"), Search: q.Get("search"), SearchEmails: me(r).IsAdmin}
	if q.Get("blocked") == "true" {
		t := true
		f.Blocked = &t
	} else if q.Get("active") == "true" {
		fl := false
		f.Blocked = &fl
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
	writeJSON(w, http.StatusOK, a.renderUser(r, u))
	return nil
}

func userInput(p params) (keystore.UserInput, error) {
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
	p, err := readParams(r)
	if err != nil {
		return err
	}
	if err := p.require("username", "email"); err != nil {
		return err
	}
	in, err := userInput(p)
	if err != nil {
		return err
	}
	u, err := a.store.CreateUser(r.Context(), actor(r), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, a.renderUser(r, u))
	return nil
}

func (a *API) updateUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "id", "User")
	if err != nil {
		return err
	}
	p, err := readParams(r)
	if err != nil {
		return err
	}
	in, err := userInput(p)
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
	writeJSON(w, http.StatusOK, a.renderUser(r, u))
	return nil
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "id", "User")
	if err != nil {
		return err
	}
	if me(r).ID == id {
		return errStatus(http.StatusForbidden, "403 Forbidden - you cannot delete yourself")
	}
	if err := a.store.DeleteUser(r.Context(), actor(r), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
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
	writeJSON(w, http.StatusCreated, true)
	return nil
}

func (a *API) blockUser(w http.ResponseWriter, r *http.Request) error {
	return a.setState(w, r, keystore.StateBlocked)
}

func (a *API) unblockUser(w http.ResponseWriter, r *http.Request) error {
	return a.setState(w, r, keystore.StateActive)
}

// tokens

type tokenJSON struct {
	ID         int64    `json:"id"`
	Name       string   `json:"name"`
	Revoked    bool     `json:"revoked"`
	CreatedAt  string   `json:"created_at"`
	Scopes     []string `json:"scopes"`
	UserID     int64    `json:"user_id"`
	LastUsedAt *string  `json:"last_used_at"`
	Active     bool     `json:"active"`
	ExpiresAt  *string  `json:"expires_at"`
	Token      string   `json:"token,omitempty"`
}

func (a *API) renderToken(t *keystore.Token) tokenJSON {
	return tokenJSON{ID: t.ID, Name: t.Name, Revoked: t.Revoked, CreatedAt: fmtTime(t.CreatedAt), Scopes: t.Scopes,
		UserID: t.UserID, LastUsedAt: fmtTimePtr(t.LastUsedAt), Active: t.Active(a.store.Now()), ExpiresAt: fmtDatePtr(t.ExpiresAt)}
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request) error {
	u, err := a.userByID(r, "id")
	if err != nil {
		return err
	}
	p, err := readParams(r)
	if err != nil {
		return err
	}
	if err := p.require("name"); err != nil {
		return err
	}
	exp, err := p.timePtr("expires_at")
	if err != nil {
		return err
	}
	name, _ := p.str("name")
	scopes := p.list("scopes")
	if len(scopes) == 0 {
		return badRequest("scopes", "is missing")
	}
	tk, secret, err := a.store.CreateToken(r.Context(), actor(r), u.ID, keystore.TokenInput{Name: name, Scopes: scopes, ExpiresAt: exp})
	if err != nil {
		return err
	}
	j := a.renderToken(tk)
	j.Token = secret
	writeJSON(w, http.StatusCreated, j)
	return nil
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) error {
	pg, err := parsePaging(r, 20)
	if err != nil {
		return err
	}
	u := me(r)
	uid := u.ID
	if u.IsAdmin {
		uid = 0
		if v := r.URL.Query().Get("user_id"); v != "" {
			if uid, err = strconv.ParseInt(v, 10, 64); err != nil {
				return badRequest("user_id", "must be an integer")
			}
		}
	}
	f, err := tokenFilter(r)
	if err != nil {
		return err
	}
	f.UserID = uid
	toks, total, err := a.store.FindTokens(r.Context(), f, pg.store())
	if err != nil {
		return err
	}
	return writePage(w, r, pg, total, toks, a.renderToken)
}

// tokenFilter reads GitLab's filters for listing personal access tokens.
func tokenFilter(r *http.Request) (keystore.TokenFilter, error) {
	var f keystore.TokenFilter
	p, err := readParams(r)
	if err != nil {
		return f, err
	}
	if f.Revoked, err = p.boolPtr("revoked"); err != nil {
		return f, err
	}
	if v, _ := p.str("state"); v != "" {
		if v != "active" && v != "inactive" {
			return f, badRequest("state", "does not have a valid value")
		}
		f.State = v
	}
	f.Search, _ = p.str("search")
	for _, d := range []struct {
		name string
		to   **time.Time
	}{
		{"created_after", &f.CreatedAfter}, {"created_before", &f.CreatedBefore},
		{"expires_after", &f.ExpiresAfter}, {"expires_before", &f.ExpiresBefore},
		{"last_used_after", &f.LastUsedAfter}, {"last_used_before", &f.LastUsedBefore},
	} {
		if *d.to, err = p.timePtr(d.name); err != nil {
			return f, err
		}
	}
	return f, nil
}

// ownToken loads a token the caller may see: their own, or any for admins.
func (a *API) ownToken(r *http.Request) (*keystore.Token, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "token_id"), 10, 64)
	if err != nil {
		return nil, notFound("Token")
	}
	tk, err := a.store.Token(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if u := me(r); !u.IsAdmin && tk.UserID != u.ID {
		return nil, notFound("Token")
	}
	return tk, nil
}

func (a *API) getToken(w http.ResponseWriter, r *http.Request) error {
	tk, err := a.ownToken(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.renderToken(tk))
	return nil
}

func (a *API) getSelfToken(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, a.renderToken(currentToken(r)))
	return nil
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) error {
	tk, err := a.ownToken(r)
	if err != nil {
		return err
	}
	if err := a.store.RevokeToken(r.Context(), actor(r), tk.ID); err != nil {
		if errors.Is(err, keystore.ErrNotFound) {
			return badRequest("token", "is already revoked")
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) revokeSelfToken(w http.ResponseWriter, r *http.Request) error {
	if err := a.store.RevokeToken(r.Context(), actor(r), currentToken(r).ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
