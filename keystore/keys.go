package keystore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
)

// KeyInput describes a user SSH key to add.
type KeyInput struct {
	Title     string
	Key       string
	UsageType string // "" means auth_and_signing
	ExpiresAt *time.Time
}

const keyCols = `id, user_id, title, key, type, bits, fingerprint_sha256, fingerprint_md5, usage_type, expires_at, created_at, last_used_at`

func scanKey(row rowScanner) (*Key, error) {
	var k Key
	var exp, used sql.NullInt64
	var created int64
	if err := row.Scan(&k.ID, &k.UserID, &k.Title, &k.Key, &k.Type, &k.Bits, &k.FingerprintSHA256, &k.FingerprintMD5,
		&k.UsageType, &exp, &created, &used); err != nil {
		return nil, err
	}
	k.ExpiresAt = fromNullMS(exp)
	k.CreatedAt = fromMS(created)
	k.LastUsedAt = fromNullMS(used)
	return &k, nil
}

// ValidUsageType reports whether u is a usage type GitLab knows.
func ValidUsageType(u string) bool {
	return u == UsageAuth || u == UsageSigning || u == UsageAuthAndSigning
}

// validateKeyInput checks a key to add and returns it parsed.
func (s *Store) validateKeyInput(in *KeyInput) (*ParsedKey, error) {
	p := problems{}
	in.Title = strings.TrimSpace(in.Title)
	validateText(p, "title", in.Title, true)
	if in.UsageType == "" {
		in.UsageType = UsageAuthAndSigning
	}
	if !ValidUsageType(in.UsageType) {
		p.add("usage_type", "does not have a valid value; must be auth, signing or auth_and_signing")
	}
	if in.ExpiresAt != nil && !in.ExpiresAt.After(s.now()) {
		p.add("expires_at", "has expired; must be in the future")
	}
	pk, err := ParseUserKey(in.Key)
	if err := p.with(err); err != nil {
		return nil, err
	}
	return pk, nil
}

