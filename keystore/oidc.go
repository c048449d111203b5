package keystore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// OpenID Connect issuers that admins trust, and the trust rules by which a
// project's maintainers let CI jobs of such an issuer get certificates.

// Username claims of an issuer.
const (
	UsernameClaimEmail             = "email" // requires email_verified
	UsernameClaimPreferredUsername = "preferred_username"
)

// OIDCIssuer is an OpenID Connect provider an admin trusts.
type OIDCIssuer struct {
	ID     int64
	Issuer string // the exact "iss" of its tokens; discovery is under it
	// ClientID is the audience of people's ID tokens ("": people's tokens
	// from this issuer are not accepted, CI jobs' may be, per trust rule).
	ClientID string
	// UsernameClaim maps a person's token to a keygate user: email (with
	// email_verified true) or preferred_username (a username).
	UsernameClaim string
	// RequiredClaims must all be in a person's token with these values.
	RequiredClaims map[string]string
	CreatedAt      time.Time
}

// OIDCIssuerInput describes an issuer to trust.
type OIDCIssuerInput struct {
	Issuer         string
	ClientID       string
	UsernameClaim  string
	RequiredClaims map[string]string
}

const oidcCols = `id, issuer, client_id, username_claim, required_claims, created_at`

func scanOIDCIssuer(row rowScanner) (*OIDCIssuer, error) {
	var o OIDCIssuer
	var claims string
	var created int64
	if err := row.Scan(&o.ID, &o.Issuer, &o.ClientID, &o.UsernameClaim, &claims, &created); err != nil {
		return nil, err
	}
	_ = json.Unmarshal([]byte(claims), &o.RequiredClaims)
	if o.RequiredClaims == nil {
		o.RequiredClaims = map[string]string{}
	}
	o.CreatedAt = fromMS(created)
	return &o, nil
}

// ValidateIssuerURL checks an issuer URL: https, or http to a loopback
// address (a provider on the same host); no query, fragment or user info.
func ValidateIssuerURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || len(v) > 500 {
		return errors.New("must be an absolute https URL without query, fragment or user info")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return errors.New("must be https (http only for a loopback provider)")
	}
	return errors.New("must be an absolute https URL")
}

// validateClaims checks a claims object: 1 to 32 names, each 1-128
// characters, values up to 1000.
func validateClaims(p problems, field string, claims map[string]string, required bool) {
	if required && len(claims) == 0 {
		p.add(field, "must name at least one claim (a rule without claims would let every token of the issuer in)")
	}
	if len(claims) > 32 {
		p.add(field, "may hold at most 32 claims")
	}
	for k, v := range claims {
		if k == "" || len(k) > 128 || !utf8.ValidString(k) || len(v) > 1000 || !utf8.ValidString(v) {
			p.add(field, "claim names are 1 to 128 characters and values at most 1000")
			return
		}
	}
}

// ClaimString is a token claim's value as trust rules and required claims
// compare it: strings as they are, booleans as true/false, numbers in
// their shortest decimal form; anything else does not compare.
func ClaimString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case json.Number:
		return x.String(), true
	}
	return "", false
}

