package httpapi

import (
	"net/http"

	"github.com/keygate/keygate/keystore"
)

type gpgJSON struct {
	ID           int64    `json:"id"`
	Key          string   `json:"key"`
	CreatedAt    string   `json:"created_at"`
	Fingerprint  string   `json:"fingerprint"`
	PrimaryKeyID string   `json:"primary_keyid"`
	Emails       []string `json:"emails"`
	Revoked      bool     `json:"revoked"`
	RevokedAt    *string  `json:"revoked_at"`
}

func renderGPG(g *keystore.GPGKey) gpgJSON {
	emails := g.Emails
	if emails == nil {
		emails = []string{}
	}
	return gpgJSON{ID: g.ID, Key: g.Key, CreatedAt: fmtTime(g.CreatedAt), Fingerprint: g.Fingerprint,
		PrimaryKeyID: g.PrimaryKeyID, Emails: emails, Revoked: g.RevokedAt != nil, RevokedAt: fmtTimePtr(g.RevokedAt)}
}

func (a *API) writeGPGKeys(w http.ResponseWriter, r *http.Request, userID int64) error {
	return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.GPGKey, int, error) {
		return a.store.ListGPGKeys(r.Context(), userID, pg)
	}, renderGPG)
}

func (a *API) getGPG(w http.ResponseWriter, r *http.Request, userID int64) error {
	id, err := pathInt(r, "key_id", "GPG Key")
	if err != nil {
		return err
	}
	g, err := a.store.GPGKey(r.Context(), userID, id)
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, renderGPG(g))
}

func (a *API) addGPG(w http.ResponseWriter, r *http.Request, userID int64) error {
	p, err := readParams(r, "key")
	if err != nil {
		return err
	}
	key, _ := p.str("key")
	g, err := a.store.CreateGPGKey(r.Context(), actor(r), userID, key)
	if err != nil {
		return err
	}
	return respond(w, http.StatusCreated, renderGPG(g))
}

func (a *API) deleteGPG(w http.ResponseWriter, r *http.Request, userID int64) error {
	id, err := pathInt(r, "key_id", "GPG Key")
	if err != nil {
		return err
	}
	return noContent(w, a.store.DeleteGPGKey(r.Context(), actor(r), userID, id))
}

func (a *API) revokeGPG(w http.ResponseWriter, r *http.Request, userID int64) error {
	id, err := pathInt(r, "key_id", "GPG Key")
	if err != nil {
		return err
	}
	if err := a.store.RevokeGPGKey(r.Context(), actor(r), userID, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (a *API) listMyGPGKeys(w http.ResponseWriter, r *http.Request) error {
	return a.writeGPGKeys(w, r, me(r).ID)
}

func (a *API) addMyGPGKey(w http.ResponseWriter, r *http.Request) error {
	return a.addGPG(w, r, me(r).ID)
}

func (a *API) getMyGPGKey(w http.ResponseWriter, r *http.Request) error {
	return a.getGPG(w, r, me(r).ID)
}

func (a *API) deleteMyGPGKey(w http.ResponseWriter, r *http.Request) error {
	return a.deleteGPG(w, r, me(r).ID)
}

func (a *API) revokeMyGPGKey(w http.ResponseWriter, r *http.Request) error {
	return a.revokeGPG(w, r, me(r).ID)
}

// forUser runs fn for the user named by {id}.
func (a *API) forUser(fn func(http.ResponseWriter, *http.Request, int64) error, byIDOnly bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var u *keystore.User
		var err error
		if byIDOnly {
			u, err = a.userByID(r, "id")
		} else {
			u, err = a.lookupUser(r, "id")
		}
		if err != nil {
			return err
		}
		return fn(w, r, u.ID)
	}
}

func (a *API) listUserGPGKeys(w http.ResponseWriter, r *http.Request) error {
	u, err := a.lookupUser(r, "id")
	if err != nil {
		return err
	}
	return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.GPGKey, int, error) {
		return a.gpgKeysOf(r, u, pg)
	}, renderGPG)
}

func (a *API) getUserGPGKey(w http.ResponseWriter, r *http.Request) error {
	u, err := a.lookupUser(r, "id")
	if err != nil {
		return err
	}
	g, err := a.gpgKeyOf(r, u)
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, renderGPG(g))
}

func (a *API) addUserGPGKey(w http.ResponseWriter, r *http.Request) error {
	return a.forUser(a.addGPG, true)(w, r)
}

func (a *API) deleteUserGPGKey(w http.ResponseWriter, r *http.Request) error {
	return a.forUser(a.deleteGPG, true)(w, r)
}

func (a *API) revokeUserGPGKey(w http.ResponseWriter, r *http.Request) error {
	return a.forUser(a.revokeGPG, true)(w, r)
}
