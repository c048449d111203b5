package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/internal/krl"
	"github.com/keygate/keygate/keystore"
)

// The files an OpenSSH server behind the bastion needs (docs/openssh-fleet.md):
// a top-level group's revocations as a binary KRL (RevokedKeys), its CA
// keys (TrustedUserCAKeys), and who may log in (AuthorizedPrincipals*).

// fleetGroup resolves the group of a KRL or CA keys request. Anyone may
// read them once an admin made the group's KRL public (krl_public);
// otherwise its owners and maintainers (admins everywhere). Without a
// token, a list that is not public is 401 whether or not the group
// exists; a group the caller cannot see is 404, a member below maintainer
// 403, and a subgroup (it holds no CAs) 403 Group.
func (a *API) fleetGroup(r *http.Request) (*keystore.Group, error) {
	g, err := a.pathGroup(r)
	u := me(r)
	if u == nil {
		if err != nil && !errors.Is(err, keystore.ErrNotFound) {
			return nil, err
		}
		if err != nil || !g.KRLPublic {
			return nil, errUnauthorized
		}
		return g, nil
	}
	if err != nil {
		return nil, err
	}
	if !g.KRLPublic {
		level, err := a.store.UserAccessLevel(r.Context(), u, g)
		if err != nil {
			return nil, err
		}
		if level < keystore.Guest {
			return nil, notFound("Group")
		}
		if level < keystore.Maintainer {
			return nil, errForbidden
		}
	}
	if !g.TopLevel() {
		return nil, errGroupScope
	}
	return g, nil
}

// krlETag names one version of a group's KRL. The time is in it too, so a
// database restored to an older state never repeats a version's tag with
// other contents.
func krlETag(st keystore.KRLState) string {
	return fmt.Sprintf(`"krl-%d-%d-%d"`, st.GroupID, st.Version, st.UpdatedAt.UnixMilli())
}

// etagMatches is If-None-Match's weak comparison (RFC 9110 §13.1.2).
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

func setKRLHeaders(w http.ResponseWriter, st keystore.KRLState) {
	h := w.Header()
	h.Set("ETag", krlETag(st))
	h.Set("Cache-Control", "no-cache")
	h.Set("Last-Modified", st.UpdatedAt.UTC().Format(http.TimeFormat))
	h.Set("X-KRL-Version", strconv.FormatUint(st.Version, 10))
	h.Set("X-KRL-Generated-At", st.UpdatedAt.UTC().Format(time.RFC3339))
}

// groupKRL answers GET /groups/:id/ssh_certificates/krl: the group's
// revocations as an OpenSSH KRL (keystore.GroupKRL says what it holds).
// One version is the same bytes on every node: its krl_version and
// generated_date are the version's and the time of the change that made
// it, and the ETag names it, so a timer's If-None-Match costs one row
// read.
func (a *API) groupKRL(w http.ResponseWriter, r *http.Request) error {
	g, err := a.fleetGroup(r)
	if err != nil {
		return err
	}
	st, err := a.store.GroupKRLState(r.Context(), g.ID)
	if err != nil {
		return err
	}
	return a.serveKRL(w, r, st, "revoked_keys.krl", func() (*krl.KRL, keystore.KRLState, error) {
		return a.store.GroupKRL(r.Context(), g.ID)
	})
}

// serveKRL answers a KRL whose current state is st: 304 when the client's
// If-None-Match names it, else the bytes of that version (from the cache,
// or built), as an attachment called filename.
func (a *API) serveKRL(w http.ResponseWriter, r *http.Request, st keystore.KRLState, filename string,
	build func() (*krl.KRL, keystore.KRLState, error)) error {
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, krlETag(st)) {
		setKRLHeaders(w, st)
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	data, ok := a.krls.get(st)
	if !ok {
		k, built, err := build()
		if err != nil {
			return err
		}
		if data, err = k.Marshal(); err != nil {
			return err
		}
		st = built
		a.krls.put(st, data)
	}
	setKRLHeaders(w, st)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+filename+`"`)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
	return nil
}

// krlCache keeps the last KRL built for a few groups, by version: a
// version's bytes never change, and building one with 100,000 revocations
// takes a fifth of a second (docs/performance.md).
type krlCache struct {
	mu sync.Mutex
	m  map[int64]cachedKRL
}

type cachedKRL struct {
	st   keystore.KRLState
	data []byte
}

const krlCacheGroups = 16

func (c *krlCache) get(st keystore.KRLState) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[st.GroupID]
	if !ok || e.st.Version != st.Version || !e.st.UpdatedAt.Equal(st.UpdatedAt) {
		return nil, false
	}
	return e.data, true
}

