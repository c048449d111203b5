package httpapi

import (
	"net/http"

	"github.com/keygate/keygate/keystore"
)

// Audit event streaming destinations (admins). GitLab has these only in
// GraphQL (externalAuditEventDestinationCreate …); keygate's REST routes
// keep GitLab's field names destination_url and verification_token. See
// docs/audit-streaming.md.

type streamDestinationJSON struct {
	ID                int64    `json:"id"`
	Name              string   `json:"name"`
	DestinationURL    string   `json:"destination_url"`
	VerificationToken string   `json:"verification_token"`
	EventTypeFilters  []string `json:"event_type_filters"`
	CreatedAt         string   `json:"created_at"`
	UpdatedAt         string   `json:"updated_at"`
}

func renderStreamDestination(d *keystore.StreamDestination) streamDestinationJSON {
	return streamDestinationJSON{ID: d.ID, Name: d.Name, DestinationURL: d.DestinationURL, VerificationToken: d.VerificationToken,
		EventTypeFilters: d.EventTypes, CreatedAt: fmtTime(d.CreatedAt), UpdatedAt: fmtTime(d.UpdatedAt)}
}

// streamInput reads a destination's parameters (event_type_filters: a
// list; an empty string or empty list means every event type).
func streamInput(r *http.Request, required ...string) (keystore.StreamDestinationInput, error) {
	var in keystore.StreamDestinationInput
	p, err := readParams(r, required...)
	if err != nil {
		return in, err
	}
	in.Name = p.strPtr("name")
	in.DestinationURL = p.strPtr("destination_url")
	in.VerificationToken = p.strPtr("verification_token")
	if _, ok := p.v["event_type_filters"]; ok {
		list := []string{}
		for _, v := range p.list("event_type_filters") {
			if v != "" {
				list = append(list, v)
			}
		}
		in.EventTypes = &list
	}
	return in, nil
}

func (a *API) listStreamDestinations(w http.ResponseWriter, r *http.Request) error {
	return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.StreamDestination, int, error) {
		return a.store.ListStreamDestinations(r.Context(), pg)
	}, renderStreamDestination)
}

func (a *API) createStreamDestination(w http.ResponseWriter, r *http.Request) error {
	in, err := streamInput(r, "destination_url")
	if err != nil {
		return err
	}
	d, err := a.store.CreateStreamDestination(r.Context(), actor(r), in)
	if err != nil {
		return err
	}
	return respond(w, http.StatusCreated, renderStreamDestination(d))
}

func (a *API) getStreamDestination(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "destination_id", "Streaming destination")
	if err != nil {
		return err
	}
	d, err := a.store.StreamDestination(r.Context(), id)
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, renderStreamDestination(d))
}

func (a *API) updateStreamDestination(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "destination_id", "Streaming destination")
	if err != nil {
		return err
	}
	in, err := streamInput(r)
	if err != nil {
		return err
	}
	d, err := a.store.UpdateStreamDestination(r.Context(), actor(r), id, in)
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, renderStreamDestination(d))
}

func (a *API) deleteStreamDestination(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "destination_id", "Streaming destination")
	if err != nil {
		return err
	}
	return noContent(w, a.store.DeleteStreamDestination(r.Context(), actor(r), id))
}
