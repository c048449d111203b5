package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/keygate/keygate/keystore"
)

type auditJSON struct {
	ID         int64          `json:"id"`
	AuthorID   *int64         `json:"author_id"`
	EntityID   int64          `json:"entity_id"`
	EntityType string         `json:"entity_type"`
	EventName  string         `json:"event_name"`
	Details    map[string]any `json:"details"`
	CreatedAt  string         `json:"created_at"`
}

func (a *API) writeAudit(w http.ResponseWriter, r *http.Request, f keystore.AuditFilter) error {
	pg, err := parsePaging(r, 20)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if f.TargetType == "" {
		f.TargetType = q.Get("entity_type")
	}
	if v := q.Get("entity_id"); v != "" {
		if f.TargetID, err = strconv.ParseInt(v, 10, 64); err != nil {
			return badRequest("entity_id", "must be an integer")
		}
	}
	p := params{v: q}
	if f.After, err = p.timePtr("created_after"); err != nil {
		return err
	}
	if f.Before, err = p.timePtr("created_before"); err != nil {
		return err
	}
	events, total, err := a.store.ListAuditEvents(r.Context(), f, pg.store())
	if err != nil {
		return err
	}
	out := make([]auditJSON, 0, len(events))
	for _, e := range events {
		d := map[string]any{}
		_ = json.Unmarshal([]byte(e.Details), &d)
		d["ip_address"] = e.RemoteIP
		d["action"] = e.Action
		out = append(out, auditJSON{ID: e.ID, AuthorID: e.ActorID, EntityID: e.TargetID, EntityType: e.TargetType,
			EventName: e.Action, Details: d, CreatedAt: fmtTime(e.At)})
	}
	return respondPage(w, r, pg, total, out)
}

func (a *API) listAuditEvents(w http.ResponseWriter, r *http.Request) error {
	return a.writeAudit(w, r, keystore.AuditFilter{})
}

func (a *API) listGroupAuditEvents(w http.ResponseWriter, r *http.Request) error {
	g, err := a.ownedGroup(r)
	if err != nil {
		return err
	}
	return a.writeAudit(w, r, keystore.AuditFilter{GroupID: g.ID})
}
