package keystore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/internal/krl"
)

// Managed host CAs: instance-level certificate authorities whose private
// key keygate generated and keeps sealed under the CA encryption key (as a
// group's managed CA). They sign keygate's own host keys, renewed before
// they expire, and, on an admin's request, the host keys of the OpenSSH
// servers behind keygate. Every certificate is recorded; a revocation puts
// its serial and its host key into the host KRL (HostKRL), which clients
// read with ssh's RevokedHostKeys. See docs/openssh-fleet.md.

const (
	// OwnHostCertTTL is the validity of keygate's own host certificates;
	// they are renewed once half of it has passed, so that 15 days always
	// remain: the expiry alert (contrib/prometheus, 14 days) fires only
	// when renewal has failed for a day.
	OwnHostCertTTL = 30 * 24 * time.Hour
	// DefaultHostCertTTL is a fleet server's certificate when the admin
	// names no ttl; MaxHostCertTTL the longest one keygate signs.
	DefaultHostCertTTL = 90 * 24 * time.Hour
	MaxHostCertTTL     = 397 * 24 * time.Hour
	// MaxHostPrincipals is OpenSSH's limit on a certificate's principals
	// (SSHKEY_CERT_MAX_PRINCIPALS).
	MaxHostPrincipals = 256
)

// HostCA is a managed host certificate authority.
type HostCA struct {
	ID                int64
	Title             string
	Key               string // the public key, an authorized_keys line
	FingerprintSHA256 string
	KeyType           string // ed25519, ecdsa or rsa
	CreatedBy         *int64
	CreatedAt         time.Time
}

// HostCertificate is the record of one host certificate a host CA signed.
type HostCertificate struct {
	ID             int64
	CAID           int64
	Serial         uint64
	KeyID          string
	KeyType        string // the host key's type (ssh-ed25519, …)
	KeyFingerprint string // "SHA256:…" of the host key
	Principals     []string
	// Certificate is the OpenSSH certificate line (public: the server
	// shows it to every client).
	Certificate string
	// Own: one of keygate's own host keys, signed by keygate itself.
	Own              bool
	RequestedBy      *int64 // the admin who asked (nil: keygate's own)
	ValidAfter       time.Time
	ValidBefore      time.Time
	RevokedAt        *time.Time
	RevokedBy        *int64
	RevocationReason string
	CreatedAt        time.Time
}

// HostKeyRevokedError: a certificate of the host key was revoked, so
// keygate signs no other for it (a new certificate of a key someone else
// may hold would undo the revocation; the server needs a new host key).
// It is an ErrConflict.
type HostKeyRevokedError struct{ Fingerprint string }

func (e *HostKeyRevokedError) Error() string { return e.Unwrap().Error() }

// Unwrap makes it a *ConflictError (409).
func (e *HostKeyRevokedError) Unwrap() error {
	return &ConflictError{Msg: "a certificate of host key " + e.Fingerprint + " was revoked: keygate signs no new certificate for that key; " +
		"give the server a new host key"}
}

func hostKeyRevoked(fp string) error { return &HostKeyRevokedError{Fingerprint: fp} }

// hostCASealContext binds a sealed host CA key to its public key, and
// apart from group CAs: a sealed key copied between the tables does not
// open.
func hostCASealContext(fingerprint string) []byte {
	return []byte("keygate managed host CA\x00" + fingerprint)
}

const hostCACols = `id, title, key, fingerprint_sha256, key_type, created_by, created_at`

func scanHostCA(row rowScanner) (*HostCA, error) {
	var c HostCA
	var created int64
	var by sql.NullInt64
	if err := row.Scan(&c.ID, &c.Title, &c.Key, &c.FingerprintSHA256, &c.KeyType, &by, &created); err != nil {
		return nil, err
	}
	c.CreatedBy, c.CreatedAt = nullID(by), fromMS(created)
	return &c, nil
}