func (c *krlCache) put(st keystore.KRLState, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[int64]cachedKRL{}
	}
	if _, ok := c.m[st.GroupID]; !ok && len(c.m) >= krlCacheGroups {
		for id := range c.m { // evict one at random
			delete(c.m, id)
			break
		}
	}
	c.m[st.GroupID] = cachedKRL{st, data}
}

// trustedUserCAKeys answers GET /groups/:id/ssh_certificates/trusted_user_ca_keys:
// every CA key the group holds, one authorized_keys line each with a
// comment naming the group and the CA, as sshd's TrustedUserCAKeys reads
// them. A group without CAs is an empty file (no certificate logs in).
// The ETag is a digest of the text; X-KRL-Version names the KRL that
// goes with it.
func (a *API) trustedUserCAKeys(w http.ResponseWriter, r *http.Request) error {
	g, err := a.fleetGroup(r)
	if err != nil {
		return err
	}
	cas, st, err := a.store.GroupCAKeys(r.Context(), g.ID)
	if err != nil {
		return err
	}
	// The KRL version of the same snapshot: keygate fleet-sync installs a
	// CA file and a KRL only when they name one version.
	w.Header().Set("X-KRL-Version", strconv.FormatUint(st.Version, 10))
	var b strings.Builder
	for _, c := range cas {
		fmt.Fprintf(&b, "%s keygate %s CA %d: %s\n", c.Key, g.FullPath, c.ID, oneLine(c.Title))
	}
	sum := sha256.Sum256([]byte(b.String()))
	etag := `"cas-` + hex.EncodeToString(sum[:12]) + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache")
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(b.String()))
	return nil
}

// oneLine keeps a comment on its line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == 0x2028 || r == 0x2029 || r == 0x85 {
			return ' '
		}
		return r
	}, s)
}

// sshPrincipals answers GET /groups/:id/ssh_certificates/principals: the
// usernames of the group's active effective members (inherited ones
// included) at min_access_level or more (default 30, developer) who are
// enterprise users of the group's top-level group, one a line — with
// username=NAME only that user's line, or nothing. It is what sshd's
// AuthorizedPrincipalsCommand prints for a local account (%u), so a server
// admits a certificate for that account only when it names the user as a
// principal and the user is such a member.
//
// The enterprise rule is keygate's own for certificates (decideCert): a
// group CA vouches only for the users an admin made enterprise users of its
// group. Membership alone is not enough: any owner can add any user (root,
// another group's people) as a member without their consent, register a CA
// of their own and sign a certificate naming them. Membership is not
// public: owners and maintainers of the group (admins everywhere).
func (a *API) sshPrincipals(w http.ResponseWriter, r *http.Request) error {
	g, level, err := a.visibleGroup(r)
	if err != nil {
		return err
	}
	if level < keystore.Maintainer {
		return errForbidden
	}
	p, err := readParams(r)
	if err != nil {
		return err
	}
	min := keystore.Developer
	if v, ok, err := p.intVal("min_access_level"); err != nil {
		return err
	} else if ok {
		if !keystore.ValidAccessLevel(v) {
			return badRequest("min_access_level", "must be one of 10, 20, 30, 40, 50")
		}
		min = v
	}
	chain, err := a.store.Ancestors(r.Context(), g)
	if err != nil {
		return err
	}
	top := chain[len(chain)-1]
	var names []string
	eligible := func(m *keystore.Member) bool { return m.AccessLevel >= min && m.User.Active() }
	if name, ok := p.str("username"); ok {
		u, err := a.store.UserByUsername(r.Context(), name)
		switch {
		case errors.Is(err, keystore.ErrNotFound):
		case err != nil:
			return err
		case u.EnterpriseGroupID == nil || *u.EnterpriseGroupID != top.ID:
			// Not an enterprise user of the group: no line, as for a
			// user who is no member.
		default:
			m, err := a.store.EffectiveMember(r.Context(), g, u.ID)
			if err != nil && !errors.Is(err, keystore.ErrNotFound) {
				return err
			}
			if err == nil && eligible(m) {
				names = append(names, m.User.Username)
			}
		}
	} else {
		for page := 1; ; page++ {
			ms, _, err := a.store.ListEffectiveMembers(r.Context(), g, keystore.MemberFilter{EnterpriseGroupID: top.ID},
				keystore.Page{Page: page, PerPage: 100})
			if err != nil {
				return err
			}
			for _, m := range ms {
				if eligible(m) {
					names = append(names, m.User.Username)
				}
			}
			if len(ms) < 100 {
				break
			}
		}
		slices.Sort(names)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	for _, n := range names {
		_, _ = w.Write([]byte(n + "\n"))
	}
	return nil
}
