package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Certificates from identity: people exchange a personal access token or
// an ID token for a short-lived certificate of their enterprise group's
// managed CA; CI jobs exchange their ID token, matched against a project's
// trust rules, for a certificate that works like a deploy key of the
// project.

type idTokenKeyT struct{}

var idTokenKey idTokenKeyT

// withIDToken keeps a bearer token that is no personal access token but
// has a JWT's shape, for the routes that take ID tokens.
func withIDToken(ctx context.Context, raw string) context.Context {
	return context.WithValue(ctx, idTokenKey, raw)
}

// takesIDToken reports whether r is for one of the routes that take an
// OpenID Connect ID token: POST /api/v4/user/ssh_certificates and POST
// /api/v4/projects/:id/ssh_certificates.
func takesIDToken(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	p := strings.TrimRight(r.URL.Path, "/")
	return p == "/api/v4/user/ssh_certificates" ||
		(strings.HasPrefix(p, "/api/v4/projects/") && strings.HasSuffix(p, "/ssh_certificates"))
}

func bearerIDToken(r *http.Request) string {
	v, _ := r.Context().Value(idTokenKey).(string)
	return v
}

type issuedJSON struct {
	ID             int64          `json:"id"`
	Certificate    string         `json:"certificate,omitempty"`
	Serial         uint64         `json:"serial"`
	KeyID          string         `json:"key_id"`
	Principals     []string       `json:"principals"`
	Extensions     []string       `json:"extensions"`
	ValidAfter     string         `json:"valid_after"`
	ValidBefore    string         `json:"valid_before"`
	CAID           int64          `json:"ca_id"`
	GroupID        int64          `json:"group_id"`
	KeyFingerprint string         `json:"key_fingerprint"`
	UserID         *int64         `json:"user_id"`
	ProjectID      *int64         `json:"project_id,omitempty"`
	Access         string         `json:"access,omitempty"`
	RequestedBy    *int64         `json:"requested_by"`
	Source         string         `json:"source"`
	Issuer         string         `json:"issuer,omitempty"`
	Subject        string         `json:"subject,omitempty"`
	Claims         map[string]any `json:"claims,omitempty"`
	TrustRuleID    *int64         `json:"trust_rule_id,omitempty"`
	CreatedAt      string         `json:"created_at"`
}

func renderIssued(c *keystore.IssuedCertificate) issuedJSON {
	j := issuedJSON{ID: c.ID, Certificate: c.Certificate, Serial: c.Serial, KeyID: c.KeyID, Principals: c.Principals,
		Extensions: c.Extensions, ValidAfter: fmtTime(c.ValidAfter), ValidBefore: fmtTime(c.ValidBefore), CAID: c.CAID,
		GroupID: c.GroupID, KeyFingerprint: c.KeyFingerprint, UserID: c.UserID, ProjectID: c.ProjectID, Access: c.Access,
		RequestedBy: c.RequestedBy, Source: c.Source, Issuer: c.Issuer, Subject: c.Subject, TrustRuleID: c.TrustRuleID,
		CreatedAt: fmtTime(c.CreatedAt)}
	if len(c.Claims) > 0 {
		j.Claims = c.Claims
	}
	return j
}

// ttlParam reads ttl (seconds; absent: 0, the maximum).
func ttlParam(p params) (time.Duration, error) {
	v, ok := p.str("ttl")
	if !ok || v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || n > 1<<31 {
		return 0, badRequest("ttl", "must be a positive number of seconds")
	}
	return time.Duration(n) * time.Second, nil
}

// issueMyCertificate is POST /user/ssh_certificates: a certificate for the
// caller's key, from their enterprise group's managed CA. The caller is
// the personal access token's user, or the user an ID token names.
func (a *API) issueMyCertificate(w http.ResponseWriter, r *http.Request) error {
	u := me(r)
	req := keystore.UserCertRequest{GitUser: a.gitUser, Source: keystore.CertSourceToken}
	ac := actor(r)
	if u == nil {
		raw := bearerIDToken(r)
		if raw == "" {
			return a.refuseUnauthenticated(r, errUnauthorized)
		}
		var tok *idToken
		var err error
		if u, tok, err = a.personFromIDToken(r.Context(), raw); err != nil {
			var he *httpError
			if errors.As(err, &he) && he.Code == http.StatusUnauthorized {
				return a.refuseUnauthenticated(r, err)
			}
			return err
		}
		req.Source, req.Issuer, req.Subject = keystore.CertSourceOIDC, tok.issuer.Issuer, tok.token.Subject
		ac = keystore.Actor{UserID: u.ID, RemoteIP: remoteIP(r)}
	}
	p, err := readParams(r, "key")
	if err != nil {
		return err
	}
	key, _ := p.str("key")
	req.UserID, req.PublicKey, req.RequestedBy = u.ID, key, ac.UserID
	if ac.SudoBy != 0 {
		req.RequestedBy = ac.SudoBy // an admin acting as the user asked
	}
	if gid, err := p.int64Ptr("group_id"); err != nil {
		return err
	} else if gid != nil {
		req.GroupID = *gid
	}
	if cid, err := p.int64Ptr("ca_id"); err != nil {
		return err
	} else if cid != nil {
		req.CAID = *cid
	}
	if req.TTL, err = ttlParam(p); err != nil {
		return err
	}
	c, err := a.store.IssueUserCertificate(r.Context(), ac, req)
	if err != nil {
		return err
	}
	a.log.Info("ssh certificate issued", "user_id", u.ID, "ca_id", c.CAID, "serial", c.Serial, "key_fingerprint", c.KeyFingerprint,
		"source", c.Source, "valid_before", c.ValidBefore)
	return respond(w, http.StatusCreated, renderIssued(c))
}

