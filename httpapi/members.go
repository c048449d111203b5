package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
)

type memberJSON struct {
	userJSON
	AccessLevel int     `json:"access_level"`
	MemberSince string  `json:"created_at"`
	ExpiresAt   *string `json:"expires_at"`
}

func (a *API) renderMember(r *http.Request, m *keystore.Member) memberJSON {
	j := memberJSON{userJSON: a.renderUser(r, &m.User), AccessLevel: m.AccessLevel, MemberSince: fmtTime(m.CreatedAt)}
	if m.ExpiresAt != nil {
		// GitLab's date; a time that is not midnight UTC (set outside the
		// API) is shown exactly.
		v := m.ExpiresAt.UTC().Format(time.DateOnly)
		if !m.ExpiresAt.Equal(midnightUTC(*m.ExpiresAt)) {
			v = fmtTime(*m.ExpiresAt)
		}
		j.ExpiresAt = &v
	}
	return j
}

func midnightUTC(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// memberExpiry reads expires_at: GitLab's date (YYYY-MM-DD), when the
// membership ends, at the start of that day UTC. given reports whether the
// request set it; at is nil for "never" (absent on add; "" or null on
// edit clears it). A time of day other than midnight UTC is refused
// rather than rounded: GitLab drops it silently.
func memberExpiry(p params) (at *time.Time, given bool, err error) {
	v, ok := p.str("expires_at")
	if !ok {
		return nil, p.isNull("expires_at"), nil
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, true, nil
	}
	t, err := time.Parse(time.DateOnly, v)
	if err != nil {
		if t, err = time.Parse(time.RFC3339Nano, v); err != nil || !t.Equal(midnightUTC(t)) {
			return nil, true, badRequest("expires_at", "must be a date (YYYY-MM-DD): the membership ends at the start of that day, UTC")
		}
	}
	t = t.UTC()
	return &t, true, nil
}

// MarshalJSON flattens the user fields with the membership's created_at.
func (m memberJSON) MarshalJSON() ([]byte, error) {
	u := m.userJSON
	type flat struct {
		ID          int64   `json:"id"`
		Username    string  `json:"username"`
		Name        string  `json:"name"`
		State       string  `json:"state"`
		AvatarURL   *string `json:"avatar_url"`
		WebURL      string  `json:"web_url"`
		Email       string  `json:"email,omitempty"`
		AccessLevel int     `json:"access_level"`
		CreatedAt   string  `json:"created_at"`
		ExpiresAt   *string `json:"expires_at"`
	}
	return json.Marshal(flat{ID: u.ID, Username: u.Username, Name: u.Name, State: u.State, WebURL: u.WebURL,
		Email: u.Email, AccessLevel: m.AccessLevel, CreatedAt: m.MemberSince, ExpiresAt: m.ExpiresAt})
}

func (a *API) listMembers(w http.ResponseWriter, r *http.Request) error {
	return a.writeMembers(w, r, false)
}

// listAllMembers is GET /groups/:id/members/all: effective members,
// inherited ones included, each at their highest level.
func (a *API) listAllMembers(w http.ResponseWriter, r *http.Request) error {
	return a.writeMembers(w, r, true)
}

func (a *API) writeMembers(w http.ResponseWriter, r *http.Request, effective bool) error {
	g, _, err := a.visibleGroup(r)
	if err != nil {
		return err
	}
	pg, p, err := listParams(r, 20)
	if err != nil {
		return err
	}
	if err := p.unsupported("skip_users", "show_seat_info", "with_saml_identity", "state"); err != nil {
		return err
	}
	var f keystore.MemberFilter
	f.Query, _ = p.str("query")
	for _, v := range p.list("user_ids") {
		id, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || id < 1 {
			return badRequest("user_ids", "must be a list of user ids")
		}
		f.UserIDs = append(f.UserIDs, id)
	}
	if len(f.UserIDs) > 100 {
		return badRequest("user_ids", "is too long (at most 100 ids)")
	}
	var ms []*keystore.Member
	var total int
	if effective {
		ms, total, err = a.store.ListEffectiveMembers(r.Context(), g, f, pg.store())
	} else {
		ms, total, err = a.store.ListMembersFiltered(r.Context(), g.ID, f, pg.store())
	}
	if err != nil {
		return err
	}
	return writePage(w, r, pg, total, ms, func(m *keystore.Member) memberJSON { return a.renderMember(r, m) })
}

func (a *API) getMember(w http.ResponseWriter, r *http.Request) error {
	return a.writeMember(w, r, false)
}

// getAllMember is GET /groups/:id/members/all/:user_id: one effective
// membership, inherited or direct.
func (a *API) getAllMember(w http.ResponseWriter, r *http.Request) error {
	return a.writeMember(w, r, true)
}

func (a *API) writeMember(w http.ResponseWriter, r *http.Request, effective bool) error {
	g, _, err := a.visibleGroup(r)
	if err != nil {
		return err
	}
	uid, err := pathInt(r, "user_id", "Member")
	if err != nil {
		return err
	}
	var m *keystore.Member
	if effective {
		m, err = a.store.EffectiveMember(r.Context(), g, uid)
	} else {
		m, err = a.store.Member(r.Context(), g.ID, uid)
	}
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, a.renderMember(r, m))
}

