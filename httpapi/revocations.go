package httpapi

import (
	"net/http"

	"github.com/keygate/keygate/keystore"
)

type revocationJSON struct {
	ID          int64   `json:"id"`
	Type        string  `json:"type"`
	Value       string  `json:"value"`
	Serial      *string `json:"serial,omitempty"`
	KeyID       *string `json:"key_id,omitempty"`
	Fingerprint *string `json:"fingerprint,omitempty"`
	Reason      string  `json:"reason"`
	CreatedAt   string  `json:"created_at"`
}

func renderRevocation(rv *keystore.Revocation) revocationJSON {
	j := revocationJSON{ID: rv.ID, Type: rv.Kind, Value: rv.Value, Reason: rv.Reason, CreatedAt: fmtTime(rv.CreatedAt)}
	v := rv.Value
	switch rv.Kind {
	case keystore.RevokeSerial:
		j.Serial = &v
	case keystore.RevokeKeyID:
		j.KeyID = &v
	case keystore.RevokeFingerprint:
		j.Fingerprint = &v
	}
	return j
}

// caOfGroup resolves {cert_id} within an owned top-level group.
func (a *API) caOfGroup(r *http.Request) (*keystore.GroupCA, error) {
	g, err := a.caGroup(r)
	if err != nil {
		return nil, err
	}
	id, err := pathInt(r, "cert_id", "SSH Certificate")
	if err != nil {
		return nil, err
	}
	return a.store.CA(r.Context(), g.ID, id)
}

// A group's revocations are its own: its owners (and admins, who own every
// group) list, add and lift those it made of its CA's key; another group
// holding the same key sees none of them and is refused by none.
func (a *API) listRevocations(w http.ResponseWriter, r *http.Request) error {
	ca, err := a.caOfGroup(r)
	if err != nil {
		return err
	}
	return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.Revocation, int, error) {
		return a.store.ListRevocations(r.Context(), ca.GroupID, ca.FingerprintSHA256, pg)
	}, renderRevocation)
}

func (a *API) createRevocation(w http.ResponseWriter, r *http.Request) error {
	ca, err := a.caOfGroup(r)
	if err != nil {
		return err
	}
	p, err := readParams(r)
	if err != nil {
		return err
	}
	var in keystore.RevocationInput
	n := 0
	for _, kind := range []string{keystore.RevokeSerial, keystore.RevokeKeyID, keystore.RevokeFingerprint} {
		if v, ok := p.str(kind); ok {
			in.Kind, in.Value = kind, v
			n++
		}
	}
	if n != 1 {
		return badRequest("serial", "give exactly one of serial, key_id or fingerprint")
	}
	in.Reason, _ = p.str("reason")
	rv, err := a.store.CreateRevocation(r.Context(), actor(r), ca, in)
	if err != nil {
		return err
	}
	return respond(w, http.StatusCreated, renderRevocation(rv))
}

func (a *API) deleteRevocation(w http.ResponseWriter, r *http.Request) error {
	ca, err := a.caOfGroup(r)
	if err != nil {
		return err
	}
	id, err := pathInt(r, "revocation_id", "Revocation")
	if err != nil {
		return err
	}
	return noContent(w, a.store.DeleteRevocation(r.Context(), actor(r), ca, id))
}
