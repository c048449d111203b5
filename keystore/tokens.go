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
	"slices"
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

func scanToken(row rowScanner) (*Token, error) {
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
		if sc != ScopeAPI && sc != ScopeReadAPI && sc != ScopeSudo {
			p.add("scopes", "can contain only api, read_api and sudo")
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
		var admin int
		if err := t.queryRow(ctx, `SELECT is_admin FROM users WHERE id = ?`, userID).Scan(&admin); errors.Is(err, sql.ErrNoRows) {
			return notFound("User")
		} else if err != nil {
			return err
		}
		if admin == 0 && slices.Contains(scopes, ScopeSudo) {
			return invalid("scopes", "can contain sudo only for an administrator")
		}
		tk.CreatedAt = t.now
		id, err := t.insert(ctx, `INSERT INTO personal_access_tokens (user_id, name, scopes, digest, expires_at, revoked, created_at)
			VALUES (?, ?, ?, ?, ?, 0, ?)`, userID, tk.Name, strings.Join(scopes, ","), TokenDigest(secret), msPtr(tk.ExpiresAt), ms(t.now))
		if err != nil {
			return err
		}
		tk.ID = id
		return t.record(ctx, "personal_access_token_created", EntityToken, id, "create",
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
	if s.readOnly {
		return ErrReadOnly
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
	return s.FindTokens(ctx, TokenFilter{UserID: userID}, pg)
}

// TokenFilter narrows FindTokens, with GitLab's filters for listing
// personal access tokens. Zero values do not filter.
type TokenFilter struct {
	UserID  int64
	Revoked *bool
	// State is "active" (neither revoked nor expired at the store's clock)
	// or "inactive" (revoked or expired).
	State          string
	Search         string // substring of the name, case-insensitive (ASCII)
	CreatedAfter   *time.Time
	CreatedBefore  *time.Time
	ExpiresAfter   *time.Time
	ExpiresBefore  *time.Time
	LastUsedAfter  *time.Time
	LastUsedBefore *time.Time
}

// FindTokens lists tokens matching f, ordered by id.
func (s *Store) FindTokens(ctx context.Context, f TokenFilter, pg Page) ([]*Token, int, error) {
	where := []string{"1=1"}
	var args []any
	add := func(cond string, a ...any) {
		where = append(where, cond)
		args = append(args, a...)
	}
	if f.UserID != 0 {
		add("user_id = ?", f.UserID)
	}
	if f.Revoked != nil {
		add("revoked = ?", boolInt(*f.Revoked))
	}
	now := ms(s.now())
	switch f.State {
	case "":
	case "active":
		add("(revoked = 0 AND (expires_at IS NULL OR expires_at > ?))", now)
	case "inactive":
		add("(revoked = 1 OR (expires_at IS NOT NULL AND expires_at <= ?))", now)
	default:
		return nil, 0, invalid("state", "does not have a valid value")
	}
	if f.Search != "" {
		add(s.dialect.contains("lower(name)", "?"), asciiLower(f.Search))
	}
	for _, r := range []struct {
		t    *time.Time
		cond string
	}{
		{f.CreatedAfter, "created_at > ?"}, {f.CreatedBefore, "created_at < ?"},
		{f.ExpiresAfter, "expires_at > ?"}, {f.ExpiresBefore, "expires_at < ?"},
		{f.LastUsedAfter, "last_used_at > ?"}, {f.LastUsedBefore, "last_used_at < ?"},
	} {
		if r.t != nil {
			add(r.cond, ms(*r.t))
		}
	}
	return listPage(ctx, s, tokenCols, `personal_access_tokens WHERE `+strings.Join(where, " AND "), args, "id", pg, scanToken)
}

// RevokeToken revokes a token.
func (s *Store) RevokeToken(ctx context.Context, a Actor, id int64) error {
	return s.write(ctx, a, func(t *tx) error {
		if err := t.execOne(ctx, "Token", `UPDATE personal_access_tokens SET revoked = 1 WHERE id = ? AND revoked = 0`, id); err != nil {
			return err
		}
		return t.record(ctx, "personal_access_token_revoked", EntityToken, id, "update", nil)
	})
}

// HasAdmin reports whether any admin user exists.
func (s *Store) HasAdmin(ctx context.Context) (bool, error) {
	n, err := s.count(ctx, `SELECT COUNT(*) FROM users WHERE is_admin = 1`)
	return n > 0, err
}

// AdminToken is what ApplyAdminToken did with a configured admin token.
type AdminToken int

const (
	// AdminTokenValid: the token already is a valid token of root, an
	// active admin; nothing was written.
	AdminTokenValid AdminToken = iota
	// AdminTokenCreated: the keystore had no admin; root is one now and
	// holds the token.
	AdminTokenCreated
	// AdminTokenNotApplied: the keystore has an admin and the token is not
	// a valid token of root (unknown, revoked or expired, or root is
	// blocked or no longer an admin). It is not applied: what admins took
	// away stays taken away (ResetAdminToken is the explicit way back).
	AdminTokenNotApplied
)

// EnsureAdmin makes sure an admin can log in on a keystore's first start.
// With an empty secret and no admin yet, it creates root with a fresh token
// and returns that token's secret; otherwise "". With a secret, see
// ApplyAdminToken; the secret is returned when its token was created.
func (s *Store) EnsureAdmin(ctx context.Context, secret string) (string, error) {
	if secret == "" {
		secret = NewTokenSecret()
		created, err := s.BootstrapAdmin(ctx, secret, nil)
		if err != nil || !created {
			return "", err
		}
		return secret, nil
	}
	got, err := s.ApplyAdminToken(ctx, secret)
	if err != nil || got != AdminTokenCreated {
		return "", err
	}
	return secret, nil
}

// ApplyAdminToken applies a configured admin token (KEYGATE_ADMIN_TOKEN)
// to a keystore without an admin: root is created (or made an active
// admin) holding an api token with this secret. On a keystore that has an
// admin it writes nothing: the token works if it still is a valid token
// of an active admin root, and is not applied otherwise, so that a
// restart never undoes an admin's revocation of the token or blocking of
// root. Root and its token are written in one serialised transaction, so
// nodes starting together on an empty database create one root; when the
// token is already valid nothing is written at all (a node can start on a
// database that does not take writes).
func (s *Store) ApplyAdminToken(ctx context.Context, secret string) (AdminToken, error) {
	if len(secret) < 20 || len(secret) > 200 {
		return 0, errors.New("keystore: KEYGATE_ADMIN_TOKEN must be 20 to 200 characters")
	}
	digest := TokenDigest(secret)
	if ok, err := s.rootTokenValid(ctx, s.queryRow, digest); err != nil || ok {
		return AdminTokenValid, err
	}
	if has, err := s.HasAdmin(ctx); err != nil {
		return 0, err
	} else if has {
		return AdminTokenNotApplied, nil
	}
	result := AdminTokenNotApplied
	err := s.write(ctx, Actor{}, func(t *tx) error {
		var n int
		if err := t.queryRow(ctx, `SELECT COUNT(*) FROM users WHERE is_admin = 1`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			// Another node got here first, with this token or another.
			ok, err := s.rootTokenValid(ctx, t.queryRow, digest)
			if ok {
				result = AdminTokenValid
			}
			return err
		}
		if _, err := t.ensureRoot(ctx, digest); err != nil {
			return err
		}
		result = AdminTokenCreated
		return nil
	})
	return result, err
}

// rootTokenValid reports whether digest is an unrevoked, unexpired token of
// root while root is an active admin, read through query.
func (s *Store) rootTokenValid(ctx context.Context, query func(ctx context.Context, q string, args ...any) rowScanner, digest string) (bool, error) {
	var state string
	var isAdmin, revoked int
	var exp sql.NullInt64
	err := query(ctx, `SELECT u.state, u.is_admin, t.revoked, t.expires_at FROM personal_access_tokens t
		JOIN users u ON u.id = t.user_id WHERE t.digest = ? AND lower(u.username) = 'root'`, digest).
		Scan(&state, &isAdmin, &revoked, &exp)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, s.dialect.mapErr(err)
	}
	return state == StateActive && isAdmin != 0 && revoked == 0 && (!exp.Valid || exp.Int64 > ms(s.now())), nil
}

// ResetAdminToken is an operator's explicit way back in (keygate
// reset-admin-token): root becomes an active admin (created if need be)
// holding a valid api token with this secret, restored if it was revoked.
// It reports whether anything changed.
func (s *Store) ResetAdminToken(ctx context.Context, a Actor, secret string) (bool, error) {
	if len(secret) < 20 || len(secret) > 200 {
		return false, errors.New("keystore: an admin token must be 20 to 200 characters")
	}
	changed := false
	err := s.write(ctx, a, func(t *tx) error {
		var err error
		changed, err = t.ensureRoot(ctx, TokenDigest(secret))
		return err
	})
	return changed, err
}

// BootstrapAdmin is the first start of a keystore without a configured
// admin token: unless an admin already exists, it makes root an active
// admin (creating it if need be) with an api token whose secret is secret,
// and reports true. The check and the creation are one serialised write
// transaction (the cluster-wide write lock on PostgreSQL, BEGIN IMMEDIATE
// on SQLite), so of several nodes starting at once on an empty database
// exactly one creates the token; the others report false.
//
// keep, if not nil, runs only when the token is created, inside the
// transaction before it commits: the caller stores the secret there, so the
// commit never makes a token nobody can read. If keep fails, nothing is
// created.
func (s *Store) BootstrapAdmin(ctx context.Context, secret string, keep func() error) (bool, error) {
	if len(secret) < 20 || len(secret) > 200 {
		return false, errors.New("keystore: an admin token must be 20 to 200 characters")
	}
	// The common case, a restart, needs no write transaction.
	if has, err := s.HasAdmin(ctx); err != nil || has {
		return false, err
	}
	created := false
	err := s.write(ctx, Actor{}, func(t *tx) error {
		var n int
		if err := t.queryRow(ctx, `SELECT COUNT(*) FROM users WHERE is_admin = 1`).Scan(&n); err != nil || n > 0 {
			return err
		}
		if _, err := t.ensureRoot(ctx, TokenDigest(secret)); err != nil {
			return err
		}
		if keep != nil {
			if err := keep(); err != nil {
				return err
			}
		}
		created = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return created, nil
}

// ensureRoot makes root an active admin (creating it if need be) holding a
// valid api token with this digest; it reports whether it changed
// anything.
func (t *tx) ensureRoot(ctx context.Context, digest string) (bool, error) {
	var rootID int64
	var admin, blocked bool
	var state string
	var isAdmin int
	changed := false
	err := t.queryRow(ctx, `SELECT id, state, is_admin FROM users WHERE lower(username) = 'root'`).Scan(&rootID, &state, &isAdmin)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		changed = true
		if rootID, err = t.insert(ctx, `INSERT INTO users (username, email, name, state, is_admin, created_at) VALUES (?, ?, ?, ?, 1, ?)`,
			"root", "root@localhost", "Administrator", StateActive, ms(t.now)); err != nil {
			return false, err
		}
		if err := t.record(ctx, "user_created", EntityUser, rootID, "create", map[string]any{"username": "root", "is_admin": true}); err != nil {
			return false, err
		}
		admin = true
	case err != nil:
		return false, err
	default:
		admin, blocked = isAdmin != 0, state != StateActive
	}
	if !admin || blocked {
		changed = true
		if _, err := t.exec(ctx, `UPDATE users SET is_admin = 1, state = ? WHERE id = ?`, StateActive, rootID); err != nil {
			return false, err
		}
		if err := t.record(ctx, "user_updated", EntityUser, rootID, "update", map[string]any{"is_admin": true, "state": StateActive}); err != nil {
			return false, err
		}
	}
	var tokenID, owner int64
	var revoked int
	var exp sql.NullInt64
	err = t.queryRow(ctx, `SELECT id, user_id, revoked, expires_at FROM personal_access_tokens WHERE digest = ?`, digest).
		Scan(&tokenID, &owner, &revoked, &exp)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		id, err := t.insert(ctx, `INSERT INTO personal_access_tokens (user_id, name, scopes, digest, revoked, created_at) VALUES (?, ?, ?, ?, 0, ?)`,
			rootID, "bootstrap", ScopeAPI, digest, ms(t.now))
		if err != nil {
			return false, err
		}
		return true, t.record(ctx, "personal_access_token_created", EntityToken, id, "create",
			map[string]any{"user_id": rootID, "name": "bootstrap", "scopes": []string{ScopeAPI}})
	case err != nil:
		return false, err
	case owner != rootID:
		return false, errors.New("keystore: KEYGATE_ADMIN_TOKEN is already a token of another user")
	case revoked != 0 || exp.Valid:
		if _, err := t.exec(ctx, `UPDATE personal_access_tokens SET revoked = 0, expires_at = NULL, scopes = ? WHERE id = ?`, ScopeAPI, tokenID); err != nil {
			return false, err
		}
		return true, t.record(ctx, "personal_access_token_restored", EntityToken, tokenID, "update", nil)
	}
	return changed, nil
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
