package httpapi

import (
	"net/http"

	"github.com/keygate/keygate/keystore"
)

// keyJSON is GitLab's SSH key shape.
type keyJSON struct {
	ID        int64     `json:"id"`
	Title     string    `json:"title"`
	Key       string    `json:"key"`
	CreatedAt string    `json:"created_at"`
	ExpiresAt *string   `json:"expires_at"`
	UsageType string    `json:"usage_type"`
	User      *userJSON `json:"user,omitempty"`
}

func renderKey(k *keystore.Key) keyJSON {
	return keyJSON{ID: k.ID, Title: k.Title, Key: k.Key, CreatedAt: fmtTime(k.CreatedAt),
		ExpiresAt: fmtTimePtr(k.ExpiresAt), UsageType: k.UsageType}
}

func (a *API) writeKeys(w http.ResponseWriter, r *http.Request, userID int64) error {
	return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.Key, int, error) {
		return a.store.ListKeys(r.Context(), keystore.KeyFilter{UserID: userID}, pg)
	}, renderKey)
}

// userKey loads keyID if it belongs to userID.
func (a *API) userKey(r *http.Request, userID int64) (*keystore.Key, error) {
	id, err := pathInt(r, "key_id", "Key")
	if err != nil {
		return nil, err
	}
	k, err := a.store.Key(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if k.UserID != userID {
		return nil, notFound("Key")
	}
	return k, nil
}

func (a *API) addKey(w http.ResponseWriter, r *http.Request, userID int64) error {
	p, err := readParams(r, "title", "key")
	if err != nil {
		return err
	}
	exp, err := p.timePtr("expires_at")
	if err != nil {
		return err
	}
	title, _ := p.str("title")
	key, _ := p.str("key")
	usage, _ := p.str("usage_type")
	k, err := a.store.CreateKey(r.Context(), actor(r), userID, keystore.KeyInput{Title: title, Key: key, UsageType: usage, ExpiresAt: exp})
	if err != nil {
		return err
	}
	return respond(w, http.StatusCreated, renderKey(k))
}

func (a *API) listMyKeys(w http.ResponseWriter, r *http.Request) error {
	return a.writeKeys(w, r, me(r).ID)
}

func (a *API) addMyKey(w http.ResponseWriter, r *http.Request) error { return a.addKey(w, r, me(r).ID) }

func (a *API) getMyKey(w http.ResponseWriter, r *http.Request) error {
	k, err := a.userKey(r, me(r).ID)
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, renderKey(k))
}

func (a *API) deleteMyKey(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "key_id", "Key")
	if err != nil {
		return err
	}
	return noContent(w, a.store.DeleteKey(r.Context(), actor(r), me(r).ID, id))
}

func (a *API) listUserKeys(w http.ResponseWriter, r *http.Request) error {
	u, err := a.lookupUser(r, "id")
	if err != nil {
		return err
	}
	return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.Key, int, error) {
		return a.keysOf(r, u, nil, false, pg)
	}, renderKey)
}

func (a *API) getUserKey(w http.ResponseWriter, r *http.Request) error {
	u, err := a.lookupUser(r, "id")
	if err != nil {
		return err
	}
	k, err := a.keyOf(r, u)
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, renderKey(k))
}

func (a *API) addUserKey(w http.ResponseWriter, r *http.Request) error {
	u, err := a.userByID(r, "id")
	if err != nil {
		return err
	}
	return a.addKey(w, r, u.ID)
}

func (a *API) deleteUserKey(w http.ResponseWriter, r *http.Request) error {
	u, err := a.userByID(r, "id")
	if err != nil {
		return err
	}
	id, err := pathInt(r, "key_id", "Key")
	if err != nil {
		return err
	}
	return noContent(w, a.store.DeleteKey(r.Context(), actor(r), u.ID, id))
}

func (a *API) keyWithUser(w http.ResponseWriter, r *http.Request, k *keystore.Key) error {
	u, err := a.store.User(r.Context(), k.UserID)
	if err != nil {
		return err
	}
	j := renderKey(k)
	uj := a.renderUser(r, u)
	j.User = &uj
	return respond(w, http.StatusOK, j)
}

func (a *API) getKeyWithUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "id", "Key")
	if err != nil {
		return err
	}
	k, err := a.store.Key(r.Context(), id)
	if err != nil {
		return err
	}
	return a.keyWithUser(w, r, k)
}

func (a *API) getKeyByFingerprint(w http.ResponseWriter, r *http.Request) error {
	fp := r.URL.Query().Get("fingerprint")
	if fp == "" {
		return badRequest("fingerprint", "is missing")
	}
	// Any form a person pastes (keystore.NormalizeFingerprint): a "+"
	// that arrived as a space, padding, no prefix, MD5.
	k, err := a.store.KeyByFingerprint(r.Context(), fp)
	if err != nil {
		return err
	}
	return a.keyWithUser(w, r, k)
}

// GPG keys
