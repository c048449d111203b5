package keystore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/internal/krl"
)

// KRLState names a top-level group's revocation list: its version, which
// every change of the group's CAs or revocations bumps (in the change's
// own transaction), the time of that change, and whether an admin made it
// readable without a token.
type KRLState struct {
	GroupID   int64
	Public    bool
	Version   uint64
	UpdatedAt time.Time // the group's creation time while Version is 0
}

// krlChanged bumps group groupID's KRL version: every write that changes
// what GroupKRL or GroupCAKeys answer calls it.
func (t *tx) krlChanged(ctx context.Context, groupID int64) error {
	_, err := t.exec(ctx, `UPDATE groups SET krl_version = krl_version + 1, krl_updated_at = ? WHERE id = ?`, ms(t.now), groupID)
	return err
}

func scanKRLState(row rowScanner, groupID int64) (KRLState, bool, error) {
	var public int
	var version, updated, created int64
	var parent sql.NullInt64
	if err := row.Scan(&public, &version, &updated, &created, &parent); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return KRLState{}, false, notFound("Group")
		}
		return KRLState{}, false, err
	}
	if updated == 0 {
		updated = created
	}
	return KRLState{GroupID: groupID, Public: public != 0, Version: uint64(version), UpdatedAt: fromMS(updated)}, !parent.Valid, nil
}

const krlStateQuery = `SELECT krl_public, krl_version, krl_updated_at, created_at, parent_id FROM groups WHERE id = ?`

// GroupKRLState reads a group's KRL state without building the list (what
// an If-None-Match request needs). A subgroup is ErrNotTopLevel.
func (s *Store) GroupKRLState(ctx context.Context, groupID int64) (KRLState, error) {
	st, top, err := scanKRLState(s.queryRow(ctx, krlStateQuery, groupID), groupID)
	if err == nil && !top {
		err = ErrNotTopLevel
	}
	return st, err
}

// GroupKRL builds top-level group groupID's OpenSSH KRL from one read-only
// snapshot: for each CA key the group holds, the serials (0 left out:
// OpenSSH never revokes it) and key ids the group revoked, and the SHA-256
// fingerprints of certificate keys it revoked. In a KRL a fingerprint
// revokes that key's certificates from every CA (and the plain key); in
// keygate it is scoped to the CA key it was made under — on a server that
// trusts only the group's CAs the two differ only in refusing more.
// Revocations of a key the group no longer holds are left out, as
// GroupCAKeys leaves the key out: they apply again, here as in keygate,
// when the group registers the key again. The KRL's version and
// generated_date are the state's, so one version is the same bytes on
// every node.
func (s *Store) GroupKRL(ctx context.Context, groupID int64) (*krl.KRL, KRLState, error) {
	opts := &sql.TxOptions{ReadOnly: true, Isolation: s.dialect.snapshotIsolation()}
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return nil, KRLState{}, s.readErr(s.dialect.mapErr(err))
	}
	defer tx.Rollback()
	st, top, err := scanKRLState(tx.QueryRowContext(ctx, s.dialect.rebind(krlStateQuery), groupID), groupID)
	if err != nil {
		return nil, st, s.readErr(err)
	}
	if !top {
		return nil, st, ErrNotTopLevel
	}
	k := &krl.KRL{Version: st.Version, GeneratedAt: uint64(max(st.UpdatedAt.Unix(), 0)), Comment: "keygate group " + strconv.FormatInt(groupID, 10)}
	sections := map[string]*krl.CertRevocations{}
	err = forEachTxRow(ctx, s, tx, `SELECT key, fingerprint_sha256 FROM group_cas WHERE group_id = ? ORDER BY id`, []any{groupID},
		func(scan func(...any) error) error {
			var key, fp string
			if err := scan(&key, &fp); err != nil {
				return err
			}
			pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(key))
			if err != nil {
				return nil // unparseable: trusted nowhere, nothing to revoke
			}
			if _, ok := sections[fp]; !ok {
				sections[fp] = &krl.CertRevocations{CA: pub.Marshal()}
				k.Certs = append(k.Certs, sections[fp])
			}
			return nil
		})
	if err != nil {
		return nil, st, err
	}
	err = forEachTxRow(ctx, s, tx, `SELECT ca_fingerprint, kind, value FROM cert_revocations WHERE group_id = ?`, []any{groupID},
		func(scan func(...any) error) error {
			var caFP, kind, value string
			if err := scan(&caFP, &kind, &value); err != nil {
				return err
			}
			sect, ok := sections[caFP]
			if !ok {
				return nil
			}
			switch kind {
			case RevokeSerial:
				if n, err := strconv.ParseUint(value, 10, 64); err == nil && n != 0 {
					sect.Serials = append(sect.Serials, krl.Range{Lo: n, Hi: n})
				}
			case RevokeKeyID:
				sect.KeyIDs = append(sect.KeyIDs, value)
			case RevokeFingerprint:
				raw, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(value, "SHA256:"))
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

// GroupCAKeys lists every CA a top-level group holds, ordered by id (what
// a TrustedUserCAKeys file holds), with the KRL state of the same
// snapshot: a CA file and a KRL of one version belong together.
func (s *Store) GroupCAKeys(ctx context.Context, groupID int64) ([]*GroupCA, KRLState, error) {
	opts := &sql.TxOptions{ReadOnly: true, Isolation: s.dialect.snapshotIsolation()}
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return nil, KRLState{}, s.readErr(s.dialect.mapErr(err))
	}
	defer tx.Rollback()
	st, top, err := scanKRLState(tx.QueryRowContext(ctx, s.dialect.rebind(krlStateQuery), groupID), groupID)
	if err != nil {
		return nil, st, s.readErr(err)
	}
	if !top {
		return nil, st, ErrNotTopLevel
	}
	var out []*GroupCA
	err = forEachTxRow(ctx, s, tx, `SELECT `+caCols+` FROM group_cas WHERE group_id = ? ORDER BY id`, []any{groupID},
		func(scan func(...any) error) error {
			c, err := scanCA(scanFunc(scan))
			if err != nil {
				return err
			}
			out = append(out, c)
			return nil
		})
	return out, st, err
}

func forEachTxRow(ctx context.Context, s *Store, tx *sql.Tx, query string, args []any, fn func(scan func(...any) error) error) error {
	rows, err := tx.QueryContext(ctx, s.dialect.rebind(query), args...)
	if err != nil {
		return s.readErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows.Scan); err != nil {
			return err
		}
	}
	return s.readErr(rows.Err())
}
