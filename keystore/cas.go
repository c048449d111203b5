package keystore

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// CAInput describes a group CA to add.
type CAInput struct {
	Title string
	Key   string
}

const caCols = `id, group_id, title, key, fingerprint_sha256, created_at, managed`

func scanCA(row rowScanner) (*GroupCA, error) {
	var c GroupCA
	var created int64
	var managed int
	if err := row.Scan(&c.ID, &c.GroupID, &c.Title, &c.Key, &c.FingerprintSHA256, &created, &managed); err != nil {
		return nil, err
	}
	c.CreatedAt = fromMS(created)
	c.Managed = managed != 0
	return &c, nil
}

// ErrNotTopLevel is returned when a CA is added to a subgroup.
var ErrNotTopLevel = errors.New("keystore: only top-level groups can hold SSH certificate authorities")

// CreateCA registers an SSH certificate authority for a top-level group. A
// key is unique within its group only: another group holding the same
// public key stops no one (a key is its group's own; see Revocation).
func (s *Store) CreateCA(ctx context.Context, a Actor, groupID int64, in CAInput) (*GroupCA, error) {
	p := problems{}
	in.Title = strings.TrimSpace(in.Title)
	validateText(p, "title", in.Title, true)
	pk, err := ParseCAKey(in.Key)
	if err := p.with(err); err != nil {
		return nil, err
	}
	c := &GroupCA{GroupID: groupID, Title: in.Title, Key: pk.Normalized, FingerprintSHA256: pk.FingerprintSHA256}
	return s.insertCA(ctx, a, groupID, c, "", "")
}

