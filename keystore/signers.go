package keystore

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// Signing keys and history: git's allowed signers file and its revocation
// file.
//
// git checks an SSH signature by the commit's time against the
// valid-before of the key's line. A signing key stays in the file after it
// expires (with valid-before = its expiry), and after it is deleted or
// loses its signing usage (rotation: valid-before = that moment, or the
// expiry if earlier), so the signatures it made while it was registered
// keep verifying. A revoked key (compromise) leaves the file and is listed
// in the revocation file, which makes every signature it made fail, and it
// can never be registered again.

// SignerEntry is a line of git's allowed signers file.
type SignerEntry struct {
	Email string
	Key   string
	// ValidBefore is when the key stopped (or stops) being a signing key:
	// its expiry, or its deletion; nil for none.
	ValidBefore *time.Time
}

// AllowedSigners lists the signing-capable keys of active users, expired
// ones included, then the keys they deleted (or stopped signing with), each
// valid before that moment; revoked keys are never listed.
//
// userID, when not 0, limits the entries to that user's keys.
func (s *Store) AllowedSigners(ctx context.Context, userID int64) ([]SignerEntry, error) {
	only, args := "", []any{UsageSigning, UsageAuthAndSigning, StateActive}
	if userID != 0 {
		only, args = ` AND k.user_id = ?`, append(args, userID)
	}
	scan := func(row rowScanner) (SignerEntry, error) {
		var e SignerEntry
		var until sql.NullInt64
		err := row.Scan(&e.Email, &e.Key, &until)
		e.ValidBefore = fromNullMS(until)
		return e, err
	}
	rows, err := s.query(ctx, `SELECT u.email, k.key, k.expires_at FROM keys k JOIN users u ON u.id = k.user_id
		WHERE k.usage_type IN (?, ?) AND u.state = ?`+only+` ORDER BY k.id`, args...)
	live, err := scanRows(rows, err, scan)
	if err != nil {
		return nil, err
	}
	rows, err = s.query(ctx, `SELECT u.email, k.key, k.signing_until FROM deleted_keys k JOIN users u ON u.id = k.user_id
		WHERE k.signing_until IS NOT NULL AND u.state = ?`+only+`
		AND NOT EXISTS (SELECT 1 FROM revoked_keys r WHERE r.fingerprint_sha256 = k.fingerprint_sha256) ORDER BY k.id`, args[2:]...)
	gone, err := scanRows(rows, err, scan)
	return append(live, gone...), err
}

// RevokedKey is a line of git's revocation file.
type RevokedKey struct {
	Key               string
	FingerprintSHA256 string
	RevokedAt         time.Time
}

// RevokedKeys lists every revoked key, oldest first.
func (s *Store) RevokedKeys(ctx context.Context) ([]RevokedKey, error) {
	rows, err := s.query(ctx, `SELECT key, fingerprint_sha256, revoked_at FROM revoked_keys ORDER BY id`)
	return scanRows(rows, err, func(row rowScanner) (RevokedKey, error) {
		var k RevokedKey
		var at int64
		err := row.Scan(&k.Key, &k.FingerprintSHA256, &at)
		k.RevokedAt = fromMS(at)
		return k, err
	})
}

// keepDeleted records key k, which is being deleted or is losing its
// signing usage (lost), in deleted_keys: a signing key stays a signer of
// what it signed until now (or its expiry, if earlier).
func (t *tx) keepDeleted(ctx context.Context, k *Key, lostSigning bool) error {
	var until any
	if lostSigning {
		u := t.now
		if k.ExpiresAt != nil && k.ExpiresAt.Before(u) {
			u = *k.ExpiresAt
		}
		until = ms(u)
	}
	_, err := t.exec(ctx, `INSERT INTO deleted_keys (key_id, user_id, title, key, fingerprint_sha256, signing_until, deleted_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, k.ID, k.UserID, k.Title, k.Key, k.FingerprintSHA256, until, ms(t.now))
	return err
}

// canSign reports whether a usage type includes signing.
func canSign(usage string) bool { return usage == UsageSigning || usage == UsageAuthAndSigning }

// notRevoked refuses a fingerprint of a revoked key: its private key is
// compromised, so it is never registered again (as a user or deploy key).
func (t *tx) notRevoked(ctx context.Context, fp string) error {
	var one int
	err := t.queryRow(ctx, `SELECT 1 FROM revoked_keys WHERE fingerprint_sha256 = ?`, fp).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	} else if err != nil {
		return err
	}
	return invalid("key", "has been revoked (its private key is compromised) and cannot be used again; generate a new key")
}

// RevokeKey revokes user userID's key keyID (any user's when userID is 0):
// the key is deleted (it no longer logs in or signs), every signature it
// made fails verification from now on (it is listed by RevokedKeys and
// leaves AllowedSigners, history included), and it can never be
// registered again. A key already deleted can still be revoked by the id
// it had (rotation first, compromise found out later).
func (s *Store) RevokeKey(ctx context.Context, a Actor, userID, keyID int64) error {
	return s.write(ctx, a, func(t *tx) error {
		k, err := scanKey(t.queryRow(ctx, `SELECT `+keyCols+` FROM keys WHERE id = ?`, keyID))
		live := err == nil
		if errors.Is(err, sql.ErrNoRows) {
			k, err = t.deletedKey(ctx, keyID)
		}
		if errors.Is(err, sql.ErrNoRows) || (err == nil && userID != 0 && k.UserID != userID) {
			return notFound("Key")
		} else if err != nil {
			return err
		}
		if live {
			if _, err := t.exec(ctx, `DELETE FROM keys WHERE id = ?`, keyID); err != nil {
				return err
			}
			if err := t.change(ctx, EntityKey, keyID, "delete"); err != nil {
				return err
			}
		}
		if _, err := t.exec(ctx, `DELETE FROM deleted_keys WHERE fingerprint_sha256 = ?`, k.FingerprintSHA256); err != nil {
			return err
		}
		if _, err := t.exec(ctx, `INSERT INTO revoked_keys (key_id, user_id, key, fingerprint_sha256, revoked_at) VALUES (?, ?, ?, ?, ?)`,
			keyID, k.UserID, k.Key, k.FingerprintSHA256, ms(t.now)); err != nil {
			return err
		}
		return t.audit(ctx, "key_revoked", string(EntityKey), keyID, map[string]any{
			"user_id": k.UserID, "fingerprint": k.FingerprintSHA256, "was_deleted": !live})
	})
}

// deletedKey reads the most recent deleted_keys row of a key id, as a Key.
func (t *tx) deletedKey(ctx context.Context, keyID int64) (*Key, error) {
	k := Key{ID: keyID}
	err := t.queryRow(ctx, `SELECT user_id, title, key, fingerprint_sha256 FROM deleted_keys WHERE key_id = ? ORDER BY id DESC LIMIT 1`,
		keyID).Scan(&k.UserID, &k.Title, &k.Key, &k.FingerprintSHA256)
	return &k, err
}