// CreateKey adds an SSH key to a user.
func (s *Store) CreateKey(ctx context.Context, a Actor, userID int64, in KeyInput) (*Key, error) {
	pk, err := s.validateKeyInput(&in)
	if err != nil {
		return nil, err
	}
	k := &Key{UserID: userID, Title: in.Title, Key: pk.Normalized, Type: pk.Type, Bits: pk.Bits,
		FingerprintSHA256: pk.FingerprintSHA256, FingerprintMD5: pk.FingerprintMD5,
		UsageType: in.UsageType, ExpiresAt: truncMS(in.ExpiresAt)}
	err = s.write(ctx, a, func(t *tx) error {
		if err := t.mustExist(ctx, "users", userID, "User"); err != nil {
			return err
		}
		if err := t.fingerprintFree(ctx, pk.FingerprintSHA256); err != nil {
			return err
		}
		if err := t.checkKeyPolicy(ctx, pk, k.ExpiresAt); err != nil {
			return err
		}
		if err := t.notRevoked(ctx, pk.FingerprintSHA256); err != nil {
			return err
		}
		k.CreatedAt = t.now
		id, err := t.insert(ctx, `INSERT INTO keys (user_id, title, key, type, bits, fingerprint_sha256, fingerprint_md5, usage_type, expires_at, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, userID, k.Title, k.Key, k.Type, k.Bits, k.FingerprintSHA256, k.FingerprintMD5,
			k.UsageType, msPtr(k.ExpiresAt), ms(t.now))
		if err != nil {
			return err
		}
		k.ID = id
		return t.record(ctx, "key_created", EntityKey, id, "create", map[string]any{
			"user_id": userID, "fingerprint": k.FingerprintSHA256, "usage_type": k.UsageType, "title": k.Title})
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// fingerprintFree refuses a fingerprint already used by a user key or a
// deploy key (one fingerprint, one identity).
func (t *tx) fingerprintFree(ctx context.Context, fp string) error {
	var one int
	err := t.queryRow(ctx, `SELECT 1 FROM keys WHERE fingerprint_sha256 = ? UNION ALL SELECT 1 FROM deploy_keys WHERE fingerprint_sha256 = ?`, fp, fp).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	} else if err != nil {
		return err
	}
	return invalid("fingerprint_sha256", "has already been taken")
}

// MergeKeyUsage implements GitHub's view of keys: it adds usage ("auth" or
// "signing") to the user's key with the same fingerprint, or creates the key
// with that usage. It reports whether a key was created.
func (s *Store) MergeKeyUsage(ctx context.Context, a Actor, userID int64, in KeyInput) (*Key, bool, error) {
	usage := in.UsageType
	pk, err := s.validateKeyInput(&in)
	if err != nil {
		return nil, false, err
	}
	var existing *Key
	err = s.write(ctx, a, func(t *tx) error {
		k, err := scanKey(t.queryRow(ctx, `SELECT `+keyCols+` FROM keys WHERE fingerprint_sha256 = ?`, pk.FingerprintSHA256))
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		} else if err != nil {
			return err
		}
		if k.UserID != userID || k.UsageType == usage || k.UsageType == UsageAuthAndSigning {
			return invalid("key", "is already in use")
		}
		k.UsageType = UsageAuthAndSigning
		if _, err := t.exec(ctx, `UPDATE keys SET usage_type = ? WHERE id = ?`, k.UsageType, k.ID); err != nil {
			return err
		}
		existing = k
		return t.record(ctx, "key_updated", EntityKey, k.ID, "update", map[string]any{"usage_type": k.UsageType})
	})
	if err != nil {
		return nil, false, err
	}
	if existing != nil {
		return existing, false, nil
	}
	k, err := s.CreateKey(ctx, a, userID, in)
	return k, err == nil, err
}

// DropKeyUsage removes usage ("auth" or "signing") from a user's key: a key
// with both usages keeps the other, a key with only this one is deleted. A
// key without this usage is not found.
func (s *Store) DropKeyUsage(ctx context.Context, a Actor, userID, keyID int64, usage string) error {
	if usage != UsageAuth && usage != UsageSigning {
		return invalid("usage_type", "must be auth or signing")
	}
	return s.write(ctx, a, func(t *tx) error {
		k, err := scanKey(t.queryRow(ctx, `SELECT `+keyCols+` FROM keys WHERE id = ? AND user_id = ?`, keyID, userID))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("Key")
		} else if err != nil {
			return err
		}
		switch {
		case k.UsageType == usage:
			if _, err := t.exec(ctx, `DELETE FROM keys WHERE id = ?`, keyID); err != nil {
				return err
			}
			if err := t.keepDeleted(ctx, k, canSign(k.UsageType)); err != nil {
				return err
			}
			return t.record(ctx, "key_deleted", EntityKey, keyID, "delete", map[string]any{"user_id": userID, "fingerprint": k.FingerprintSHA256})
		case k.UsageType == UsageAuthAndSigning:
			rest := UsageAuth
			if usage == UsageAuth {
				rest = UsageSigning
			}
			if _, err := t.exec(ctx, `UPDATE keys SET usage_type = ? WHERE id = ?`, rest, keyID); err != nil {
				return err
			}
			if usage == UsageSigning { // it signed until now
				if err := t.keepDeleted(ctx, k, true); err != nil {
					return err
				}
			}
			return t.record(ctx, "key_updated", EntityKey, keyID, "update", map[string]any{"usage_type": rest})
		}
		return notFound("Key")
	})
}

// Key returns a key by id.
func (s *Store) Key(ctx context.Context, id int64) (*Key, error) {
	k, err := scanKey(s.queryRow(ctx, `SELECT `+keyCols+` FROM keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("Key")
	}
	return k, err
}

// KeyByFingerprint finds a key by "SHA256:…" or MD5 "aa:bb:…" fingerprint.
func (s *Store) KeyByFingerprint(ctx context.Context, fp string) (*Key, error) {
	kind, v, ok := NormalizeFingerprint(fp)
	if !ok {
		return nil, notFound("Key")
	}
	col := "fingerprint_sha256"
	if kind == "md5" {
		col = "fingerprint_md5"
	}
	k, err := scanKey(s.queryRow(ctx, `SELECT `+keyCols+` FROM keys WHERE `+col+` = ? ORDER BY id LIMIT 1`, v))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("Key")
	}
	return k, err
}

// KeyFilter narrows ListKeys.
type KeyFilter struct {
	UserID int64    // 0: all users
	Usages []string // empty: any usage
	// Public leaves out what only the key's owner and admins see
	// (PublicKey): expired keys, and every key of a user who is not active.
	Public bool
}

// ListKeys lists keys ordered by id.
func (s *Store) ListKeys(ctx context.Context, f KeyFilter, pg Page) ([]*Key, int, error) {
	where := []string{"1=1"}
	var args []any
	if f.UserID != 0 {
		where = append(where, "user_id = ?")
		args = append(args, f.UserID)
	}
	if len(f.Usages) > 0 {
		where = append(where, "usage_type IN (?"+strings.Repeat(", ?", len(f.Usages)-1)+")")
		for _, u := range f.Usages {
			args = append(args, u)
		}
	}
	if f.Public {
		where = append(where, publicKeyWhere)
		args = append(args, ms(s.now()), StateActive)
	}
	return listPage(ctx, s, keyCols, `keys WHERE `+strings.Join(where, " AND "), args, "id", pg, scanKey)
}

// DeleteKey deletes a key; userID, when not 0, must own it.
func (s *Store) DeleteKey(ctx context.Context, a Actor, userID, keyID int64) error {
	return s.write(ctx, a, func(t *tx) error {
		k, err := scanKey(t.queryRow(ctx, `SELECT `+keyCols+` FROM keys WHERE id = ?`, keyID))
		if errors.Is(err, sql.ErrNoRows) || (err == nil && userID != 0 && k.UserID != userID) {
			return notFound("Key")
		} else if err != nil {
			return err
		}
		if _, err := t.exec(ctx, `DELETE FROM keys WHERE id = ?`, keyID); err != nil {
			return err
		}
		if err := t.keepDeleted(ctx, k, canSign(k.UsageType)); err != nil {
			return err
		}
		return t.record(ctx, "key_deleted", EntityKey, keyID, "delete", map[string]any{"user_id": k.UserID, "fingerprint": k.FingerprintSHA256})
	})
}
