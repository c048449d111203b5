package httpapi

import (
	"net/http"

	"github.com/keygate/keygate/keystore"
)

type bastionTargetJSON struct {
	ID             int64  `json:"id"`
	Pattern        string `json:"pattern"`
	MinAccessLevel int    `json:"min_access_level"`
	Description    string `json:"description"`
	CreatedAt      string `json:"created_at"`
}

func renderBastionTarget(b *keystore.BastionTarget) bastionTargetJSON {
	return bastionTargetJSON{ID: b.ID, Pattern: b.Pattern, MinAccessLevel: b.MinAccessLevel,
		Description: b.Description, CreatedAt: fmtTime(b.CreatedAt)}
}

func (a *API) listBastionTargets(w http.ResponseWriter, r *http.Request) error {
	g, err := a.ownedGroup(r)
	if err != nil {
		return err
	}
	pg, err := parsePaging(r, 20)
	if err != nil {
		return err
	}
	ts, total, err := a.store.ListBastionTargets(r.Context(), g.ID, pg.store())
	if err != nil {
		return err
	}
	return writePage(w, r, pg, total, ts, renderBastionTarget)
}

func (a *API) createBastionTarget(w http.ResponseWriter, r *http.Request) error {
	g, err := a.ownedGroup(r)
	if err != nil {
		return err
	}
	p, err := readParams(r)
	if err != nil {
		return err
	}
	if err := p.require("pattern"); err != nil {
		return err
	}
	pattern, _ := p.str("pattern")
	level, given, err := p.intVal("min_access_level")
	if err != nil {
		return err
	}
	if given && level == 0 {
		return badRequest("min_access_level", "is not a valid access level (10, 20, 30, 40 or 50)")
	}
	desc, _ := p.str("description")
	b, err := a.store.CreateBastionTarget(r.Context(), actor(r), g.ID, keystore.BastionTargetInput{
		Pattern: pattern, MinAccessLevel: level, Description: desc,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, renderBastionTarget(b))
	return nil
}

func (a *API) deleteBastionTarget(w http.ResponseWriter, r *http.Request) error {
	g, err := a.ownedGroup(r)
	if err != nil {
		return err
	}
	id, err := pathInt(r, "target_id", "Bastion Target")
	if err != nil {
		return err
	}
	if err := a.store.DeleteBastionTarget(r.Context(), actor(r), g.ID, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