// accessLevelParam reads the request's parameters and their required
// access_level.
func accessLevelParam(r *http.Request) (params, int, error) {
	p, err := readParams(r)
	if err != nil {
		return p, 0, err
	}
	level, ok, err := p.intVal("access_level")
	if err != nil {
		return p, 0, err
	}
	if !ok {
		return p, 0, badRequest("access_level", "is missing")
	}
	if !keystore.ValidAccessLevel(level) {
		return p, 0, badRequest("access_level", "does not have a valid value (10, 20, 30, 40 or 50)")
	}
	return p, level, nil
}

func (a *API) addMember(w http.ResponseWriter, r *http.Request) error {
	g, err := a.ownedGroup(r)
	if err != nil {
		return err
	}
	p, level, err := accessLevelParam(r)
	if err != nil {
		return err
	}
	var uid int64
	if id, err := p.int64Ptr("user_id"); err != nil {
		return err
	} else if id != nil {
		uid = *id
	} else if name, ok := p.str("username"); ok {
		u, err := a.store.UserByUsername(r.Context(), name)
		if err != nil {
			return err
		}
		uid = u.ID
	} else {
		return badRequest("user_id", "is missing")
	}
	exp, _, err := memberExpiry(p)
	if err != nil {
		return err
	}
	m, err := a.store.AddMemberUntil(r.Context(), actor(r), g.ID, uid, level, exp)
	if err != nil {
		return err
	}
	return respond(w, http.StatusCreated, a.renderMember(r, m))
}

func (a *API) updateMember(w http.ResponseWriter, r *http.Request) error {
	g, uid, err := a.inGroup(r, a.ownedGroup, "user_id", "Member")
	if err != nil {
		return err
	}
	p, level, err := accessLevelParam(r)
	if err != nil {
		return err
	}
	exp, setExpiry, err := memberExpiry(p)
	if err != nil {
		return err
	}
	var m *keystore.Member
	if setExpiry {
		m, err = a.store.UpdateMemberUntil(r.Context(), actor(r), g.ID, uid, level, exp)
	} else {
		m, err = a.store.UpdateMember(r.Context(), actor(r), g.ID, uid, level)
	}
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, a.renderMember(r, m))
}

func (a *API) removeMember(w http.ResponseWriter, r *http.Request) error {
	g, uid, err := a.inGroup(r, a.ownedGroup, "user_id", "Member")
	if err != nil {
		return err
	}
	return noContent(w, a.store.RemoveMember(r.Context(), actor(r), g.ID, uid))
}
