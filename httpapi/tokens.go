package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/keygate/keygate/keystore"
)

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
	p, err := readParams(r, "name")
	if err != nil {
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
	return respond(w, http.StatusCreated, j)
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
	return respond(w, http.StatusOK, a.renderToken(tk))
}

func (a *API) getSelfToken(w http.ResponseWriter, r *http.Request) error {
	return respond(w, http.StatusOK, a.renderToken(currentToken(r)))
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
	return noContent(w, a.store.RevokeToken(r.Context(), actor(r), currentToken(r).ID))
}