// refuseUnauthenticated answers a failed authentication, rate limited per
// address like a bad personal access token.
func (a *API) refuseUnauthenticated(r *http.Request, err error) error {
	if !a.failed.allow(remoteIP(r)) {
		return errStatus(http.StatusTooManyRequests, "429 Too Many Requests - too many failed authentications from your address")
	}
	return err
}

// listMyCertificates is GET /user/ssh_certificates: what was issued to the
// caller, newest first.
func (a *API) listMyCertificates(w http.ResponseWriter, r *http.Request) error {
	u := me(r)
	return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.IssuedCertificate, int, error) {
		return a.store.ListIssued(r.Context(), keystore.IssuedFilter{UserID: u.ID}, pg)
	}, renderIssued)
}

// listIssued is GET /groups/:id/ssh_certificates/:cert_id/issued (owners):
// every certificate the CA issued, newest first.
func (a *API) listIssued(w http.ResponseWriter, r *http.Request) error {
	g, id, err := a.inGroup(r, a.caGroup, "cert_id", "SSH Certificate")
	if err != nil {
		return err
	}
	if _, err := a.store.CA(r.Context(), g.ID, id); err != nil {
		return err
	}
	return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.IssuedCertificate, int, error) {
		return a.store.ListIssued(r.Context(), keystore.IssuedFilter{CAID: id}, pg)
	}, renderIssued)
}

// Trusted issuers (admins).

type oidcIssuerJSON struct {
	ID             int64             `json:"id"`
	Issuer         string            `json:"issuer"`
	ClientID       string            `json:"client_id"`
	UsernameClaim  string            `json:"username_claim"`
	RequiredClaims map[string]string `json:"required_claims"`
	CreatedAt      string            `json:"created_at"`
}

func renderOIDCIssuer(o *keystore.OIDCIssuer) oidcIssuerJSON {
	return oidcIssuerJSON{ID: o.ID, Issuer: o.Issuer, ClientID: o.ClientID, UsernameClaim: o.UsernameClaim,
		RequiredClaims: o.RequiredClaims, CreatedAt: fmtTime(o.CreatedAt)}
}

func (a *API) createOIDCIssuer(w http.ResponseWriter, r *http.Request) error {
	p, err := readParams(r, "issuer")
	if err != nil {
		return err
	}
	iss, _ := p.str("issuer")
	cid, _ := p.str("client_id")
	claim, _ := p.str("username_claim")
	o, err := a.store.CreateOIDCIssuer(r.Context(), actor(r), keystore.OIDCIssuerInput{Issuer: iss, ClientID: cid,
		UsernameClaim: claim, RequiredClaims: p.object("required_claims")})
	if err != nil {
		return err
	}
	a.oidc.forget(o.Issuer)
	return respond(w, http.StatusCreated, renderOIDCIssuer(o))
}

func (a *API) listOIDCIssuers(w http.ResponseWriter, r *http.Request) error {
	return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.OIDCIssuer, int, error) {
		return a.store.ListOIDCIssuers(r.Context(), pg)
	}, renderOIDCIssuer)
}

func (a *API) getOIDCIssuer(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "issuer_id", "OIDC Issuer")
	if err != nil {
		return err
	}
	o, err := a.store.OIDCIssuer(r.Context(), id)
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, renderOIDCIssuer(o))
}

func (a *API) deleteOIDCIssuer(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "issuer_id", "OIDC Issuer")
	if err != nil {
		return err
	}
	o, err := a.store.OIDCIssuer(r.Context(), id)
	if err != nil {
		return err
	}
	a.oidc.forget(o.Issuer)
	return noContent(w, a.store.DeleteOIDCIssuer(r.Context(), actor(r), id))
}

