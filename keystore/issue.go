package keystore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// Issuance: managed CAs sign short-lived certificates for people (who
// authenticated with a personal access token or an OpenID Connect ID token)
// and for CI jobs (whose ID token matched a project's trust rule). Every
// certificate is recorded and audited; serials are random, unique per CA
// and never reused.

const (
	// DefaultCertMaxTTL is the instance-wide cap on people's certificates
	// (Config.CertMaxTTL).
	DefaultCertMaxTTL = 24 * time.Hour
	// DefaultGroupCertMaxTTL is a group's own maximum until an owner sets
	// ssh_certificate_max_ttl.
	DefaultGroupCertMaxTTL = 8 * time.Hour
	// MaxGroupCertTTL is the most a group's maximum may be set to.
	MaxGroupCertTTL = 30 * 24 * time.Hour
	// MinCertTTL is the shortest certificate keygate issues.
	MinCertTTL = time.Minute
	// CertBackdate starts every certificate this far in the past, for
	// clocks that disagree.
	CertBackdate = time.Minute

	// JobCertOption is the critical option keygate puts in a CI job's
	// certificate: "<project id>:<read|write>". keygate honours it only in
	// certificates of its own managed CAs; OpenSSH servers, which do not
	// know it, refuse such certificates (a CI certificate is for keygate's
	// git only).
	JobCertOption = "keygate-ci-project@keygate"

	// Sources of identity recorded with an issued certificate.
	CertSourceToken = "personal_access_token"
	CertSourceOIDC  = "oidc_id_token"
	CertSourceJob   = "ci_job_id_token"

	// Access of a CI job's certificate.
	AccessRead  = "read"
	AccessWrite = "write"
)

// IssuedCertificate is the record of one certificate a managed CA signed.
type IssuedCertificate struct {
	ID             int64
	CAID           int64
	GroupID        int64
	Serial         uint64
	KeyID          string
	KeyFingerprint string // "SHA256:…" of the certified public key
	Principals     []string
	Extensions     []string
	UserID         *int64 // a person's certificate
	ProjectID      *int64 // a CI job's certificate
	Access         string // a CI job's: read or write
	RequestedBy    *int64 // the user who asked (nil: a CI job)
	Source         string // CertSource*
	Issuer         string // the ID token's issuer, if any
	Subject        string // and subject
	Claims         map[string]any
	TrustRuleID    *int64
	ValidAfter     time.Time
	ValidBefore    time.Time
	CreatedAt      time.Time
	// Certificate is the OpenSSH certificate line; only set by the call
	// that issued it (it is not stored).
	Certificate string
}

const issuedCols = `id, ca_id, group_id, serial, key_id, key_fingerprint, principals, extensions, user_id, project_id, access,
	requested_by, source, issuer, subject, claims, trust_rule_id, valid_after, valid_before, created_at`

func scanIssued(row rowScanner) (*IssuedCertificate, error) {
	var c IssuedCertificate
	var serial, after, before, created int64
	var principals, extensions, claims string
	var user, project, by, rule sql.NullInt64
	if err := row.Scan(&c.ID, &c.CAID, &c.GroupID, &serial, &c.KeyID, &c.KeyFingerprint, &principals, &extensions,
		&user, &project, &c.Access, &by, &c.Source, &c.Issuer, &c.Subject, &claims, &rule, &after, &before, &created); err != nil {
		return nil, err
	}
	c.Serial = uint64(serial)
	c.Principals = splitList(principals)
	c.Extensions = splitList(extensions)
	c.UserID, c.ProjectID, c.RequestedBy, c.TrustRuleID = nullID(user), nullID(project), nullID(by), nullID(rule)
	_ = json.Unmarshal([]byte(claims), &c.Claims)
	if c.Claims == nil {
		c.Claims = map[string]any{}
	}
	c.ValidAfter, c.ValidBefore, c.CreatedAt = fromMS(after), fromMS(before), fromMS(created)
	return &c, nil
}

func nullID(v sql.NullInt64) *int64 {
	if !v.Valid {
		return nil
	}
	x := v.Int64
	return &x
}

func splitList(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}