// CreateOIDCIssuer trusts an OpenID Connect issuer (admins).
func (s *Store) CreateOIDCIssuer(ctx context.Context, a Actor, in OIDCIssuerInput) (*OIDCIssuer, error) {
	p := problems{}
	in.Issuer = strings.TrimSpace(in.Issuer)
	in.ClientID = strings.TrimSpace(in.ClientID)
	if err := ValidateIssuerURL(in.Issuer); err != nil {
		p.add("issuer", err.Error())
	}
	if len(in.ClientID) > 255 {
		p.add("client_id", "is too long (maximum is 255 characters)")
	}
	if in.UsernameClaim == "" {
		in.UsernameClaim = UsernameClaimEmail
	}
	if in.UsernameClaim != UsernameClaimEmail && in.UsernameClaim != UsernameClaimPreferredUsername {
		p.add("username_claim", "must be email or preferred_username")
	}
	if in.RequiredClaims == nil {
		in.RequiredClaims = map[string]string{}
	}
	validateClaims(p, "required_claims", in.RequiredClaims, false)
	if err := p.err(); err != nil {
		return nil, err
	}
	claims, _ := json.Marshal(in.RequiredClaims)
	o := &OIDCIssuer{Issuer: in.Issuer, ClientID: in.ClientID, UsernameClaim: in.UsernameClaim, RequiredClaims: in.RequiredClaims}
	err := s.writeTx(ctx, a, false, func(t *tx) error {
		var one int
		err := t.queryRow(ctx, `SELECT 1 FROM oidc_issuers WHERE issuer = ?`, o.Issuer).Scan(&one)
		if err == nil {
			return invalid("issuer", "has already been taken")
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		o.CreatedAt = t.now
		if o.ID, err = t.insert(ctx, `INSERT INTO oidc_issuers (issuer, client_id, username_claim, required_claims, created_at) VALUES (?, ?, ?, ?, ?)`,
			o.Issuer, o.ClientID, o.UsernameClaim, string(claims), ms(t.now)); err != nil {
			return err
		}
		return t.audit(ctx, "oidc_issuer_created", "oidc_issuer", o.ID, map[string]any{
			"issuer": o.Issuer, "client_id": o.ClientID, "username_claim": o.UsernameClaim, "required_claims": o.RequiredClaims})
	})
	if err != nil {
		return nil, err
	}
	return o, nil
}

// OIDCIssuer returns a trusted issuer by id.
func (s *Store) OIDCIssuer(ctx context.Context, id int64) (*OIDCIssuer, error) {
	o, err := scanOIDCIssuer(s.queryRow(ctx, `SELECT `+oidcCols+` FROM oidc_issuers WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("OIDC Issuer")
	}
	return o, err
}

// OIDCIssuerByURL returns the trusted issuer whose tokens carry iss.
func (s *Store) OIDCIssuerByURL(ctx context.Context, iss string) (*OIDCIssuer, error) {
	o, err := scanOIDCIssuer(s.queryRow(ctx, `SELECT `+oidcCols+` FROM oidc_issuers WHERE issuer = ?`, iss))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("OIDC Issuer")
	}
	return o, err
}

// ListOIDCIssuers lists trusted issuers by id.
func (s *Store) ListOIDCIssuers(ctx context.Context, pg Page) ([]*OIDCIssuer, int, error) {
	return listPage(ctx, s, oidcCols, `oidc_issuers WHERE 1=1`, nil, "id", pg, scanOIDCIssuer)
}

// DeleteOIDCIssuer stops trusting an issuer; the trust rules naming it go
// with it. Certificates already issued stay valid until they expire or
// are revoked.
func (s *Store) DeleteOIDCIssuer(ctx context.Context, a Actor, id int64) error {
	return s.writeTx(ctx, a, false, func(t *tx) error {
		o, err := scanOIDCIssuer(t.queryRow(ctx, `SELECT `+oidcCols+` FROM oidc_issuers WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("OIDC Issuer")
		} else if err != nil {
			return err
		}
		var rules int
		if err := t.queryRow(ctx, `SELECT COUNT(*) FROM ssh_certificate_trust_rules WHERE issuer_id = ?`, id).Scan(&rules); err != nil {
			return err
		}
		if _, err := t.exec(ctx, `DELETE FROM ssh_certificate_trust_rules WHERE issuer_id = ?`, id); err != nil {
			return err
		}
		if _, err := t.exec(ctx, `DELETE FROM oidc_issuers WHERE id = ?`, id); err != nil {
			return err
		}
		return t.audit(ctx, "oidc_issuer_deleted", "oidc_issuer", id, map[string]any{"issuer": o.Issuer, "trust_rules_deleted": rules})
	})
}

// Trust rules.

// Default and largest max_ttl of a trust rule.
const (
	DefaultJobCertTTL = 15 * time.Minute
	MaxJobCertTTL     = time.Hour
)