// loginIssuers is GET /-/oidc_issuers (public): the issuers people may sign
// in with (those with a client_id), for `keygate login`.
func (a *API) loginIssuers(w http.ResponseWriter, r *http.Request) error {
	list, _, err := a.store.ListOIDCIssuers(r.Context(), keystore.Page{PerPage: -1})
	if err != nil {
		return err
	}
	type loginIssuer struct {
		Issuer   string `json:"issuer"`
		ClientID string `json:"client_id"`
	}
	out := []loginIssuer{}
	for _, o := range list {
		if o.ClientID != "" {
			out = append(out, loginIssuer{o.Issuer, o.ClientID})
		}
	}
	return respond(w, http.StatusOK, map[string]any{"issuers": out, "git_user": a.gitUser, "ssh_host": a.hostname, "ssh_port": a.sshPort})
}

// Trust rules (project maintainers; the group's owners list all).

type trustRuleJSON struct {
	ID        int64             `json:"id"`
	ProjectID int64             `json:"project_id"`
	Issuer    string            `json:"issuer"`
	Audience  string            `json:"audience"`
	Claims    map[string]string `json:"claims"`
	Access    string            `json:"access"`
	MaxTTL    int64             `json:"max_ttl"`
	CreatedBy *int64            `json:"created_by"`
	CreatedAt string            `json:"created_at"`
}

func renderTrustRule(t *keystore.TrustRule) trustRuleJSON {
	return trustRuleJSON{ID: t.ID, ProjectID: t.ProjectID, Issuer: t.Issuer, Audience: t.Audience, Claims: t.Claims,
		Access: t.Access, MaxTTL: int64(t.MaxTTL / time.Second), CreatedBy: t.CreatedBy, CreatedAt: fmtTime(t.CreatedAt)}
}

// maintainedProject is {id} for a caller with maintainer access or more.
func (a *API) maintainedProject(r *http.Request) (*keystore.Project, error) {
	p, level, err := a.projectAccess(r)
	if err != nil {
		return nil, err
	}
	if level < keystore.Maintainer {
		return nil, errForbidden
	}
	return p, nil
}

func (a *API) createTrustRule(w http.ResponseWriter, r *http.Request) error {
	proj, err := a.maintainedProject(r)
	if err != nil {
		return err
	}
	p, err := readParams(r, "issuer", "audience", "access")
	if err != nil {
		return err
	}
	iss, _ := p.str("issuer")
	aud, _ := p.str("audience")
	access, _ := p.str("access")
	in := keystore.TrustRuleInput{Issuer: iss, Audience: aud, Access: access, Claims: p.object("claims")}
	if n, ok, err := p.intVal("max_ttl"); err != nil {
		return err
	} else if ok {
		in.MaxTTL = time.Duration(n) * time.Second
		if n <= 0 || n > 1<<31 {
			in.MaxTTL = -1 // refused by the store
		}
	}
	rule, err := a.store.CreateTrustRule(r.Context(), actor(r), proj.ID, in)
	if err != nil {
		return err
	}
	return respond(w, http.StatusCreated, renderTrustRule(rule))
}

func (a *API) listTrustRules(w http.ResponseWriter, r *http.Request) error {
	proj, err := a.maintainedProject(r)
	if err != nil {
		return err
	}
	return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.TrustRule, int, error) {
		return a.store.ListTrustRules(r.Context(), proj.ID, nil, pg)
	}, renderTrustRule)
}

func (a *API) listGroupTrustRules(w http.ResponseWriter, r *http.Request) error {
	g, err := a.ownedGroup(r)
	if err != nil {
		return err
	}
	return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.TrustRule, int, error) {
		return a.store.ListTrustRules(r.Context(), 0, g, pg)
	}, renderTrustRule)
}

func (a *API) deleteTrustRule(w http.ResponseWriter, r *http.Request) error {
	proj, err := a.maintainedProject(r)
	if err != nil {
		return err
	}
	id, err := pathInt(r, "rule_id", "Trust Rule")
	if err != nil {
		return err
	}
	return noContent(w, a.store.DeleteTrustRule(r.Context(), actor(r), proj.ID, id))
}

// jobClaims are the claims that name a CI job (GitLab CI id_tokens,
// GitHub Actions), in the order a job certificate's key id lists them.
var jobClaims = []string{"project_path", "repository", "ref", "environment", "pipeline_id", "job_id",
	"run_id", "run_attempt", "workflow", "job_workflow_ref"}