// UserCertRequest asks a managed CA for a person's certificate.
type UserCertRequest struct {
	UserID int64
	// GroupID is the top-level group whose managed CA signs (0: the
	// user's enterprise group, the only one that may vouch for them).
	GroupID int64
	// CAID picks one of the group's managed CAs (0: the newest).
	CAID      int64
	PublicKey string
	// TTL is the validity asked for (0: the maximum); longer is cut to the
	// maximum, the smaller of the group's and the instance's.
	TTL time.Duration
	// GitUser is the git login name, a principal besides the username.
	GitUser string
	// RequestedBy is who asked (the user, or an admin acting with Sudo).
	RequestedBy int64
	Source      string // CertSourceToken or CertSourceOIDC
	Issuer      string // for CertSourceOIDC
	Subject     string
}

// IssueUserCertificate signs a certificate for a person with their
// enterprise group's managed CA, under this round's identity rules: only an
// active enterprise user of the group who is a member of it gets one; the
// key id is the username and the principals the username and the git user;
// the window starts a minute in the past and lasts at most the group's
// maximum; permit-port-forwarding only for a user with bastion rights in
// the group, and no other extension (no pty, agent or X11 forwarding).
func (s *Store) IssueUserCertificate(ctx context.Context, a Actor, req UserCertRequest) (*IssuedCertificate, error) {
	u, err := s.User(ctx, req.UserID)
	if err != nil {
		return nil, err
	}
	if !u.Active() {
		return nil, forbidden("your account is blocked")
	}
	if u.EnterpriseGroupID == nil {
		return nil, forbidden("no group may vouch for you: certificates are issued only to enterprise users of a group " +
			"(an administrator sets enterprise_group_id)")
	}
	groupID := *u.EnterpriseGroupID
	if req.GroupID != 0 && req.GroupID != groupID {
		return nil, forbidden(fmt.Sprintf("group %d may not vouch for you: you are an enterprise user of group %d only", req.GroupID, groupID))
	}
	g, err := s.Group(ctx, groupID)
	if err != nil {
		return nil, err
	}
	if m, err := s.Member(ctx, groupID, u.ID); errors.Is(err, ErrNotFound) || (err == nil && m == nil) {
		return nil, forbidden(fmt.Sprintf("you are not a member of group %s, whose certificate authority would vouch for you", g.FullPath))
	} else if err != nil {
		return nil, err
	}
	pk, err := ParseUserKey(req.PublicKey)
	if err != nil {
		return nil, err
	}
	maxTTL := min(g.SSHCertificateMaxTTL, s.certMaxTTL)
	ttl, err := certTTL(req.TTL, maxTTL)
	if err != nil {
		return nil, err
	}
	forward, err := s.hasBastionRights(ctx, u, g)
	if err != nil {
		return nil, err
	}
	ext := map[string]string{}
	if forward {
		ext["permit-port-forwarding"] = ""
	}
	principals := []string{u.Username}
	if gu := req.GitUser; gu != "" && !strings.EqualFold(gu, u.Username) {
		principals = append(principals, gu)
	}
	rec := &IssuedCertificate{
		GroupID: groupID, KeyID: u.Username, Principals: principals, UserID: &u.ID, Source: req.Source,
		Issuer: req.Issuer, Subject: req.Subject, Claims: map[string]any{},
	}
	if req.RequestedBy != 0 {
		rec.RequestedBy = &req.RequestedBy
	}
	return s.issue(ctx, a, req.CAID, rec, pk, ttl, ext, nil)
}

// JobCertRequest asks a managed CA for a CI job's certificate under a
// project's trust rule (the caller verified the job's ID token and matched
// the rule).
type JobCertRequest struct {
	Rule      *TrustRule
	PublicKey string
	TTL       time.Duration // 0: the rule's max_ttl
	GitUser   string
	Issuer    string
	Subject   string
	// KeyID names the job (issuer, subject, job and pipeline claims).
	KeyID string
	// Claims are the token's claims recorded with the certificate.
	Claims map[string]any
}