// TrustRule lets CI jobs whose ID token (from Issuer, for Audience, with
// every one of Claims) get a certificate for a project.
type TrustRule struct {
	ID        int64
	ProjectID int64
	IssuerID  int64
	Issuer    string
	Audience  string
	Claims    map[string]string
	Access    string // AccessRead or AccessWrite
	MaxTTL    time.Duration
	CreatedBy *int64
	CreatedAt time.Time
}

// TrustRuleInput describes a trust rule.
type TrustRuleInput struct {
	Issuer   string // the issuer URL, one an admin trusts
	Audience string
	Claims   map[string]string
	Access   string
	MaxTTL   time.Duration // 0: DefaultJobCertTTL
}

const trustCols = `r.id, r.project_id, r.issuer_id, o.issuer, r.audience, r.claims, r.access, r.max_ttl, r.created_by, r.created_at`

const trustFrom = `ssh_certificate_trust_rules r JOIN oidc_issuers o ON o.id = r.issuer_id`

func scanTrustRule(row rowScanner) (*TrustRule, error) {
	var r TrustRule
	var claims string
	var maxTTL, created int64
	var by sql.NullInt64
	if err := row.Scan(&r.ID, &r.ProjectID, &r.IssuerID, &r.Issuer, &r.Audience, &claims, &r.Access, &maxTTL, &by, &created); err != nil {
		return nil, err
	}
	_ = json.Unmarshal([]byte(claims), &r.Claims)
	if r.Claims == nil {
		r.Claims = map[string]string{}
	}
	r.MaxTTL = time.Duration(maxTTL) * time.Second
	r.CreatedBy = nullID(by)
	r.CreatedAt = fromMS(created)
	return &r, nil
}

