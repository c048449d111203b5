package keystore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"time"
)

// TokenPrefix starts every personal access token.
const TokenPrefix = "kgpat-"

// NewTokenSecret returns a fresh random token: "kgpat-" and 32 URL-safe characters.
func NewTokenSecret() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic("keystore: crypto/rand failed: " + err.Error())
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// TokenDigest is what the store keeps of a token: its SHA-256, hex.
func TokenDigest(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// TokenInput describes a token to create.
type TokenInput struct {
	Name      string
	Scopes    []string
	ExpiresAt *time.Time
	// Secret, when set, is used instead of a generated one (bootstrap).
	Secret string
}

const tokenCols = `id, user_id, name, scopes, expires_at, revoked, created_at, last_used_at`

func scanToken(row interface{ Scan(...any) error }) (*Token, error) {
	var tk Token
	var scopes string
	var exp, used sql.NullInt64
	var created int64
	var revoked int
	if err := row.Scan(&tk.ID, &tk.UserID, &tk.Name, &scopes, &exp, &revoked, &created, &used); err != nil {
		return nil, err
	}
	tk.Scopes = strings.Split(scopes, ",")
	tk.ExpiresAt = fromNullMS(exp)
	tk.Revoked = revoked != 0
	tk.CreatedAt = fromMS(created)
	tk.LastUsedAt = fromNullMS(used)
	return &tk, nil
}

func validateScopes(p problems, scopes []string) []string {
	if len(scopes) == 0 {
		p.add("scopes", "can't be blank")
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, sc := range scopes {
		sc = strings.TrimSpace(sc)
		if sc != ScopeAPI && sc != ScopeReadAPI {
			p.add("scopes", "can contain only api and read_api")
			return nil
		}
		if !seen[sc] {
			seen[sc] = true
			out = append(out, sc)
		}
	}
	return out
}

// CreateToken creates a personal access token for userID and returns it
// with its secret, which is not kept and cannot be shown again.
func (s *Store) CreateToken(ctx context.Context, a Actor, userID int64, in TokenInput) (*Token, string, error) {
	p := problems{}
	validateText(p, "name", in.Name, true)
	scopes := validateScopes(p, in.Scopes)
	if in.ExpiresAt != nil && !in.ExpiresAt.After(s.now()) {
		p.add("expires_at", "must be in the future")
	}
	if err := p.err(); err != nil {
		return nil, "", err
	}
	secret := in.Secret
	if secret == "" {
		secret = NewTokenSecret()
	}
	tk := &Token{UserID: userID, Name: in.Name, Scopes: scopes, ExpiresAt: truncMS(in.ExpiresAt)}
	err := s.write(ctx, a, func(t *tx) error {
		if err := t.mustExist(ctx, "users", userID, "User"); err != nil {
			return err
		}
		tk.CreatedAt = t.now
		id, err := t.insert(ctx, `INSERT INTO personal_access_tokens (user_id, name, scopes, digest, expires_at, revoked, created_at)
			VALUES (?, ?, ?, ?, ?, 0, ?)`, userID, tk.Name, strings.Join(scopes, ","), TokenDigest(secret), msPtr(tk.ExpiresAt), ms(t.now))
		if err != nil {
			return err
		}
		tk.ID = id
		return t.record(ctx, "personal_access_token_created", "token", id, "create",
			map[string]any{"user_id": userID, "name": tk.Name, "scopes": scopes})
	})
	if err != nil {
		return nil, "", err
	}
	return tk, secret, nil
}

// Authenticate finds the active token with this secret and its user. It
// returns ErrNotFound for unknown, revoked or expired tokens.
func (s *Store) Authenticate(ctx context.Context, secret string) (*Token, *User, error) {
	if len(secret) < 20 || len(secret) > 200 {
		return nil, nil, notFound("Token")
	}
	digest := TokenDigest(secret)
	var stored string
	row := s.queryRow(ctx, `SELECT `+tokenCols+`, digest FROM personal_access_tokens WHERE digest = ?`, digest)
	var tk Token
	var scopes string
	var exp, used sql.NullInt64
	var created int64
	var revoked int
	err := row.Scan(&tk.ID, &tk.UserID, &tk.Name, &scopes, &exp, &revoked, &created, &used, &stored)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, notFound("Token")
	} else if err != nil {
		return nil, nil, err
	}
	if subtle.ConstantTimeCompare([]byte(stored), []byte(digest)) != 1 {
		return nil, nil, notFound("Token")
	}
	tk.Scopes = strings.Split(scopes, ",")
	tk.ExpiresAt = fromNullMS(exp)
	tk.Revoked = revoked != 0
	tk.CreatedAt = fromMS(created)
	tk.LastUsedAt = fromNullMS(used)
	if !tk.Active(s.now()) {
		return nil, nil, notFound("Token")
	}
	u, err := s.User(ctx, tk.UserID)
	if err != nil {
		return nil, nil, err
	}
	return &tk, u, nil
}

// TouchToken records that a token was used (at most once a minute).
func (s *Store) TouchToken(ctx context.Context, tk *Token) error {
	now := s.now()
	if tk.LastUsedAt != nil && now.Sub(*tk.LastUsedAt) < time.Minute {
		return nil
	}
	_, err := s.db.ExecContext(ctx, s.dialect.rebind(`UPDATE personal_access_tokens SET last_used_at = ? WHERE id = ?`), ms(now), tk.ID)
	return s.dialect.mapErr(err)
}

// Token returns a token by id.
func (s *Store) Token(ctx context.Context, id int64) (*Token, error) {
	tk, err := scanToken(s.queryRow(ctx, `SELECT `+tokenCols+` FROM personal_access_tokens WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("Token")
	}
	return tk, err
}

// ListTokens lists tokens, of one user when userID is not 0.
func (s *Store) ListTokens(ctx context.Context, userID int64, pg Page) ([]*Token, int, error) {
	cond, args := "1=1", []any{}
	if userID != 0 {
		cond, args = "user_id = ?", []any{userID}
	}
	total, err := s.count(ctx, `SELECT COUNT(*) FROM personal_access_tokens WHERE `+cond, args...)
	if err != nil {
		return nil, 0, err
	}
	limit, offset := pg.limitOffset()
	rows, err := s.query(ctx, `SELECT `+tokenCols+` FROM personal_access_tokens WHERE `+cond+` ORDER BY id LIMIT ? OFFSET ?`, append(args, limit, offset)...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []*Token
	for rows.Next() {
		tk, err := scanToken(rows)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, tk)
	}
	return out, total, rows.Err()
}

// RevokeToken revokes a token.
func (s *Store) RevokeToken(ctx context.Context, a Actor, id int64) error {
	return s.write(ctx, a, func(t *tx) error {
		res, err := t.exec(ctx, `UPDATE personal_access_tokens SET revoked = 1 WHERE id = ? AND revoked = 0`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return notFound("Token")
		}
		return t.record(ctx, "personal_access_token_revoked", "token", id, "update", nil)
	})
}

// EnsureAdmin makes sure an admin user exists. If secret is not empty, the
// user "root" exists and secret is a valid api token for it (idempotent). If
// secret is empty and no admin exists, it creates root with a fresh token and
// returns that token's secret; otherwise it returns "".
func (s *Store) EnsureAdmin(ctx context.Context, secret string) (string, error) {
	if secret != "" && (len(secret) < 20 || len(secret) > 200) {
		return "", errors.New("keystore: KEYGATE_ADMIN_TOKEN must be 20 to 200 characters")
	}
	root, err := s.UserByUsername(ctx, "root")
	if err != nil && !errors.Is(err, ErrNotFound) {
		return "", err
	}
	if secret == "" {
		n, err := s.count(ctx, `SELECT COUNT(*) FROM users WHERE is_admin = 1`)
		if err != nil || n > 0 {
			return "", err
		}
		secret = NewTokenSecret()
	} else if root != nil {
		var n int
		n, err = s.count(ctx, `SELECT COUNT(*) FROM personal_access_tokens WHERE digest = ? AND user_id = ? AND revoked = 0`,
			TokenDigest(secret), root.ID)
		if err != nil {
			return "", err
		}
		if n > 0 && root.IsAdmin && root.Active() {
			return "", nil
		}
	}
	sys := Actor{}
	if root == nil {
		yes, name, username, email := true, "Administrator", "root", "root@localhost"
		if root, err = s.CreateUser(ctx, sys, UserInput{Username: &username, Email: &email, Name: &name, IsAdmin: &yes}); err != nil {
			return "", err
		}
	} else {
		yes := true
		if _, err := s.UpdateUser(ctx, sys, root.ID, UserInput{IsAdmin: &yes}); err != nil {
			return "", err
		}
		if _, err := s.SetUserState(ctx, sys, root.ID, StateActive); err != nil {
			return "", err
		}
	}
	n, err := s.count(ctx, `SELECT COUNT(*) FROM personal_access_tokens WHERE digest = ? AND user_id = ? AND revoked = 0`,
		TokenDigest(secret), root.ID)
	if err != nil {
		return "", err
	}
	if n == 0 {
		if _, _, err := s.CreateToken(ctx, sys, root.ID, TokenInput{Name: "bootstrap", Scopes: []string{ScopeAPI}, Secret: secret}); err != nil {
			return "", err
		}
	}
	return secret, nil
}

// mustExist returns a NotFoundError when table has no row with id.
func (t *tx) mustExist(ctx context.Context, table string, id int64, what string) error {
	var one int
	err := t.queryRow(ctx, `SELECT 1 FROM `+table+` WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound(what)
	}
	return err
}

func truncMS(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.UTC().Truncate(time.Millisecond)
	return &v
}
