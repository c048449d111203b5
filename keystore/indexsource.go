package keystore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"strings"
)

// The reads the in-memory auth index (package authindex) makes of the
// store: counts and row streams for a full load, and the entities a change
// names. All SQL stays here; authindex.Source is the interface.

// UserRow is a user as the index loads it. Username and Email are valid
// only during the callback (they are the driver's buffers).
type UserRow struct {
	ID                int64
	Username, Email   []byte
	Active, Admin     bool
	EnterpriseGroupID int64 // 0: none
}

// KeyRow is a user key as the index loads it. FingerprintSHA256 and Usage
// are valid only during the callback.
type KeyRow struct {
	ID, UserID        int64
	FingerprintSHA256 []byte
	Usage             []byte
	ExpiresMS         int64
	Expires           bool
	Type              []byte // valid only during the callback
	Bits              int
	CreatedMS         int64
}

// MemberLevel is one membership of a group.
type MemberLevel struct {
	UserID      int64
	AccessLevel int
	ExpiresMS   int64 // when it ends, Unix milliseconds; 0: never
}

// IndexCounts returns how many users and keys a full load reads (to size
// the index's tables).
func (s *Store) IndexCounts(ctx context.Context) (users, keys int, err error) {
	if users, err = s.count(ctx, `SELECT COUNT(*) FROM users`); err != nil {
		return 0, 0, err
	}
	// Deploy keys share the index's key table.
	keys, err = s.count(ctx, `SELECT (SELECT COUNT(*) FROM keys) + (SELECT COUNT(*) FROM deploy_keys)`)
	return users, keys, err
}

// ScanUsers streams every user, without a string per value.
func (s *Store) ScanUsers(ctx context.Context, fn func(UserRow) error) error {
	var name, email, state sql.RawBytes
	return s.forEachRow(ctx, `SELECT id, username, email, state, is_admin, enterprise_group_id FROM users`, func(sc func(...any) error) error {
		var r UserRow
		var admin int
		var enterprise sql.NullInt64
		if err := sc(&r.ID, &name, &email, &state, &admin, &enterprise); err != nil {
			return err
		}
		r.Username, r.Email = name, email
		r.Active, r.Admin, r.EnterpriseGroupID = string(state) == StateActive, admin != 0, enterprise.Int64
		return fn(r)
	})
}

// ScanKeys streams every user key.
func (s *Store) ScanKeys(ctx context.Context, fn func(KeyRow) error) error {
	var fp, usage, typ sql.RawBytes
	return s.forEachRow(ctx, `SELECT id, user_id, fingerprint_sha256, usage_type, expires_at, type, bits, created_at FROM keys`, func(sc func(...any) error) error {
		var r KeyRow
		var exp sql.NullInt64
		if err := sc(&r.ID, &r.UserID, &fp, &usage, &exp, &typ, &r.Bits, &r.CreatedMS); err != nil {
			return err
		}
		r.FingerprintSHA256, r.Usage, r.ExpiresMS, r.Expires, r.Type = fp, usage, exp.Int64, exp.Valid, typ
		return fn(r)
	})
}

// ScanMembers streams every membership, expired ones included (the index
// judges expiry against its own clock).
func (s *Store) ScanMembers(ctx context.Context, fn func(groupID int64, m MemberLevel) error) error {
	return s.forEachRow(ctx, `SELECT group_id, user_id, access_level, expires_at FROM members`, func(sc func(...any) error) error {
		var gid int64
		var m MemberLevel
		var exp sql.NullInt64
		if err := sc(&gid, &m.UserID, &m.AccessLevel, &exp); err != nil {
			return err
		}
		m.ExpiresMS = expiresMS(exp)
		return fn(gid, m)
	})
}

// GroupMembers returns a group's direct memberships, expired ones included.
func (s *Store) GroupMembers(ctx context.Context, groupID int64) ([]MemberLevel, error) {
	var out []MemberLevel
	err := s.forEachRowArgs(ctx, `SELECT user_id, access_level, expires_at FROM members WHERE group_id = ?`, []any{groupID}, func(sc func(...any) error) error {
		var m MemberLevel
		var exp sql.NullInt64
		if err := sc(&m.UserID, &m.AccessLevel, &exp); err != nil {
			return err
		}
		m.ExpiresMS = expiresMS(exp)
		out = append(out, m)
		return nil
	})
	return out, err
}

// expiresMS is a nullable expiry column as MemberLevel.ExpiresMS: 0 for
// never, and never 0 for a time (the epoch itself becomes 1 ms).
func expiresMS(v sql.NullInt64) int64 {
	switch {
	case !v.Valid:
		return 0
	case v.Int64 == 0:
		return 1
	}
	return v.Int64
}

// ScanCAs streams every group CA's id, group, fingerprint and whether
// keygate manages it.
func (s *Store) ScanCAs(ctx context.Context, fn func(id, groupID int64, fingerprint string, managed bool) error) error {
	return s.forEachRow(ctx, `SELECT id, group_id, fingerprint_sha256, managed FROM group_cas`, func(sc func(...any) error) error {
		var id, gid int64
		var fp string
		var managed int
		if err := sc(&id, &gid, &fp, &managed); err != nil {
			return err
		}
		return fn(id, gid, fp, managed != 0)
	})
}

// ScanRevocations streams every certificate revocation.
func (s *Store) ScanRevocations(ctx context.Context, fn func(*Revocation) error) error {
	return s.forEachRow(ctx, `SELECT id, group_id, ca_fingerprint, kind, value FROM cert_revocations`, func(sc func(...any) error) error {
		var r Revocation
		if err := sc(&r.ID, &r.GroupID, &r.CAFingerprint, &r.Kind, &r.Value); err != nil {
			return err
		}
		return fn(&r)
	})
}

// ScanProjects streams every project's id and group.
func (s *Store) ScanProjects(ctx context.Context, fn func(id, groupID int64) error) error {
	return s.forEachRow(ctx, `SELECT id, group_id FROM projects`, func(sc func(...any) error) error {
		var id, gid int64
		if err := sc(&id, &gid); err != nil {
			return err
		}
		return fn(id, gid)
	})
}

// forEachRow streams a query's rows.
func (s *Store) forEachRow(ctx context.Context, query string, fn func(scan func(...any) error) error) error {
	return s.forEachRowArgs(ctx, query, nil, fn)
}

func (s *Store) forEachRowArgs(ctx context.Context, query string, args []any, fn func(scan func(...any) error) error) error {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows.Scan); err != nil {
			return err
		}
	}
	return s.readErr(rows.Err())
}

// ParseSHA256Fingerprint turns "SHA256:base64" into its 32 bytes.
func ParseSHA256Fingerprint(fp string) ([32]byte, bool) {
	var out [32]byte
	b64, ok := strings.CutPrefix(fp, "SHA256:")
	if !ok || base64.RawStdEncoding.DecodedLen(len(b64)) != 32 {
		return out, false
	}
	n, err := base64.RawStdEncoding.Decode(out[:], []byte(b64))
	return out, err == nil && n == 32
}

// FingerprintString is OpenSSH's "SHA256:…" form of a SHA-256 fingerprint.
func FingerprintString(fp [32]byte) string {
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(fp[:])
}
