package keystore

import (
	"context"
	"database/sql"
	"errors"
	"math"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

var pathRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]*$`)

// UserInput is the writable part of a user. Nil fields are left unchanged on
// update.
type UserInput struct {
	Username *string
	Email    *string
	Name     *string
	IsAdmin  *bool
	// EnterpriseGroupID sets the user's enterprise group (a top-level
	// group); a pointer to 0 clears it.
	EnterpriseGroupID *int64
	// GitLab's user limits (see User). An external user has
	// can_create_group false and projects_limit 0, as in GitLab; asking for
	// more in the same breath is refused rather than overridden.
	CanCreateGroup *bool
	External       *bool
	ProjectsLimit  *int
}

// applyLimits applies in's limits to u (create: u holds the defaults),
// with GitLab's rule for external users (User#ensure_user_rights_and_limits):
// external means can_create_group false and projects_limit 0; a user who
// stops being external gets the defaults back, unless the same request
// sets them. changed, if not nil, collects what changed.
func applyLimits(p problems, u *User, in UserInput, changed map[string]any) {
	wasExternal := u.External
	if in.External != nil {
		u.External = *in.External
	}
	if in.CanCreateGroup != nil {
		u.CanCreateGroup = *in.CanCreateGroup
	}
	if in.ProjectsLimit != nil {
		if *in.ProjectsLimit < 0 || *in.ProjectsLimit > math.MaxInt32 {
			p.add("projects_limit", "must be greater than or equal to 0 (and at most 2147483647)")
		}
		u.ProjectsLimit = *in.ProjectsLimit
	}
	switch {
	case u.External:
		if in.CanCreateGroup != nil && *in.CanCreateGroup {
			p.add("can_create_group", "cannot be true for an external user (external users cannot create top-level groups; set external to false)")
		}
		if in.ProjectsLimit != nil && *in.ProjectsLimit > 0 {
			p.add("projects_limit", "must be 0 for an external user (external users cannot create personal projects; set external to false)")
		}
		u.CanCreateGroup, u.ProjectsLimit = false, 0
	case wasExternal:
		if in.CanCreateGroup == nil {
			u.CanCreateGroup = true
		}
		if in.ProjectsLimit == nil {
			u.ProjectsLimit = DefaultProjectsLimit
		}
	}
	if changed != nil {
		if in.External != nil || wasExternal != u.External {
			changed["external"] = u.External
		}
		if in.CanCreateGroup != nil || in.External != nil {
			changed["can_create_group"] = u.CanCreateGroup
		}
		if in.ProjectsLimit != nil || in.External != nil {
			changed["projects_limit"] = u.ProjectsLimit
		}
	}
}

func validateUsername(p problems, v string) { validatePathName(p, "username", v, "a user id") }

// validatePathName checks a username or a group or project path: GitLab's
// path rules, and never only digits (it would be taken for idWord).
func validatePathName(p problems, field, v, idWord string) {
	switch {
	case v == "":
		p.add(field, "can't be blank")
	case len(v) > 255:
		p.add(field, "is too long (maximum is 255 characters)")
	case !pathRE.MatchString(v) || strings.HasSuffix(v, ".git") || strings.HasSuffix(v, "."):
		p.add(field, "can contain only letters, digits, '_', '-' and '.', must start with a letter or digit and cannot end in '.' or '.git'")
	case allDigits(v):
		p.add(field, "cannot be only digits (it would be taken for "+idWord+")")
	}
}

// allDigits reports whether v is non-empty and all ASCII digits: such a
// name would be shadowed by an id in ":id_or_username" routes.
func allDigits(v string) bool {
	return v != "" && strings.TrimLeft(v, "0123456789") == ""
}

func validateEmail(p problems, v string) {
	at := strings.LastIndexByte(v, '@')
	switch {
	case v == "":
		p.add("email", "can't be blank")
	case len(v) > 255:
		p.add("email", "is too long (maximum is 255 characters)")
	case at <= 0 || at == len(v)-1 || !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsSpace) >= 0 ||
		strings.ContainsAny(v, "<>,;\"") || strings.IndexFunc(v, unicode.IsControl) >= 0:
		p.add("email", "is invalid")
	case strings.ContainsAny(v, "*?!"):
		// allowed_signers (and OpenSSH principals) read these as patterns:
		// "*@example.com" would vouch for everyone's signatures.
		p.add("email", "cannot contain '*', '?' or '!' (they are patterns in git's allowed_signers file)")
	}
}

func validateText(p problems, field, v string, required bool) {
	switch {
	case required && strings.TrimSpace(v) == "":
		p.add(field, "can't be blank")
	case utf8.RuneCountInString(v) > 255:
		p.add(field, "is too long (maximum is 255 characters)")
	case !utf8.ValidString(v) || strings.ContainsRune(v, 0):
		p.add(field, "contains invalid characters")
	}
}

const userCols = `id, username, email, name, state, is_admin, created_at, enterprise_group_id, can_create_group, external, projects_limit`

func scanUser(row rowScanner) (*User, error) {
	var u User
	var created int64
	var admin, canCreateGroup, external int
	var enterprise sql.NullInt64
	if err := row.Scan(&u.ID, &u.Username, &u.Email, &u.Name, &u.State, &admin, &created, &enterprise,
		&canCreateGroup, &external, &u.ProjectsLimit); err != nil {
		return nil, err
	}
	if enterprise.Valid {
		u.EnterpriseGroupID = &enterprise.Int64
	}
	u.IsAdmin = admin != 0
	u.CanCreateGroup, u.External = canCreateGroup != 0, external != 0
	u.CreatedAt = fromMS(created)
	return &u, nil
}

// CreateUser creates an active user.
func (s *Store) CreateUser(ctx context.Context, a Actor, in UserInput) (*User, error) {
	p := problems{}
	var u User
	if in.Username != nil {
		u.Username = strings.TrimSpace(*in.Username)
	}
	if in.Email != nil {
		u.Email = strings.TrimSpace(*in.Email)
	}
	if in.Name != nil {
		u.Name = strings.TrimSpace(*in.Name)
	}
	if u.Name == "" {
		u.Name = u.Username
	}
	if in.IsAdmin != nil {
		u.IsAdmin = *in.IsAdmin
	}
	u.CanCreateGroup, u.ProjectsLimit = true, DefaultProjectsLimit
	validateUsername(p, u.Username)
	validateEmail(p, u.Email)
	validateText(p, "name", u.Name, false)
	applyLimits(p, &u, in, nil)
	if err := p.err(); err != nil {
		return nil, err
	}
	u.State = StateActive
	err := s.write(ctx, a, func(t *tx) error {
		var err error
		if u.EnterpriseGroupID, err = t.enterpriseGroup(ctx, in.EnterpriseGroupID); err != nil {
			return err
		}
		u.CreatedAt = t.now
		id, err := t.insert(ctx, `INSERT INTO users (username, email, name, state, is_admin, created_at, enterprise_group_id,
			can_create_group, external, projects_limit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			u.Username, u.Email, u.Name, u.State, boolInt(u.IsAdmin), ms(t.now), u.EnterpriseGroupID,
			boolInt(u.CanCreateGroup), boolInt(u.External), u.ProjectsLimit)
		if err != nil {
			return err
		}
		u.ID = id
		details := map[string]any{"username": u.Username, "is_admin": u.IsAdmin}
		if u.External || !u.CanCreateGroup || u.ProjectsLimit != DefaultProjectsLimit {
			details["external"], details["can_create_group"], details["projects_limit"] = u.External, u.CanCreateGroup, u.ProjectsLimit
		}
		if u.EnterpriseGroupID != nil {
			details["enterprise_group_id"] = *u.EnterpriseGroupID
		}
		return t.record(ctx, "user_created", EntityUser, id, "create", details)
	})
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// UpdateUser changes the given fields of a user.
func (s *Store) UpdateUser(ctx context.Context, a Actor, id int64, in UserInput) (*User, error) {
	var out *User
	err := s.write(ctx, a, func(t *tx) error {
		u, err := t.user(ctx, id)
		if err != nil {
			return err
		}
		p := problems{}
		changed := map[string]any{}
		if in.Username != nil {
			u.Username = strings.TrimSpace(*in.Username)
			validateUsername(p, u.Username)
			changed["username"] = u.Username
		}
		if in.Email != nil {
			u.Email = strings.TrimSpace(*in.Email)
			validateEmail(p, u.Email)
			changed["email"] = u.Email
		}
		if in.Name != nil {
			u.Name = strings.TrimSpace(*in.Name)
			validateText(p, "name", u.Name, false)
			changed["name"] = u.Name
		}
		if in.IsAdmin != nil {
			u.IsAdmin = *in.IsAdmin
			changed["is_admin"] = u.IsAdmin
		}
		applyLimits(p, u, in, changed)
		if err := p.err(); err != nil {
			return err
		}
		if in.EnterpriseGroupID != nil {
			if u.EnterpriseGroupID, err = t.enterpriseGroup(ctx, in.EnterpriseGroupID); err != nil {
				return err
			}
			changed["enterprise_group_id"] = u.EnterpriseGroupID
		}
		if _, err := t.exec(ctx, `UPDATE users SET username = ?, email = ?, name = ?, is_admin = ?, enterprise_group_id = ?,
			can_create_group = ?, external = ?, projects_limit = ? WHERE id = ?`,
			u.Username, u.Email, u.Name, boolInt(u.IsAdmin), u.EnterpriseGroupID,
			boolInt(u.CanCreateGroup), boolInt(u.External), u.ProjectsLimit, id); err != nil {
			return err
		}
		out = u
		return t.record(ctx, "user_updated", EntityUser, id, "update", changed)
	})
	return out, err
}