// CreateTrustRule adds a trust rule to a project (its maintainers).
func (s *Store) CreateTrustRule(ctx context.Context, a Actor, projectID int64, in TrustRuleInput) (*TrustRule, error) {
	p := problems{}
	in.Issuer, in.Audience = strings.TrimSpace(in.Issuer), strings.TrimSpace(in.Audience)
	if in.Audience == "" || len(in.Audience) > 255 {
		p.add("audience", "must be 1 to 255 characters (the aud of the job's ID token)")
	}
	validateClaims(p, "claims", in.Claims, true)
	if in.Access != AccessRead && in.Access != AccessWrite {
		p.add("access", "must be read or write")
	}
	if in.MaxTTL == 0 {
		in.MaxTTL = DefaultJobCertTTL
	}
	if in.MaxTTL < MinCertTTL || in.MaxTTL > MaxJobCertTTL || in.MaxTTL%time.Second != 0 {
		p.add("max_ttl", fmt.Sprintf("must be a whole number of seconds from %d to %d", int(MinCertTTL/time.Second), int(MaxJobCertTTL/time.Second)))
	}
	iss, err := s.OIDCIssuerByURL(ctx, in.Issuer)
	if errors.Is(err, ErrNotFound) {
		p.add("issuer", "is not an OpenID Connect issuer an administrator trusts (POST /admin/oidc_issuers)")
	} else if err != nil {
		return nil, err
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	claims, _ := json.Marshal(in.Claims)
	r := &TrustRule{ProjectID: projectID, IssuerID: iss.ID, Issuer: iss.Issuer, Audience: in.Audience, Claims: in.Claims,
		Access: in.Access, MaxTTL: in.MaxTTL}
	if a.UserID != 0 {
		r.CreatedBy = &a.UserID
	}
	err = s.writeTx(ctx, a, false, func(t *tx) error {
		if err := t.mustExist(ctx, "projects", projectID, "Project"); err != nil {
			return err
		}
		if err := t.mustExist(ctx, "oidc_issuers", iss.ID, "OIDC Issuer"); err != nil {
			return err
		}
		r.CreatedAt = t.now
		var err error
		if r.ID, err = t.insert(ctx, `INSERT INTO ssh_certificate_trust_rules (project_id, issuer_id, audience, claims, access, max_ttl, created_by, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, projectID, iss.ID, r.Audience, string(claims), r.Access, int64(r.MaxTTL/time.Second), r.CreatedBy, ms(t.now)); err != nil {
			return err
		}
		return t.audit(ctx, "ssh_certificate_trust_rule_created", "project", projectID, map[string]any{
			"trust_rule_id": r.ID, "issuer": r.Issuer, "audience": r.Audience, "claims": r.Claims, "access": r.Access,
			"max_ttl": int64(r.MaxTTL / time.Second)})
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// ListTrustRules lists a project's trust rules (projectID 0: every
// project's under group groupID and its subgroups), by id.
func (s *Store) ListTrustRules(ctx context.Context, projectID int64, group *Group, pg Page) ([]*TrustRule, int, error) {
	if projectID != 0 {
		return listPage(ctx, s, trustCols, trustFrom+` WHERE r.project_id = ?`, []any{projectID}, "r.id", pg, scanTrustRule)
	}
	return listPage(ctx, s, trustCols, trustFrom+` JOIN projects p ON p.id = r.project_id JOIN groups g ON g.id = p.group_id
		WHERE (g.id = ? OR substr(g.full_path, 1, ?) = ?)`, []any{group.ID, len(group.FullPath) + 1, group.FullPath + "/"},
		"r.id", pg, scanTrustRule)
}

// TrustRulesFor lists a project's rules for one issuer.
func (s *Store) TrustRulesFor(ctx context.Context, projectID, issuerID int64) ([]*TrustRule, error) {
	rows, err := s.query(ctx, `SELECT `+trustCols+` FROM `+trustFrom+` WHERE r.project_id = ? AND r.issuer_id = ? ORDER BY r.id`, projectID, issuerID)
	return scanRows(rows, err, scanTrustRule)
}

// DeleteTrustRule removes a project's trust rule. Certificates it let CI
// jobs get stay valid until they expire (at most an hour) or are revoked.
func (s *Store) DeleteTrustRule(ctx context.Context, a Actor, projectID, id int64) error {
	return s.writeTx(ctx, a, false, func(t *tx) error {
		if err := t.execOne(ctx, "Trust Rule", `DELETE FROM ssh_certificate_trust_rules WHERE id = ? AND project_id = ?`, id, projectID); err != nil {
			return err
		}
		return t.audit(ctx, "ssh_certificate_trust_rule_deleted", "project", projectID, map[string]any{"trust_rule_id": id})
	})
}

// RuleMismatch says how a token missed a trust rule: the first claim (in
// name order) whose value differs or is missing.
type RuleMismatch struct {
	Rule    *TrustRule
	Claim   string
	Got     string // the token's value ("" and Missing when absent)
	Missing bool
	Matched int // how many of the rule's claims matched
}

// MatchTrustRules returns the first rule every claim of which the token's
// claims match, or, when none does, how the closest one (most claims
// matched; the lowest id on a tie) missed.
func MatchTrustRules(rules []*TrustRule, claims map[string]any) (*TrustRule, *RuleMismatch) {
	var best *RuleMismatch
	for _, r := range rules {
		names := make([]string, 0, len(r.Claims))
		for k := range r.Claims {
			names = append(names, k)
		}
		sort.Strings(names)
		var miss *RuleMismatch
		matched := 0
		for _, k := range names {
			v, present := claims[k]
			got, ok := ClaimString(v)
			if present && ok && got == r.Claims[k] {
				matched++
				continue
			}
			if miss == nil {
				miss = &RuleMismatch{Rule: r, Claim: k, Got: got, Missing: !present}
			}
		}
		if miss == nil {
			return r, nil
		}
		miss.Matched = matched
		if best == nil || matched > best.Matched {
			best = miss
		}
	}
	return nil, best
}

// UserByEmail returns a user by e-mail address (case-insensitive, as
// e-mails are unique).
func (s *Store) UserByEmail(ctx context.Context, email string) (*User, error) {
	u, err := scanUser(s.queryRow(ctx, `SELECT `+userCols+` FROM users WHERE lower(email) = ?`, asciiLower(email)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("User")
	}
	return u, err
}