// insertCA stores a CA for top-level group groupID; sealedKey is a
// managed CA's sealed private key ("" for an uploaded CA).
func (s *Store) insertCA(ctx context.Context, a Actor, groupID int64, c *GroupCA, sealedKey, keyType string) (*GroupCA, error) {
	err := s.write(ctx, a, func(t *tx) error {
		var parent sql.NullInt64
		err := t.queryRow(ctx, `SELECT parent_id FROM groups WHERE id = ?`, groupID).Scan(&parent)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("Group")
		} else if err != nil {
			return err
		}
		if parent.Valid {
			return ErrNotTopLevel
		}
		// The key policy's kind restrictions hold for CA keys too,
		// uploaded or managed (c.Key is the public key, already valid).
		if pk, err := ParseCAKey(c.Key); err != nil {
			return err
		} else if p, err := t.keyPolicy(ctx); err != nil {
			return err
		} else if err := p.checkKindAdd(pk); err != nil {
			return err
		}
		var one int
		err = t.queryRow(ctx, `SELECT 1 FROM group_cas WHERE group_id = ? AND fingerprint_sha256 = ?`, groupID, c.FingerprintSHA256).Scan(&one)
		if err == nil {
			return invalid("fingerprint_sha256", "has already been taken")
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		c.CreatedAt = t.now
		var sealedArg any
		if sealedKey != "" {
			sealedArg = sealedKey
		}
		id, err := t.insert(ctx, `INSERT INTO group_cas (group_id, title, key, fingerprint_sha256, created_at, managed, sealed_private_key) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			groupID, c.Title, c.Key, c.FingerprintSHA256, ms(t.now), boolInt(c.Managed), sealedArg)
		if err != nil {
			return err
		}
		c.ID = id
		if err := t.krlChanged(ctx, groupID); err != nil {
			return err
		}
		details := map[string]any{"group_id": groupID, "fingerprint": c.FingerprintSHA256, "title": c.Title}
		if c.Managed {
			details["managed"] = true
			details["key_type"] = keyType
		}
		return t.record(ctx, "ssh_certificate_authority_created", EntityCA, id, "create", details)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// CA returns a group CA by id; groupID, when not 0, must own it.
func (s *Store) CA(ctx context.Context, groupID, id int64) (*GroupCA, error) {
	c, err := scanCA(s.queryRow(ctx, `SELECT `+caCols+` FROM group_cas WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) || (err == nil && groupID != 0 && c.GroupID != groupID) {
		return nil, notFound("SSH Certificate")
	}
	return c, err
}

// ListCAs lists a group's CAs (all groups' when groupID is 0), ordered by id.
func (s *Store) ListCAs(ctx context.Context, groupID int64, pg Page) ([]*GroupCA, int, error) {
	cond, args := "1=1", []any{}
	if groupID != 0 {
		cond, args = "group_id = ?", []any{groupID}
	}
	return listPage(ctx, s, caCols, `group_cas WHERE `+cond, args, "id", pg, scanCA)
}

// DeleteCA deletes a group's CA. Its revocations stay: they belong to the
// group and the CA's key, and apply again if the group registers the key
// again. A managed CA's private key is destroyed with it (overwritten,
// then deleted with its row), and so are the records of what it issued.
func (s *Store) DeleteCA(ctx context.Context, a Actor, groupID, id int64) error {
	return s.write(ctx, a, func(t *tx) error {
		if _, err := t.exec(ctx, `UPDATE group_cas SET sealed_private_key = NULL WHERE id = ? AND group_id = ?`, id, groupID); err != nil {
			return err
		}
		if err := t.execOne(ctx, "SSH Certificate", `DELETE FROM group_cas WHERE id = ? AND group_id = ?`, id, groupID); err != nil {
			return err
		}
		if err := t.krlChanged(ctx, groupID); err != nil {
			return err
		}
		return t.record(ctx, "ssh_certificate_authority_deleted", EntityCA, id, "delete", map[string]any{"group_id": groupID})
	})
}

// RevocationInput describes a certificate revocation.
type RevocationInput struct {
	Kind   string // serial, key_id, fingerprint
	Value  string
	Reason string
}

const revocationCols = `id, kind, value, reason, created_at, ca_fingerprint, group_id`

func scanRevocation(row rowScanner) (*Revocation, error) {
	var r Revocation
	var created int64
	if err := row.Scan(&r.ID, &r.Kind, &r.Value, &r.Reason, &created, &r.CAFingerprint, &r.GroupID); err != nil {
		return nil, err
	}
	r.CreatedAt = fromMS(created)
	return &r, nil
}

// CanonicalSerial parses a certificate serial given in decimal or as 0x
// hex and returns it in canonical unsigned decimal, the form revocations
// are stored and matched in.
func CanonicalSerial(v string) (string, bool) {
	v = strings.TrimSpace(v)
	base := 10
	if h, ok := strings.CutPrefix(strings.ToLower(v), "0x"); ok {
		v, base = h, 16
	}
	if v == "" || strings.ContainsAny(v, "+-_") {
		return "", false
	}
	n, err := strconv.ParseUint(v, base, 64)
	if err != nil {
		return "", false
	}
	return strconv.FormatUint(n, 10), true
}

// CanonicalSHA256Fingerprint accepts a SHA-256 fingerprint in any form
// NormalizeFingerprint reads (padded or not, "+" turned into a space, the
// prefix left out, a whole ssh-keygen -l line) and returns OpenSSH's form;
// anything else, an MD5 fingerprint included, is refused.
func CanonicalSHA256Fingerprint(v string) (string, bool) {
	kind, fp, ok := NormalizeFingerprint(v)
	return fp, ok && kind == FingerprintSHA256
}

// CreateRevocation revokes certificates of CA ca by serial, key id or
// certificate key fingerprint. The revocation belongs to ca's group and
// the CA's key: it applies to that group's logins with that key only.
func (s *Store) CreateRevocation(ctx context.Context, a Actor, ca *GroupCA, in RevocationInput) (*Revocation, error) {
	p := problems{}
	in.Value = strings.TrimSpace(in.Value)
	switch in.Kind {
	case RevokeSerial:
		if v, ok := CanonicalSerial(in.Value); ok {
			in.Value = v
		} else {
			p.add("serial", "must be an unsigned 64-bit integer, in decimal or as 0x hex")
		}
	case RevokeKeyID:
		if in.Value == "" || len(in.Value) > 1024 || !utf8.ValidString(in.Value) || strings.ContainsRune(in.Value, 0) {
			p.add("key_id", "must be 1 to 1024 characters")
		}
	case RevokeFingerprint:
		if v, ok := CanonicalSHA256Fingerprint(in.Value); ok {
			in.Value = v
		} else {
			p.add("fingerprint", `must be a SHA-256 fingerprint ("SHA256:" and the base64 of 32 bytes), as ssh-keygen -l prints it`)
		}
	default:
		p.add("kind", "must be one of serial, key_id, fingerprint")
	}
	if len(in.Reason) > 1000 {
		p.add("reason", "is too long (maximum is 1000 characters)")
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	r := &Revocation{CAFingerprint: ca.FingerprintSHA256, GroupID: ca.GroupID, Kind: in.Kind, Value: in.Value, Reason: in.Reason}
	err := s.write(ctx, a, func(t *tx) error {
		if err := t.mustExist(ctx, "group_cas", ca.ID, "SSH Certificate"); err != nil {
			return err
		}
		r.CreatedAt = t.now
		id, err := t.insert(ctx, `INSERT INTO cert_revocations (kind, value, reason, created_at, ca_fingerprint, group_id) VALUES (?, ?, ?, ?, ?, ?)`,
			r.Kind, r.Value, r.Reason, ms(t.now), r.CAFingerprint, r.GroupID)
		if err != nil {
			return err
		}
		r.ID = id
		if err := t.krlChanged(ctx, r.GroupID); err != nil {
			return err
		}
		return t.record(ctx, "ssh_certificate_revoked", EntityRevocation, id, "create",
			map[string]any{"ca_id": ca.ID, "ca_fingerprint": r.CAFingerprint, "group_id": r.GroupID, "kind": r.Kind, "value": r.Value})
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// ListRevocations lists the revocations group groupID made of CA key caFP
// (every group's and every key's when groupID is 0 and caFP "").
func (s *Store) ListRevocations(ctx context.Context, groupID int64, caFP string, pg Page) ([]*Revocation, int, error) {
	cond, args := "1=1", []any{}
	if groupID != 0 {
		cond, args = cond+" AND group_id = ?", append(args, groupID)
	}
	if caFP != "" {
		cond, args = cond+" AND ca_fingerprint = ?", append(args, caFP)
	}
	return listPage(ctx, s, revocationCols, `cert_revocations WHERE `+cond, args, "id", pg, scanRevocation)
}

// RevocationByID returns one revocation.
func (s *Store) RevocationByID(ctx context.Context, id int64) (*Revocation, error) {
	r, err := scanRevocation(s.queryRow(ctx, `SELECT `+revocationCols+` FROM cert_revocations WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("Revocation")
	}
	return r, err
}

// DeleteRevocation lifts a revocation of CA ca's key made by ca's group.
// Another group's revocation is not found: each group sees only its own.
func (s *Store) DeleteRevocation(ctx context.Context, a Actor, ca *GroupCA, id int64) error {
	return s.write(ctx, a, func(t *tx) error {
		r, err := scanRevocation(t.queryRow(ctx, `SELECT `+revocationCols+` FROM cert_revocations WHERE id = ? AND group_id = ? AND ca_fingerprint = ?`,
			id, ca.GroupID, ca.FingerprintSHA256))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("Revocation")
		} else if err != nil {
			return err
		}
		if _, err := t.exec(ctx, `DELETE FROM cert_revocations WHERE id = ?`, id); err != nil {
			return err
		}
		if err := t.krlChanged(ctx, ca.GroupID); err != nil {
			return err
		}
		return t.record(ctx, "ssh_certificate_revocation_deleted", EntityRevocation, id, "delete",
			map[string]any{"ca_id": ca.ID, "ca_fingerprint": r.CAFingerprint, "group_id": ca.GroupID})
	})
}