// enterpriseGroup validates an enterprise group id: nil or 0 is none,
// anything else must be an existing top-level group.
func (t *tx) enterpriseGroup(ctx context.Context, id *int64) (*int64, error) {
	if id == nil || *id == 0 {
		return nil, nil
	}
	var parent sql.NullInt64
	err := t.queryRow(ctx, `SELECT parent_id FROM groups WHERE id = ?`, *id).Scan(&parent)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && parent.Valid) {
		return nil, invalid("enterprise_group_id", "must be the id of a top-level group")
	}
	if err != nil {
		return nil, err
	}
	v := *id
	return &v, nil
}

// SetUserState blocks or unblocks a user.
func (s *Store) SetUserState(ctx context.Context, a Actor, id int64, state string) (*User, error) {
	if state != StateActive && state != StateBlocked {
		return nil, invalid("state", "must be active or blocked")
	}
	var out *User
	err := s.write(ctx, a, func(t *tx) error {
		u, err := t.user(ctx, id)
		if err != nil {
			return err
		}
		out = u
		if u.State == state {
			return nil
		}
		u.State = state
		if _, err := t.exec(ctx, `UPDATE users SET state = ? WHERE id = ?`, state, id); err != nil {
			return err
		}
		action := "user_blocked"
		if state == StateActive {
			action = "user_unblocked"
		}
		return t.record(ctx, action, EntityUser, id, "update", nil)
	})
	return out, err
}