// IssueJobCertificate signs a CI job's certificate with the newest managed
// CA of the project's top-level group: it logs in as the git user only and
// reads (or pushes to) that one project, like a deploy key, with no
// extension (no forwarding, no pty).
func (s *Store) IssueJobCertificate(ctx context.Context, a Actor, req JobCertRequest) (*IssuedCertificate, error) {
	r := req.Rule
	p, err := s.Project(ctx, r.ProjectID)
	if err != nil {
		return nil, err
	}
	g, err := s.Group(ctx, p.GroupID)
	if err != nil {
		return nil, err
	}
	top := g.ID
	if chain, err := s.Ancestors(ctx, g); err != nil {
		return nil, err
	} else if len(chain) > 0 {
		top = chain[len(chain)-1].ID
	}
	pk, err := ParseUserKey(req.PublicKey)
	if err != nil {
		return nil, err
	}
	ttl, err := certTTL(req.TTL, r.MaxTTL)
	if err != nil {
		return nil, err
	}
	keyID := req.KeyID
	if len(keyID) > 1000 {
		keyID = keyID[:1000]
	}
	rec := &IssuedCertificate{
		GroupID: top, KeyID: keyID, Principals: []string{req.GitUser}, ProjectID: &r.ProjectID, Access: r.Access,
		Source: CertSourceJob, Issuer: req.Issuer, Subject: req.Subject, Claims: req.Claims, TrustRuleID: &r.ID,
	}
	crit := map[string]string{JobCertOption: strconv.FormatInt(r.ProjectID, 10) + ":" + r.Access}
	return s.issue(ctx, a, 0, rec, pk, ttl, map[string]string{}, crit)
}

// ParseJobCertOption parses the value of JobCertOption.
func ParseJobCertOption(v string) (projectID int64, write bool, ok bool) {
	id, access, found := strings.Cut(v, ":")
	if !found {
		return 0, false, false
	}
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n <= 0 || strconv.FormatInt(n, 10) != id {
		return 0, false, false
	}
	switch access {
	case AccessRead:
		return n, false, true
	case AccessWrite:
		return n, true, true
	}
	return 0, false, false
}

// certTTL applies the bounds: 0 is the maximum, longer is cut to it,
// shorter than MinCertTTL is refused.
func certTTL(want, maxTTL time.Duration) (time.Duration, error) {
	if want < 0 || (want > 0 && want < MinCertTTL) {
		return 0, invalid("ttl", fmt.Sprintf("must be at least %d seconds", int(MinCertTTL/time.Second)))
	}
	if want == 0 || want > maxTTL {
		return maxTTL, nil
	}
	return want, nil
}

// hasBastionRights reports whether u may forward through some enabled
// bastion target of top-level group g or its subgroups (their level there
// reaches the target's min_access_level).
func (s *Store) hasBastionRights(ctx context.Context, u *User, g *Group) (bool, error) {
	type tg struct {
		groupID int64
		min     int
	}
	var targets []tg
	err := s.forEachRowArgs(ctx, `SELECT t.group_id, t.min_access_level FROM bastion_targets t JOIN groups g ON g.id = t.group_id
		WHERE t.disabled_reason = '' AND (g.id = ? OR substr(g.full_path, 1, ?) = ?)`,
		[]any{g.ID, len(g.FullPath) + 1, g.FullPath + "/"}, func(sc func(...any) error) error {
			var t tg
			if err := sc(&t.groupID, &t.min); err != nil {
				return err
			}
			targets = append(targets, t)
			return nil
		})
	if err != nil {
		return false, err
	}
	for _, t := range targets {
		tgGroup, err := s.Group(ctx, t.groupID)
		if errors.Is(err, ErrNotFound) {
			continue
		} else if err != nil {
			return false, err
		}
		level, err := s.UserAccessLevel(ctx, u, tgGroup)
		if err != nil {
			return false, err
		}
		if level >= t.min {
			return true, nil
		}
	}
	return false, nil
}

