package httpapi

import (
	"net/http"

	"github.com/keygate/keygate/keystore"
)

type caJSON struct {
	ID        int64  `json:"id"`
	Title     string `json:"title"`
	Key       string `json:"key"`
	CreatedAt string `json:"created_at"`
	// Managed: keygate generated the CA and holds its private key (never
	// shown); uploaded CAs keep GitLab's shape, without the field.
	Managed bool `json:"managed,omitempty"`
}

func renderCA(c *keystore.GroupCA) caJSON {
	return caJSON{ID: c.ID, Title: c.Title, Key: c.Key, CreatedAt: fmtTime(c.CreatedAt), Managed: c.Managed}
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
	return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.GroupCA, int, error) {
		return a.store.ListCAs(r.Context(), g.ID, pg)
	}, renderCA)
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
	generate, err := p.flag("generate")
	if err != nil {
		return err
	}
	if generate {
		err = p.require("title")
	} else {
		err = p.require("title", "key")
	}
	if err != nil {
		return err
	}
	title, _ := p.str("title")
	key, hasKey := p.str("key")
	keyType, hasType := p.str("key_type")
	var c *keystore.GroupCA
	switch {
	case generate && hasKey:
		return badRequest("key", "must not be given with generate=true (keygate generates the key pair)")
	case generate:
		c, err = a.store.GenerateCA(r.Context(), actor(r), g.ID, title, keyType)
	case hasType:
		return badRequest("key_type", "is only for generate=true")
	default:
		c, err = a.store.CreateCA(r.Context(), actor(r), g.ID, keystore.CAInput{Title: title, Key: key})
	}
	if err != nil {
		return err
	}
	return respond(w, http.StatusCreated, renderCA(c))
}

func (a *API) deleteCA(w http.ResponseWriter, r *http.Request) error {
	g, id, err := a.inGroup(r, a.caGroup, "cert_id", "SSH Certificate")
	if err != nil {
		return err
	}
	return noContent(w, a.store.DeleteCA(r.Context(), actor(r), g.ID, id))
}