// issueJobCertificate is POST /projects/:id/ssh_certificates with a CI
// job's ID token (Authorization: Bearer): a trust rule of the project whose
// issuer, audience and claims the token matches gives a certificate that
// reads (or pushes to) this project only, like a deploy key.
func (a *API) issueJobCertificate(w http.ResponseWriter, r *http.Request) error {
	raw := bearerIDToken(r)
	if raw == "" {
		if me(r) != nil {
			return errStatus(http.StatusUnauthorized, "401 Unauthorized - this route takes a CI job's ID token (Authorization: Bearer), not a personal access token; people use POST /api/v4/user/ssh_certificates")
		}
		return a.refuseUnauthenticated(r, errUnauthorized)
	}
	tok, err := a.verifyIDToken(r.Context(), raw, "")
	if err != nil {
		var he *httpError
		if errors.As(err, &he) && he.Code == http.StatusUnauthorized {
			return a.refuseUnauthenticated(r, err)
		}
		return err
	}
	proj, err := a.projectByParam(r)
	if err != nil {
		return err
	}
	rules, err := a.store.TrustRulesFor(r.Context(), proj.ID, tok.issuer.ID)
	if err != nil {
		return err
	}
	if len(rules) == 0 {
		// No rule for this issuer: the project's existence is not for
		// every holder of the issuer's tokens to learn.
		return notFound("Project")
	}
	var forAudience []*keystore.TrustRule
	for _, rule := range rules {
		if slices.Contains(tok.audience, rule.Audience) {
			forAudience = append(forAudience, rule)
		}
	}
	if len(forAudience) == 0 {
		return a.refuseUnauthenticated(r, unauthorizedToken("the ID token is for audience %s, which no trust rule of this project names for issuer %q",
			audienceOf(raw), tok.issuer.Issuer))
	}
	rule, miss := keystore.MatchTrustRules(forAudience, tok.claims)
	if rule == nil {
		got := fmt.Sprintf("the token's is %q", truncate(miss.Got, 200))
		if miss.Missing {
			got = "the token has no such claim"
		}
		return errStatus(http.StatusForbidden, fmt.Sprintf("403 Forbidden - no trust rule admits this token: rule %d came closest (%d of %d claims matched); claim %q differs: %s",
			miss.Rule.ID, miss.Matched, len(miss.Rule.Claims), miss.Claim, got))
	}
	p, err := readParams(r, "key")
	if err != nil {
		return err
	}
	key, _ := p.str("key")
	ttl, err := ttlParam(p)
	if err != nil {
		return err
	}
	claims := map[string]any{}
	names := append([]string{}, jobClaims...)
	for k := range rule.Claims {
		names = append(names, k)
	}
	for _, k := range names {
		if v, ok := tok.claims[k]; ok {
			if s, ok := keystore.ClaimString(v); ok {
				claims[k] = truncate(s, 500)
			}
		}
	}
	c, err := a.store.IssueJobCertificate(r.Context(), keystore.Actor{RemoteIP: remoteIP(r)}, keystore.JobCertRequest{
		Rule: rule, PublicKey: key, TTL: ttl, GitUser: a.gitUser, Issuer: tok.issuer.Issuer, Subject: tok.token.Subject,
		KeyID: jobKeyID(tok.issuer.Issuer, tok.token.Subject, claims), Claims: claims,
	})
	if err != nil {
		return err
	}
	a.log.Info("ssh certificate issued to a CI job", "project_id", proj.ID, "trust_rule_id", rule.ID, "ca_id", c.CAID,
		"serial", c.Serial, "key_id", c.KeyID, "access", c.Access, "valid_before", c.ValidBefore)
	return respond(w, http.StatusCreated, renderIssued(c))
}

// jobKeyID names a CI job in its certificate: issuer, subject and the
// job and pipeline claims.
func jobKeyID(iss, sub string, claims map[string]any) string {
	parts := []string{"ci", "iss=" + iss, "sub=" + sub}
	seen := map[string]bool{}
	for _, k := range jobClaims {
		if v, ok := claims[k]; ok {
			parts = append(parts, k+"="+fmt.Sprint(v))
			seen[k] = true
		}
	}
	var rest []string
	for k := range claims {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		parts = append(parts, k+"="+fmt.Sprint(claims[k]))
	}
	return strings.Join(parts, " ")
}

// projectByParam loads {id} (numeric or path) with no access check (the
// caller is a CI job, authorized by a trust rule).
func (a *API) projectByParam(r *http.Request) (*keystore.Project, error) {
	v := pathParam(r, "id")
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return a.store.Project(r.Context(), n)
	}
	if v == "" || len(v) > 2000 {
		return nil, notFound("Project")
	}
	return a.store.ProjectByPath(r.Context(), v)
}