// issue signs rec's certificate for pk with managed CA caID of rec's group
// (0: the newest), valid from a minute ago for ttl, records and audits it.
func (s *Store) issue(ctx context.Context, a Actor, caID int64, rec *IssuedCertificate, pk *ParsedKey, ttl time.Duration,
	ext, crit map[string]string) (*IssuedCertificate, error) {
	if s.caKey == nil {
		return nil, ErrNoCAKey
	}
	err := s.writeTx(ctx, a, false, func(t *tx) error {
		id := caID
		if id == 0 {
			var err error
			if id, err = t.newestManagedCA(ctx, rec.GroupID); err != nil {
				return err
			}
			if id == 0 {
				return &ConflictError{Msg: "the group has no managed SSH certificate authority: an owner creates one with " +
					"POST /groups/:id/ssh_certificates and generate=true"}
			}
		}
		signer, ca, err := t.caSigner(ctx, rec.GroupID, id)
		if err != nil {
			return err
		}
		serial, err := t.newSerial(ctx, ca.ID)
		if err != nil {
			return err
		}
		now := t.now.Truncate(time.Second)
		rec.CAID, rec.Serial = ca.ID, serial
		rec.ValidAfter, rec.ValidBefore = now.Add(-CertBackdate).UTC(), now.Add(ttl).UTC()
		rec.KeyFingerprint = pk.FingerprintSHA256
		rec.Extensions = sortedKeys(ext)
		cert := &gossh.Certificate{
			Key: pk.Public, Serial: serial, CertType: gossh.UserCert, KeyId: rec.KeyID,
			ValidPrincipals: rec.Principals,
			ValidAfter:      uint64(rec.ValidAfter.Unix()), ValidBefore: uint64(rec.ValidBefore.Unix()),
			Permissions: gossh.Permissions{CriticalOptions: crit, Extensions: ext},
		}
		if err := cert.SignCert(rand.Reader, signer); err != nil {
			return err
		}
		rec.Certificate = strings.TrimSpace(string(gossh.MarshalAuthorizedKey(cert)))
		claims, err := json.Marshal(rec.Claims)
		if err != nil {
			return err
		}
		rec.CreatedAt = t.now
		rec.ID, err = t.insert(ctx, `INSERT INTO issued_certificates (ca_id, group_id, serial, key_id, key_fingerprint, principals,
			extensions, user_id, project_id, access, requested_by, source, issuer, subject, claims, trust_rule_id,
			valid_after, valid_before, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			ca.ID, rec.GroupID, int64(serial), rec.KeyID, rec.KeyFingerprint, strings.Join(rec.Principals, ","),
			strings.Join(rec.Extensions, ","), rec.UserID, rec.ProjectID, rec.Access, rec.RequestedBy, rec.Source,
			rec.Issuer, rec.Subject, string(claims), rec.TrustRuleID, ms(rec.ValidAfter), ms(rec.ValidBefore), ms(t.now))
		if err != nil {
			return err
		}
		details := map[string]any{
			"ca_id": ca.ID, "group_id": rec.GroupID, "ca_fingerprint": ca.FingerprintSHA256,
			"serial": strconv.FormatUint(serial, 10), "key_id": rec.KeyID, "key_fingerprint": rec.KeyFingerprint,
			"principals": rec.Principals, "extensions": rec.Extensions, "source": rec.Source,
			"valid_after": rec.ValidAfter.Format(time.RFC3339), "valid_before": rec.ValidBefore.Format(time.RFC3339),
		}
		if rec.UserID != nil {
			details["user_id"] = *rec.UserID
		}
		if rec.ProjectID != nil {
			details["project_id"] = *rec.ProjectID
			details["access"] = rec.Access
			details["trust_rule_id"] = *rec.TrustRuleID
			details["claims"] = rec.Claims
		}
		if rec.Issuer != "" {
			details["issuer"], details["subject"] = rec.Issuer, rec.Subject
		}
		return t.audit(ctx, "ssh_certificate_issued", "issued_certificate", rec.ID, details)
	})
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// newSerial draws a random serial below 2^53 (exact as a JSON number) that
// CA caID never used.
func (t *tx) newSerial(ctx context.Context, caID int64) (uint64, error) {
	return t.newSerialIn(ctx, "issued_certificates", caID)
}

// newSerialIn draws a serial that CA caID never used in table (the
// records of what it signed).
func (t *tx) newSerialIn(ctx context.Context, table string, caID int64) (uint64, error) {
	for range 16 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		serial := binary.BigEndian.Uint64(b[:]) >> 11
		if serial == 0 {
			continue
		}
		var one int
		err := t.queryRow(ctx, `SELECT 1 FROM `+table+` WHERE ca_id = ? AND serial = ?`, caID, int64(serial)).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return serial, nil
		} else if err != nil {
			return 0, err
		}
	}
	return 0, errors.New("keystore: no unused certificate serial found")
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// IssuedFilter selects issued certificates.
type IssuedFilter struct {
	CAID   int64 // 0: any
	UserID int64 // 0: any
}

// ListIssued lists issued certificates, newest first.
func (s *Store) ListIssued(ctx context.Context, f IssuedFilter, pg Page) ([]*IssuedCertificate, int, error) {
	cond, args := "1=1", []any{}
	if f.CAID != 0 {
		cond, args = cond+" AND ca_id = ?", append(args, f.CAID)
	}
	if f.UserID != 0 {
		cond, args = cond+" AND user_id = ?", append(args, f.UserID)
	}
	return listPage(ctx, s, issuedCols, `issued_certificates WHERE `+cond, args, "id DESC", pg, scanIssued)
}
