package keystore

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// MaxGPGKeyLength bounds an armored GPG public key.
const MaxGPGKeyLength = 256 << 10

// ParsedGPGKey is a validated OpenPGP public key.
type ParsedGPGKey struct {
	Armored      string
	Fingerprint  string // upper-case hex
	PrimaryKeyID string // upper-case hex, 16 digits
	Emails       []string
}

// ParseGPGKey validates an armored OpenPGP public key holding one primary key.
func ParseGPGKey(armored string) (*ParsedGPGKey, error) {
	armored = strings.TrimSpace(armored)
	switch {
	case armored == "":
		return nil, invalid("key", "can't be blank")
	case len(armored) > MaxGPGKeyLength:
		return nil, invalid("key", "is too long (maximum is 262144 characters)")
	case strings.Contains(armored, "PRIVATE KEY BLOCK"):
		return nil, invalid("key", "is a private key; export the public key (gpg --armor --export) instead, and consider this private key exposed")
	case !strings.Contains(armored, "-----BEGIN PGP PUBLIC KEY BLOCK-----"):
		return nil, invalid("key", "must be an ASCII-armored PGP public key block")
	}
	ents, err := readKeyRing(armored)
	if err != nil {
		return nil, invalid("key", "is not a valid PGP public key")
	}
	if len(ents) != 1 {
		return nil, invalid("key", "must hold exactly one primary key")
	}
	e := ents[0]
	if e.PrivateKey != nil {
		return nil, invalid("key", "is a private key; export the public key instead")
	}
	pk := &ParsedGPGKey{
		Armored:      armored,
		Fingerprint:  strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint)),
		PrimaryKeyID: fmt.Sprintf("%016X", e.PrimaryKey.KeyId),
	}
	seen := map[string]bool{}
	for _, id := range e.Identities {
		if id.UserId == nil || id.UserId.Email == "" || seen[strings.ToLower(id.UserId.Email)] {
			continue
		}
		seen[strings.ToLower(id.UserId.Email)] = true
		pk.Emails = append(pk.Emails, id.UserId.Email)
	}
	return pk, nil
}

// readKeyRing parses armored keys, turning parser panics on hostile input
// into errors.
func readKeyRing(armored string) (ents openpgp.EntityList, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("keystore: malformed PGP key: %v", r)
		}
	}()
	return openpgp.ReadArmoredKeyRing(bytes.NewReader([]byte(armored)))
}

const gpgCols = `id, user_id, key, fingerprint, primary_keyid, emails, created_at, revoked_at`

func scanGPG(row rowScanner) (*GPGKey, error) {
	var g GPGKey
	var emails string
	var created int64
	var revoked sql.NullInt64
	if err := row.Scan(&g.ID, &g.UserID, &g.Key, &g.Fingerprint, &g.PrimaryKeyID, &emails, &created, &revoked); err != nil {
		return nil, err
	}
	if emails != "" {
		g.Emails = strings.Split(emails, "\n")
	}
	g.CreatedAt = fromMS(created)
	g.RevokedAt = fromNullMS(revoked)
	return &g, nil
}

// CreateGPGKey adds a GPG key to a user.
func (s *Store) CreateGPGKey(ctx context.Context, a Actor, userID int64, armored string) (*GPGKey, error) {
	pk, err := ParseGPGKey(armored)
	if err != nil {
		return nil, err
	}
	g := &GPGKey{UserID: userID, Key: pk.Armored, Fingerprint: pk.Fingerprint, PrimaryKeyID: pk.PrimaryKeyID, Emails: pk.Emails}
	err = s.write(ctx, a, func(t *tx) error {
		if err := t.mustExist(ctx, "users", userID, "User"); err != nil {
			return err
		}
		var one int
		err := t.queryRow(ctx, `SELECT 1 FROM gpg_keys WHERE fingerprint = ?`, g.Fingerprint).Scan(&one)
		if err == nil {
			return invalid("fingerprint", "has already been taken")
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		g.CreatedAt = t.now
		id, err := t.insert(ctx, `INSERT INTO gpg_keys (user_id, key, fingerprint, primary_keyid, emails, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			userID, g.Key, g.Fingerprint, g.PrimaryKeyID, strings.Join(g.Emails, "\n"), ms(t.now))
		if err != nil {
			return err
		}
		g.ID = id
		return t.record(ctx, "gpg_key_created", EntityGPGKey, id, "create", map[string]any{"user_id": userID, "fingerprint": g.Fingerprint})
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// GPGKey returns a user's GPG key.
func (s *Store) GPGKey(ctx context.Context, userID, id int64) (*GPGKey, error) {
	g, err := scanGPG(s.queryRow(ctx, `SELECT `+gpgCols+` FROM gpg_keys WHERE id = ? AND user_id = ?`, id, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("GPG Key")
	}
	return g, err
}

// ListGPGKeys lists a user's GPG keys ordered by id.
func (s *Store) ListGPGKeys(ctx context.Context, userID int64, pg Page) ([]*GPGKey, int, error) {
	return listPage(ctx, s, gpgCols, `gpg_keys WHERE user_id = ?`, []any{userID}, "id", pg, scanGPG)
}

// ListPublicGPGKeys lists the GPG keys of a user that anyone may see
// (PublicGPGKey), ordered by id.
func (s *Store) ListPublicGPGKeys(ctx context.Context, userID int64, pg Page) ([]*GPGKey, int, error) {
	return listPage(ctx, s, gpgCols, `gpg_keys WHERE user_id = ? AND `+publicGPGWhere, []any{userID, StateActive}, "id", pg, scanGPG)
}

// DeleteGPGKey deletes a user's GPG key.
func (s *Store) DeleteGPGKey(ctx context.Context, a Actor, userID, id int64) error {
	return s.write(ctx, a, func(t *tx) error {
		if err := t.execOne(ctx, "GPG Key", `DELETE FROM gpg_keys WHERE id = ? AND user_id = ?`, id, userID); err != nil {
			return err
		}
		return t.record(ctx, "gpg_key_deleted", EntityGPGKey, id, "delete", map[string]any{"user_id": userID})
	})
}

// RevokeGPGKey marks a user's GPG key revoked (signatures made with it no
// longer verify). Revoking twice is not an error.
func (s *Store) RevokeGPGKey(ctx context.Context, a Actor, userID, id int64) error {
	return s.write(ctx, a, func(t *tx) error {
		if _, err := t.exec(ctx, `UPDATE gpg_keys SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL`, ms(t.now), id, userID); err != nil {
			return err
		}
		var one int
		if err := t.queryRow(ctx, `SELECT 1 FROM gpg_keys WHERE id = ? AND user_id = ?`, id, userID).Scan(&one); errors.Is(err, sql.ErrNoRows) {
			return notFound("GPG Key")
		} else if err != nil {
			return err
		}
		return t.record(ctx, "gpg_key_revoked", EntityGPGKey, id, "update", map[string]any{"user_id": userID})
	})
}
