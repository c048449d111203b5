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
	// Origin is "admin" (network policy as written) or "owner" (applies
	// only inside an admin's allowance).
	Origin string `json:"origin"`
	// Active reports whether the target applies now: not disabled, and
	// for an owner's target, inside a current allowance.
	Active         bool   `json:"active"`
	DisabledReason string `json:"disabled_reason,omitempty"`
}

func renderBastionTarget(b *keystore.BastionTarget, allowances []*keystore.BastionAllowance) bastionTargetJSON {
	j := bastionTargetJSON{ID: b.ID, Pattern: b.Pattern, MinAccessLevel: b.MinAccessLevel,
		Description: b.Description, CreatedAt: fmtTime(b.CreatedAt), Origin: b.Origin, DisabledReason: b.DisabledReason}
	switch {
	case b.DisabledReason != "":
	case b.Origin == keystore.OriginAdmin:
		j.Active = true
	case b.Origin == keystore.OriginOwner:
		// Stored before owners' targets that could never forward were
		// refused: shown as what they are.
		if p, _, ok := keystore.ParseBastionPattern(b.Pattern); ok && keystore.NeverForwards(p) != "" {
			j.DisabledReason = "could never forward: " + keystore.NeverForwards(p)
			break
		}
		j.Active = keystore.InsideAllowances(b.Pattern, allowances)
		if !j.Active {
			j.DisabledReason = "outside every current bastion allowance of the group"
		}
	}
	return j
}

type bastionAllowanceJSON struct {
	ID          int64  `json:"id"`
	GroupID     int64  `json:"group_id"`
	Pattern     string `json:"pattern"`
	Description string `json:"description"`
	CreatedAt   string `json:"created_at"`
}

func renderBastionAllowance(b *keystore.BastionAllowance) bastionAllowanceJSON {
	return bastionAllowanceJSON{ID: b.ID, GroupID: b.GroupID, Pattern: b.Pattern, Description: b.Description, CreatedAt: fmtTime(b.CreatedAt)}
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
	allowances, err := a.store.BastionAllowancesFor(r.Context(), g.ID)
	if err != nil {
		return err
	}
	return writePage(w, r, pg, total, ts, func(b *keystore.BastionTarget) bastionTargetJSON { return renderBastionTarget(b, allowances) })
}

func (a *API) createBastionTarget(w http.ResponseWriter, r *http.Request) error {
	g, err := a.ownedGroup(r)
	if err != nil {
		return err
	}
	p, err := readParams(r, "pattern")
	if err != nil {
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
	in := keystore.BastionTargetInput{Pattern: pattern, MinAccessLevel: level, Description: desc}
	// Where the bastion may reach is network policy: an admin's target
	// applies as written; an owner's only inside an admin's allowance.
	create := a.store.CreateOwnerBastionTarget
	if me(r).IsAdmin {
		create = a.store.CreateBastionTarget
	}
	b, err := create(r.Context(), actor(r), g.ID, in)
	if err != nil {
		return err
	}
	allowances, err := a.store.BastionAllowancesFor(r.Context(), g.ID)
	if err != nil {
		return err
	}
	return respond(w, http.StatusCreated, renderBastionTarget(b, allowances))
}

// Bastion allowances: admins write them; a group's owners read those that
// apply to it (its own and its ancestors').

func (a *API) listBastionAllowances(w http.ResponseWriter, r *http.Request) error {
	g, err := a.ownedGroup(r)
	if err != nil {
		return err
	}
	return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.BastionAllowance, int, error) {
		all, err := a.store.BastionAllowancesFor(r.Context(), g.ID)
		total := len(all)
		from := min((pg.Page-1)*pg.PerPage, total)
		return all[from:min(from+pg.PerPage, total)], total, err
	}, renderBastionAllowance)
}

func (a *API) createBastionAllowance(w http.ResponseWriter, r *http.Request) error {
	g, _, err := a.groupAccess(r) // admin-only route: admins see every group
	if err != nil {
		return err
	}
	p, err := readParams(r, "pattern")
	if err != nil {
		return err
	}
	pattern, _ := p.str("pattern")
	desc, _ := p.str("description")
	b, err := a.store.CreateBastionAllowance(r.Context(), actor(r), g.ID, keystore.BastionAllowanceInput{Pattern: pattern, Description: desc})
	if err != nil {
		return err
	}
	return respond(w, http.StatusCreated, renderBastionAllowance(b))
}

func (a *API) deleteBastionAllowance(w http.ResponseWriter, r *http.Request) error {
	g, id, err := a.inGroup(r, a.anyGroup, "allowance_id", "Bastion Allowance") // admin-only route: admins see every group
	if err != nil {
		return err
	}
	return noContent(w, a.store.DeleteBastionAllowance(r.Context(), actor(r), g.ID, id))
}

func (a *API) deleteBastionTarget(w http.ResponseWriter, r *http.Request) error {
	g, id, err := a.inGroup(r, a.ownedGroup, "target_id", "Bastion Target")
	if err != nil {
		return err
	}
	return noContent(w, a.store.DeleteBastionTarget(r.Context(), actor(r), g.ID, id))
}