// GenerateHostCA creates a managed host CA (keyType ed25519 by default,
// ecdsa or rsa). Only its public key is ever shown.
func (s *Store) GenerateHostCA(ctx context.Context, a Actor, title, keyType string) (*HostCA, error) {
	p := problems{}
	title = strings.TrimSpace(title)
	validateText(p, "title", title, true)
	pk, sealedKey, keyType, err := s.generateSealedKey(p, keyType, "keygate-host-ca", hostCASealContext)
	if err != nil {
		return nil, err
	}
	c := &HostCA{Title: title, Key: pk.Normalized, FingerprintSHA256: pk.FingerprintSHA256, KeyType: keyType}
	if a.UserID != 0 {
		c.CreatedBy = &a.UserID
	}
	err = s.write(ctx, a, func(t *tx) error {
		c.CreatedAt = t.now
		id, err := t.insert(ctx, `INSERT INTO host_cas (title, key, fingerprint_sha256, key_type, sealed_private_key, created_by, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, c.Title, c.Key, c.FingerprintSHA256, c.KeyType, sealedKey, c.CreatedBy, ms(t.now))
		if err != nil {
			return err
		}
		c.ID = id
		if err := t.hostKRLChanged(ctx); err != nil {
			return err
		}
		return t.audit(ctx, "ssh_host_ca_created", "ssh_host_ca", id, map[string]any{
			"title": c.Title, "fingerprint": c.FingerprintSHA256, "key_type": c.KeyType})
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// HostCA returns a host CA that is in use (not deleted).
func (s *Store) HostCA(ctx context.Context, id int64) (*HostCA, error) {
	c, err := scanHostCA(s.queryRow(ctx, `SELECT `+hostCACols+` FROM host_cas WHERE id = ? AND deleted_at IS NULL`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("SSH Host Certificate Authority")
	}
	return c, err
}

// ListHostCAs lists the host CAs in use, oldest first: the first signs
// unless a request names another.
func (s *Store) ListHostCAs(ctx context.Context, pg Page) ([]*HostCA, int, error) {
	return listPage(ctx, s, hostCACols, `host_cas WHERE deleted_at IS NULL`, nil, "id", pg, scanHostCA)
}

// DeleteHostCA takes a host CA out of use: its private key is destroyed
// (the sealed value overwritten), it signs nothing more and leaves the
// list; keygate's own host keys move to the next host CA, if any. Its
// public key and its certificates' records stay, so that its revocations
// stay in the host KRL for the clients that still trust it.
func (s *Store) DeleteHostCA(ctx context.Context, a Actor, id int64) error {
	return s.write(ctx, a, func(t *tx) error {
		var fp string
		err := t.queryRow(ctx, `SELECT fingerprint_sha256 FROM host_cas WHERE id = ? AND deleted_at IS NULL`, id).Scan(&fp)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("SSH Host Certificate Authority")
		} else if err != nil {
			return err
		}
		if _, err := t.exec(ctx, `UPDATE host_cas SET sealed_private_key = NULL, deleted_at = ? WHERE id = ?`, ms(t.now), id); err != nil {
			return err
		}
		if err := t.hostKRLChanged(ctx); err != nil {
			return err
		}
		return t.audit(ctx, "ssh_host_ca_deleted", "ssh_host_ca", id, map[string]any{"fingerprint": fp})
	})
}

// hostCASigner opens host CA id's private key (0: the oldest in use).
// With no host CA in use, id 0 answers (nil, nil, nil).
func (t *tx) hostCASigner(ctx context.Context, id int64) (gossh.Signer, *HostCA, error) {
	q := `SELECT ` + hostCACols + `, sealed_private_key FROM host_cas WHERE deleted_at IS NULL AND id = ?`
	args := []any{id}
	if id == 0 {
		q, args = `SELECT `+hostCACols+`, sealed_private_key FROM host_cas WHERE deleted_at IS NULL ORDER BY id LIMIT 1`, nil
	}
	var sealedKey sql.NullString
	var c HostCA
	var created int64
	var by sql.NullInt64
	err := t.queryRow(ctx, q, args...).Scan(&c.ID, &c.Title, &c.Key, &c.FingerprintSHA256, &c.KeyType, &by, &created, &sealedKey)
	if errors.Is(err, sql.ErrNoRows) {
		if id == 0 {
			return nil, nil, nil
		}
		return nil, nil, notFound("SSH Host Certificate Authority")
	} else if err != nil {
		return nil, nil, err
	}
	c.CreatedBy, c.CreatedAt = nullID(by), fromMS(created)
	if !sealedKey.Valid {
		return nil, nil, errors.New("keystore: host CA without its private key")
	}
	signer, err := t.s.openSealedSigner(sealedKey.String, hostCASealContext(c.FingerprintSHA256), "host certificate authority "+c.FingerprintSHA256)
	if err != nil {
		return nil, nil, err
	}
	return signer, &c, nil
}

// NormalizeHostPrincipals checks the names a host certificate is for and
// returns them lower-cased (ssh lower-cases the name it connects to before
// matching), duplicates dropped, in order: host names and IP addresses.
// No patterns: OpenSSH (9.2 tested) compares a host certificate's
// principals with the name it connects to as plain strings, so "*.example"
// would match no host. field names the parameter in errors.
func NormalizeHostPrincipals(field string, names []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" {
			continue
		}
		if len(n) > 253 {
			return nil, invalid(field, "a name is too long (maximum is 253 characters)")
		}
		if a, err := netip.ParseAddr(n); err == nil && a.Zone() != "" {
			// A zone is the client's interface, no name of the host (and
			// may hold any character).
			return nil, invalid(field, fmt.Sprintf("%q: an address with a zone is not a host's name", n))
		} else if err != nil {
			for _, r := range n {
				if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
					return nil, invalid(field, fmt.Sprintf("%q is not a host name or an IP address (letters, digits, - . _; no patterns)", n))
				}
			}
			if strings.HasPrefix(n, "-") || strings.HasPrefix(n, ".") || strings.Contains(n, "..") {
				return nil, invalid(field, fmt.Sprintf("%q is not a host name", n))
			}
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, invalid(field, "can't be blank: name the host names the certificate is for")
	}
	if len(out) > MaxHostPrincipals {
		return nil, invalid(field, fmt.Sprintf("are too many (OpenSSH takes at most %d)", MaxHostPrincipals))
	}
	return out, nil
}

// HostCertRequest asks for a fleet server's host certificate.
type HostCertRequest struct {
	// CAID picks the host CA (0: the oldest in use).
	CAID int64
	// PublicKey is the server's host public key (an authorized_keys line).
	PublicKey  string
	Principals []string
	// KeyID names the certificate in the server's and clients' logs
	// (empty: the first principal).
	KeyID string
	// TTL is the validity (0: DefaultHostCertTTL; at most MaxHostCertTTL).
	TTL         time.Duration
	RequestedBy int64
}

// IssueHostCertificate signs a fleet server's host key with a host CA:
// valid from a minute ago for the TTL, for the names given, no extensions
// or options. It is recorded and audited.
func (s *Store) IssueHostCertificate(ctx context.Context, a Actor, req HostCertRequest) (*HostCertificate, error) {
	p := problems{}
	pk, err := ParseUserKey(req.PublicKey)
	if err := p.with(err); err != nil && !errors.Is(err, ErrInvalid) {
		return nil, err
	}
	if pk != nil && strings.HasPrefix(pk.Type, "sk-") {
		p.add("key", "is a security key; OpenSSH servers do not use security keys as host keys")
	}
	principals, err := NormalizeHostPrincipals("principals", req.Principals)
	if err := p.with(err); err != nil && !errors.Is(err, ErrInvalid) {
		return nil, err
	}
	keyID := strings.TrimSpace(req.KeyID)
	validateText(p, "key_id", keyID, false)
	ttl := req.TTL
	switch {
	case ttl == 0:
		ttl = DefaultHostCertTTL
	case ttl < MinCertTTL || ttl > MaxHostCertTTL:
		p.add("ttl", fmt.Sprintf("must be between %d and %d seconds", int64(MinCertTTL/time.Second), int64(MaxHostCertTTL/time.Second)))
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	if keyID == "" {
		keyID = principals[0]
	}
	rec := &HostCertificate{KeyID: keyID, Principals: principals}
	if req.RequestedBy != 0 {
		rec.RequestedBy = &req.RequestedBy
	}
	err = s.write(ctx, a, func(t *tx) error {
		return t.signHost(ctx, req.CAID, pk.Public, rec, ttl)
	})
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// OwnHostCertificate returns the certificate keygate presents for its own
// host key key under principals: the newest one keygate signed for it
// with the oldest host CA in use, under these principals, not revoked and
// not yet half through its validity; otherwise a new one
// (OwnHostCertTTL), recorded. With no host CA in use it returns nil. A
// host key whose certificate was revoked gets none (*HostKeyRevokedError).
func (s *Store) OwnHostCertificate(ctx context.Context, key gossh.PublicKey, principals []string) (*HostCertificate, error) {
	names, err := NormalizeHostPrincipals("principals", principals)
	if err != nil {
		return nil, err
	}
	fp := gossh.FingerprintSHA256(key)
	// Most calls find the current certificate: a read, no write lock.
	if c, done, err := s.ownHostCert(ctx, s, fp, names); done || err != nil {
		return c, err
	}
	var out *HostCertificate
	err = s.write(ctx, Actor{}, func(t *tx) error {
		c, done, err := s.ownHostCert(ctx, t, fp, names)
		if done || err != nil {
			out = c
			return err
		}
		rec := &HostCertificate{KeyID: "keygate host " + names[0], Principals: names, Own: true}
		if err := t.signHost(ctx, 0, key, rec, OwnHostCertTTL); err != nil {
			return err
		}
		out = rec
		return nil
	})
	return out, err
}

// ownHostCert reports what OwnHostCertificate answers without signing:
// done with the current certificate (or nil when there is no host CA, or
// an error), or not done (a new certificate is due).
func (s *Store) ownHostCert(ctx context.Context, q querier, fp string, names []string) (*HostCertificate, bool, error) {
	var one int
	err := q.queryRow(ctx, `SELECT 1 FROM host_certificates WHERE key_fingerprint = ? AND revoked_at IS NOT NULL LIMIT 1`, fp).Scan(&one)
	if err == nil {
		return nil, true, hostKeyRevoked(fp)
	} else if !errors.Is(err, sql.ErrNoRows) {
		return nil, true, err
	}
	var caID int64
	err = q.queryRow(ctx, `SELECT id FROM host_cas WHERE deleted_at IS NULL ORDER BY id LIMIT 1`).Scan(&caID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, true, nil
	} else if err != nil {
		return nil, true, err
	}
	c, err := scanHostCert(q.queryRow(ctx, `SELECT `+hostCertCols+` FROM host_certificates
		WHERE own = 1 AND ca_id = ? AND key_fingerprint = ? AND principals = ? AND revoked_at IS NULL ORDER BY id DESC LIMIT 1`,
		caID, fp, strings.Join(names, ",")))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	} else if err != nil {
		return nil, true, err
	}
	now := s.now()
	renewAt := c.ValidAfter.Add(c.ValidBefore.Sub(c.ValidAfter) / 2)
	if now.Before(c.ValidAfter) || !now.Before(renewAt) {
		return nil, false, nil
	}
	return c, true, nil
}

// signHost signs key with host CA caID (0: the oldest in use) for
// rec.KeyID and rec.Principals, valid from a minute ago for ttl, and
// records and audits it, filling rec.
func (t *tx) signHost(ctx context.Context, caID int64, key gossh.PublicKey, rec *HostCertificate, ttl time.Duration) error {
	fp := gossh.FingerprintSHA256(key)
	var one int
	err := t.queryRow(ctx, `SELECT 1 FROM host_certificates WHERE key_fingerprint = ? AND revoked_at IS NOT NULL LIMIT 1`, fp).Scan(&one)
	if err == nil {
		return hostKeyRevoked(fp)
	} else if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	signer, ca, err := t.hostCASigner(ctx, caID)
	if err != nil {
		return err
	}
	if ca == nil {
		return &ConflictError{Msg: "keygate has no SSH host certificate authority: an admin creates one with " +
			"POST /api/v4/admin/ssh_host_certificate_authorities"}
	}
	if gossh.FingerprintSHA256(key) == ca.FingerprintSHA256 {
		return invalid("key", "is the host certificate authority's own key")
	}
	serial, err := t.newSerialIn(ctx, "host_certificates", ca.ID)
	if err != nil {
		return err
	}
	now := t.now.Truncate(time.Second)
	rec.CAID, rec.Serial, rec.KeyType, rec.KeyFingerprint = ca.ID, serial, key.Type(), fp
	rec.ValidAfter, rec.ValidBefore = now.Add(-CertBackdate).UTC(), now.Add(ttl).UTC()
	cert := &gossh.Certificate{
		Key: key, Serial: serial, CertType: gossh.HostCert, KeyId: rec.KeyID, ValidPrincipals: rec.Principals,
		ValidAfter: uint64(rec.ValidAfter.Unix()), ValidBefore: uint64(rec.ValidBefore.Unix()),
	}
	if err := cert.SignCert(rand.Reader, signer); err != nil {
		return err
	}
	rec.Certificate = strings.TrimSpace(string(gossh.MarshalAuthorizedKey(cert)))
	rec.CreatedAt = t.now
	rec.ID, err = t.insert(ctx, `INSERT INTO host_certificates (ca_id, serial, key_id, key_type, key_fingerprint, principals, certificate,
		own, requested_by, valid_after, valid_before, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		ca.ID, int64(serial), rec.KeyID, rec.KeyType, rec.KeyFingerprint, strings.Join(rec.Principals, ","), rec.Certificate,
		boolInt(rec.Own), rec.RequestedBy, ms(rec.ValidAfter), ms(rec.ValidBefore), ms(t.now))
	if err != nil {
		return err
	}
	return t.audit(ctx, "ssh_host_certificate_issued", "ssh_host_certificate", rec.ID, map[string]any{
		"ca_id": ca.ID, "ca_fingerprint": ca.FingerprintSHA256, "serial": strconv.FormatUint(serial, 10), "key_id": rec.KeyID,
		"key_fingerprint": rec.KeyFingerprint, "principals": rec.Principals, "own": rec.Own,
		"valid_after": rec.ValidAfter.Format(time.RFC3339), "valid_before": rec.ValidBefore.Format(time.RFC3339),
	})
}

const hostCertCols = `id, ca_id, serial, key_id, key_type, key_fingerprint, principals, certificate, own, requested_by,
	valid_after, valid_before, revoked_at, revoked_by, revocation_reason, created_at`

func scanHostCert(row rowScanner) (*HostCertificate, error) {
	var c HostCertificate
	var serial, after, before, created int64
	var own int
	var principals string
	var by, revokedBy, revokedAt sql.NullInt64
	if err := row.Scan(&c.ID, &c.CAID, &serial, &c.KeyID, &c.KeyType, &c.KeyFingerprint, &principals, &c.Certificate, &own, &by,
		&after, &before, &revokedAt, &revokedBy, &c.RevocationReason, &created); err != nil {
		return nil, err
	}
	c.Serial, c.Own = uint64(serial), own != 0
	c.Principals = splitList(principals)
	c.RequestedBy, c.RevokedBy, c.RevokedAt = nullID(by), nullID(revokedBy), fromNullMS(revokedAt)
	c.ValidAfter, c.ValidBefore, c.CreatedAt = fromMS(after), fromMS(before), fromMS(created)
	return &c, nil
}

// HostCertificate returns one host certificate's record.
func (s *Store) HostCertificate(ctx context.Context, id int64) (*HostCertificate, error) {
	c, err := scanHostCert(s.queryRow(ctx, `SELECT `+hostCertCols+` FROM host_certificates WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("SSH Host Certificate")
	}
	return c, err
}

// HostCertFilter selects host certificates.
type HostCertFilter struct {
	CAID           int64  // 0: any
	KeyFingerprint string // "": any
	Own            *bool
	Revoked        *bool
}

// ListHostCertificates lists host certificate records, newest first.
func (s *Store) ListHostCertificates(ctx context.Context, f HostCertFilter, pg Page) ([]*HostCertificate, int, error) {
	cond, args := "1=1", []any{}
	if f.CAID != 0 {
		cond, args = cond+" AND ca_id = ?", append(args, f.CAID)
	}
	if f.KeyFingerprint != "" {
		cond, args = cond+" AND key_fingerprint = ?", append(args, f.KeyFingerprint)
	}
	if f.Own != nil {
		cond, args = cond+" AND own = ?", append(args, boolInt(*f.Own))
	}
	if f.Revoked != nil {
		if *f.Revoked {
			cond += " AND revoked_at IS NOT NULL"
		} else {
			cond += " AND revoked_at IS NULL"
		}
	}
	return listPage(ctx, s, hostCertCols, `host_certificates WHERE `+cond, args, "id DESC", pg, scanHostCert)
}

// RevokeHostCertificate revokes a host certificate: its serial, and its
// host key, go into the host KRL (ssh with RevokedHostKeys refuses the
// certificate, and the key in any certificate or known_hosts line), and
// keygate signs nothing more for that key. Revoking one already revoked
// is a conflict; a revocation cannot be lifted.
func (s *Store) RevokeHostCertificate(ctx context.Context, a Actor, id int64, reason string) (*HostCertificate, error) {
	p := problems{}
	reason = strings.TrimSpace(reason)
	validateText(p, "reason", reason, false)
	if err := p.err(); err != nil {
		return nil, err
	}
	var out *HostCertificate
	err := s.write(ctx, a, func(t *tx) error {
		c, err := scanHostCert(t.queryRow(ctx, `SELECT `+hostCertCols+` FROM host_certificates WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("SSH Host Certificate")
		} else if err != nil {
			return err
		}
		if c.RevokedAt != nil {
			return &ConflictError{Msg: "the host certificate is already revoked"}
		}
		var by any
		if a.UserID != 0 {
			by = a.UserID
			c.RevokedBy = &a.UserID
		}
		if _, err := t.exec(ctx, `UPDATE host_certificates SET revoked_at = ?, revoked_by = ?, revocation_reason = ? WHERE id = ?`,
			ms(t.now), by, reason, id); err != nil {
			return err
		}
		now := t.now
		c.RevokedAt, c.RevocationReason = &now, reason
		if err := t.hostKRLChanged(ctx); err != nil {
			return err
		}
		out = c
		return t.audit(ctx, "ssh_host_certificate_revoked", "ssh_host_certificate", id, map[string]any{
			"ca_id": c.CAID, "serial": strconv.FormatUint(c.Serial, 10), "key_fingerprint": c.KeyFingerprint,
			"principals": c.Principals, "own": c.Own, "reason": reason,
		})
	})
	return out, err
}

// hostKRLChanged bumps the host KRL's version: every write that changes
// what HostKRL answers calls it.
func (t *tx) hostKRLChanged(ctx context.Context) error {
	_, err := t.exec(ctx, `INSERT INTO host_krl (singleton, version, updated_at) VALUES (1, 1, ?)
		ON CONFLICT (singleton) DO UPDATE SET version = host_krl.version + 1, updated_at = excluded.updated_at`, ms(t.now))
	return err
}

const hostKRLStateQuery = `SELECT version, updated_at FROM host_krl WHERE singleton = 1`

func scanHostKRLState(row rowScanner) (KRLState, error) {
	var version, updated int64
	err := row.Scan(&version, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return KRLState{Public: true, UpdatedAt: fromMS(0)}, nil
	} else if err != nil {
		return KRLState{}, err
	}
	return KRLState{Public: true, Version: uint64(version), UpdatedAt: fromMS(updated)}, nil
}

// HostKRLState reads the host KRL's version and time without building it.
func (s *Store) HostKRLState(ctx context.Context) (KRLState, error) {
	return scanHostKRLState(s.queryRow(ctx, hostKRLStateQuery))
}

// HostKRL builds the host KRL from one read-only snapshot: for each host
// CA (deleted ones included, as clients may still trust them) the serials
// of its revoked certificates, and the SHA-256 fingerprints of their host
// keys. Its version and generated_date are the state's, so one version is
// the same bytes on every node.
func (s *Store) HostKRL(ctx context.Context) (*krl.KRL, KRLState, error) {
	opts := &sql.TxOptions{ReadOnly: true, Isolation: s.dialect.snapshotIsolation()}
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return nil, KRLState{}, s.readErr(s.dialect.mapErr(err))
	}
	defer tx.Rollback()
	st, err := scanHostKRLState(tx.QueryRowContext(ctx, s.dialect.rebind(hostKRLStateQuery)))
	if err != nil {
		return nil, st, s.readErr(err)
	}
	k := &krl.KRL{Version: st.Version, GeneratedAt: uint64(max(st.UpdatedAt.Unix(), 0)), Comment: "keygate host certificates"}
	sections := map[int64]*krl.CertRevocations{}
	seenKey := map[string]bool{}
	err = forEachTxRow(ctx, s, tx, `SELECT c.ca_id, a.key, c.serial, c.key_fingerprint FROM host_certificates c
		JOIN host_cas a ON a.id = c.ca_id WHERE c.revoked_at IS NOT NULL ORDER BY c.ca_id, c.serial`, nil,
		func(scan func(...any) error) error {
			var caID, serial int64
			var caKey, fp string
			if err := scan(&caID, &caKey, &serial, &fp); err != nil {
				return err
			}
			sect, ok := sections[caID]
			if !ok {
				pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(caKey))
				if err != nil {
					return fmt.Errorf("keystore: host CA %d: %w", caID, err)
				}
				sect = &krl.CertRevocations{CA: pub.Marshal()}
				sections[caID] = sect
				k.Certs = append(k.Certs, sect)
			}
			if serial != 0 {
				sect.Serials = append(sect.Serials, krl.Range{Lo: uint64(serial), Hi: uint64(serial)})
			}
			if !seenKey[fp] {
				seenKey[fp] = true
				raw, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(fp, "SHA256:"))
				if err == nil && len(raw) == 32 {
					k.SHA256 = append(k.SHA256, [32]byte(raw))
				}
			}
			return nil
		})
	if err != nil {
		return nil, st, err
	}
	return k, st, nil
}