// DeleteUser deletes a user with their keys, tokens, GPG keys and memberships.
func (s *Store) DeleteUser(ctx context.Context, a Actor, id int64) error {
	return s.write(ctx, a, func(t *tx) error {
		var username string
		if err := t.queryRow(ctx, `SELECT username FROM users WHERE id = ?`, id).Scan(&username); errors.Is(err, sql.ErrNoRows) {
			return notFound("User")
		} else if err != nil {
			return err
		}
		keyIDs, err := t.ids(ctx, `SELECT id FROM keys WHERE user_id = ?`, id)
		if err != nil {
			return err
		}
		if _, err := t.exec(ctx, `DELETE FROM users WHERE id = ?`, id); err != nil {
			return err
		}
		for _, k := range keyIDs {
			if err := t.change(ctx, EntityKey, k, "delete"); err != nil {
				return err
			}
		}
		return t.record(ctx, "user_deleted", EntityUser, id, "delete", map[string]any{"username": username})
	})
}

// ids runs a query returning one integer column.
func (t *tx) ids(ctx context.Context, query string, args ...any) ([]int64, error) {
	rows, err := t.query(ctx, query, args...)
	return scanRows(rows, err, func(row rowScanner) (int64, error) {
		var id int64
		return id, row.Scan(&id)
	})
}

// user reads a user in the transaction.
func (t *tx) user(ctx context.Context, id int64) (*User, error) {
	u, err := scanUser(t.queryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("User")
	}
	return u, err
}

// User returns a user by id.
func (s *Store) User(ctx context.Context, id int64) (*User, error) {
	u, err := scanUser(s.queryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("User")
	}
	return u, err
}

// UserByUsername returns a user by username (case-insensitive).
func (s *Store) UserByUsername(ctx context.Context, username string) (*User, error) {
	u, err := scanUser(s.queryRow(ctx, `SELECT `+userCols+` FROM users WHERE lower(username) = ?`, asciiLower(username)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("User")
	}
	return u, err
}

// UserFilter narrows ListUsers.
type UserFilter struct {
	Username string // exact, case-insensitive
	Search   string // substring of username or name (and email with SearchEmails)
	// SearchEmails lets Search match emails too: for admins only, since a
	// substring search reveals hidden emails one guess at a time.
	SearchEmails bool
	Blocked      *bool
}

// ListUsers lists users ordered by id.
func (s *Store) ListUsers(ctx context.Context, f UserFilter, pg Page) ([]*User, int, error) {
	where := []string{"1=1"}
	var args []any
	if f.Username != "" {
		where = append(where, "lower(username) = ?")
		args = append(args, asciiLower(f.Username))
	}
	if f.Search != "" {
		needle := asciiLower(f.Search)
		cond := s.dialect.contains("lower(username)", "?") + " OR " + s.dialect.contains("lower(name)", "?")
		args = append(args, needle, needle)
		if f.SearchEmails {
			cond += " OR " + s.dialect.contains("lower(email)", "?")
			args = append(args, needle)
		}
		where = append(where, "("+cond+")")
	}
	if f.Blocked != nil {
		where = append(where, "state = ?")
		if *f.Blocked {
			args = append(args, StateBlocked)
		} else {
			args = append(args, StateActive)
		}
	}
	cond := strings.Join(where, " AND ")
	return listPage(ctx, s, userCols, `users WHERE `+cond, args, "id", pg, scanUser)
}

// AllUsers returns every user (for the auth index and exports).
func (s *Store) AllUsers(ctx context.Context) ([]*User, error) {
	rows, err := s.query(ctx, `SELECT `+userCols+` FROM users ORDER BY id`)
	return scanRows(rows, err, scanUser)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
