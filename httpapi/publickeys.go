package httpapi

import (
	"net/http"

	"github.com/keygate/keygate/keystore"
)

// Every route that lists or shows another person's keys goes through
// these: the viewer sees what keystore.PublicKey and keystore.PublicGPGKey
// let anyone see (active users' unexpired SSH keys, unrevoked GPG keys),
// unless the viewer is that user or an admin. GET /USERNAME.keys and
// GitHub's /users/:username/keys and ssh_signing_keys are the public view
// for everyone, as on GitHub.

// publicView reports whether viewer (nil: anonymous) sees u's keys as
// the public does: everyone but u and admins.
func publicView(viewer, u *keystore.User) bool {
	return viewer == nil || (viewer.ID != u.ID && !viewer.IsAdmin)
}

// keysOf lists u's SSH keys with one of usages (none: any) as a viewer
// sees them; public forces the public view.
func (a *API) keysOf(r *http.Request, u *keystore.User, usages []string, public bool, pg keystore.Page) ([]*keystore.Key, int, error) {
	f := keystore.KeyFilter{UserID: u.ID, Usages: usages, Public: public || publicView(me(r), u)}
	return a.store.ListKeys(r.Context(), f, pg)
}

// keyOf is u's SSH key {key_id}, if the viewer may see it.
func (a *API) keyOf(r *http.Request, u *keystore.User) (*keystore.Key, error) {
	k, err := a.userKey(r, u.ID)
	if err != nil {
		return nil, err
	}
	if publicView(me(r), u) && !keystore.PublicKey(u, k, a.store.Now()) {
		return nil, notFound("Key")
	}
	return k, nil
}

// gpgKeysOf lists u's GPG keys as the viewer sees them.
func (a *API) gpgKeysOf(r *http.Request, u *keystore.User, pg keystore.Page) ([]*keystore.GPGKey, int, error) {
	if publicView(me(r), u) {
		return a.store.ListPublicGPGKeys(r.Context(), u.ID, pg)
	}
	return a.store.ListGPGKeys(r.Context(), u.ID, pg)
}

// gpgKeyOf is u's GPG key {key_id}, if the viewer may see it.
func (a *API) gpgKeyOf(r *http.Request, u *keystore.User) (*keystore.GPGKey, error) {
	id, err := pathInt(r, "key_id", "GPG Key")
	if err != nil {
		return nil, err
	}
	g, err := a.store.GPGKey(r.Context(), u.ID, id)
	if err != nil {
		return nil, err
	}
	if publicView(me(r), u) && !keystore.PublicGPGKey(u, g) {
		return nil, notFound("GPG Key")
	}
	return g, nil
}
