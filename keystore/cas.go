package keystore

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
)

// CAInput describes a group CA to add.
type CAInput struct {
	Title string
	Key   string
}

const caCols = `id, group_id, title, key, fingerprint_sha256, created_at`

func scanCA(row rowScanner) (*GroupCA, error) {
	var c GroupCA
	var created int64
	if err := row.Scan(&c.ID, &c.GroupID, &c.Title, &c.Key, &c.FingerprintSHA256, &created); err != nil {
		return nil, err
	}
	c.CreatedAt = fromMS(created)
	return &c, nil
}

// ErrNotTopLevel is returned when a CA is added to a subgroup.
var ErrNotTopLevel = errors.New("keystore: only top-level groups can hold SSH certificate authorities")

// CreateCA registers an SSH certificate authority for a top-level group.
func (s *Store) CreateCA(ctx context.Context, a Actor, groupID int64, in CAInput) (*GroupCA, error) {
	p := problems{}
	in.Title = strings.TrimSpace(in.Title)
	validateText(p, "title", in.Title, true)
	pk, err := ParseCAKey(in.Key)
	if err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) {
			return nil, err
		}
		for f, rs := range ve.Fields {
			for _, r := range rs {
				p.add(f, r)
			}
		}
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	c := &GroupCA{GroupID: groupID, Title: in.Title, Key: pk.Normalized, FingerprintSHA256: pk.FingerprintSHA256}
	err = s.write(ctx, a, func(t *tx) error {
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
		var one int
		err = t.queryRow(ctx, `SELECT 1 FROM group_cas WHERE fingerprint_sha256 = ?`, c.FingerprintSHA256).Scan(&one)
		if err == nil {
			return invalid("fingerprint_sha256", "has already been taken")
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		c.CreatedAt = t.now
		id, err := t.insert(ctx, `INSERT INTO group_cas (group_id, title, key, fingerprint_sha256, created_at) VALUES (?, ?, ?, ?, ?)`,
			groupID, c.Title, c.Key, c.FingerprintSHA256, ms(t.now))
		if err != nil {
			return err
		}
		c.ID = id
		return t.record(ctx, "ssh_certificate_authority_created", "ca", id, "create",
			map[string]any{"group_id": groupID, "fingerprint": c.FingerprintSHA256, "title": c.Title})
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

// DeleteCA deletes a group's CA and its revocations.
func (s *Store) DeleteCA(ctx context.Context, a Actor, groupID, id int64) error {
	return s.write(ctx, a, func(t *tx) error {
		res, err := t.exec(ctx, `DELETE FROM group_cas WHERE id = ? AND group_id = ?`, id, groupID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("SSH Certificate")
		}
		return t.record(ctx, "ssh_certificate_authority_deleted", "ca", id, "delete", map[string]any{"group_id": groupID})
	})
}

// RevocationInput describes a certificate revocation.
type RevocationInput struct {
	Kind   string // serial, key_id, fingerprint
	Value  string
	Reason string
}

const revocationCols = `id, ca_id, kind, value, reason, created_at`

func scanRevocation(row rowScanner) (*Revocation, error) {
	var r Revocation
	var created int64
	if err := row.Scan(&r.ID, &r.CAID, &r.Kind, &r.Value, &r.Reason, &created); err != nil {
		return nil, err
	}
	r.CreatedAt = fromMS(created)
	return &r, nil
}

// CreateRevocation revokes certificates of one CA by serial, key id or
// certificate key fingerprint.
func (s *Store) CreateRevocation(ctx context.Context, a Actor, caID int64, in RevocationInput) (*Revocation, error) {
	p := problems{}
	in.Value = strings.TrimSpace(in.Value)
	switch in.Kind {
	case RevokeSerial:
		if _, err := strconv.ParseUint(in.Value, 10, 64); err != nil {
			p.add("serial", "must be an unsigned 64-bit integer")
		}
	case RevokeKeyID:
		if in.Value == "" || len(in.Value) > 1024 {
			p.add("key_id", "must be 1 to 1024 characters")
		}
	case RevokeFingerprint:
		if kind, v, ok := NormalizeFingerprint(in.Value); !ok || kind != "sha256" {
			p.add("fingerprint", "must be a SHA256 fingerprint")
		} else {
			in.Value = v
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
	r := &Revocation{CAID: caID, Kind: in.Kind, Value: in.Value, Reason: in.Reason}
	err := s.write(ctx, a, func(t *tx) error {
		if err := t.mustExist(ctx, "group_cas", caID, "SSH Certificate"); err != nil {
			return err
		}
		r.CreatedAt = t.now
		id, err := t.insert(ctx, `INSERT INTO cert_revocations (ca_id, kind, value, reason, created_at) VALUES (?, ?, ?, ?, ?)`,
			caID, r.Kind, r.Value, r.Reason, ms(t.now))
		if err != nil {
			return err
		}
		r.ID = id
		return t.record(ctx, "ssh_certificate_revoked", "revocation", id, "create",
			map[string]any{"ca_id": caID, "kind": r.Kind, "value": r.Value})
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// ListRevocations lists a CA's revocations (all when caID is 0).
func (s *Store) ListRevocations(ctx context.Context, caID int64, pg Page) ([]*Revocation, int, error) {
	cond, args := "1=1", []any{}
	if caID != 0 {
		cond, args = "ca_id = ?", []any{caID}
	}
	return listPage(ctx, s, revocationCols, `cert_revocations WHERE `+cond, args, "id", pg, scanRevocation)
}

// DeleteRevocation lifts a revocation of CA caID.
func (s *Store) DeleteRevocation(ctx context.Context, a Actor, caID, id int64) error {
	return s.write(ctx, a, func(t *tx) error {
		res, err := t.exec(ctx, `DELETE FROM cert_revocations WHERE id = ? AND ca_id = ?`, id, caID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("Revocation")
		}
		return t.record(ctx, "ssh_certificate_revocation_deleted", "revocation", id, "delete", map[string]any{"ca_id": caID})
	})
}
