package keystore

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Key policies are rows of key_policies: the instance's (group_id NULL) and
// top-level groups' (stricter for logins into their projects). Each change
// is a change-log row (EntityKeyPolicy, by row id) that the index applies.

const keyPolicyCols = `id, group_id, rsa_key_restriction, ecdsa_key_restriction, ecdsa_sk_key_restriction,
	ed25519_key_restriction, ed25519_sk_key_restriction, max_ssh_key_lifetime, max_ssh_certificate_lifetime,
	require_ssh_certificate_expiry, updated_at`

// KeyPolicyRow is a stored key policy.
type KeyPolicyRow struct {
	ID        int64
	GroupID   int64 // 0: the instance
	Policy    KeyPolicy
	UpdatedAt time.Time
}

func scanKeyPolicy(row rowScanner) (*KeyPolicyRow, error) {
	var r KeyPolicyRow
	var gid sql.NullInt64
	var req int
	var updated int64
	p := &r.Policy
	if err := row.Scan(&r.ID, &gid, &p.Restrictions[KindRSA], &p.Restrictions[KindECDSA], &p.Restrictions[KindECDSASK],
		&p.Restrictions[KindED25519], &p.Restrictions[KindED25519SK], &p.MaxKeyLifetimeDays, &p.MaxCertLifetimeHours,
		&req, &updated); err != nil {
		return nil, err
	}
	r.GroupID, p.RequireCertExpiry, r.UpdatedAt = gid.Int64, req != 0, fromMS(updated)
	return &r, nil
}

func policyScope(groupID int64) (string, []any) {
	if groupID == 0 {
		return "group_id IS NULL", nil
	}
	return "group_id = ?", []any{groupID}
}

// KeyPolicy returns the instance's key policy (groupID 0) or a top-level
// group's own (not merged with the instance's); the zero policy when none
// was set.
func (s *Store) KeyPolicy(ctx context.Context, groupID int64) (*KeyPolicyRow, error) {
	cond, args := policyScope(groupID)
	r, err := scanKeyPolicy(s.queryRow(ctx, `SELECT `+keyPolicyCols+` FROM key_policies WHERE `+cond, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return &KeyPolicyRow{GroupID: groupID}, nil
	}
	return r, err
}

// keyPolicy reads the instance's key policy inside a write transaction.
func (t *tx) keyPolicy(ctx context.Context) (KeyPolicy, error) {
	r, err := scanKeyPolicy(t.queryRow(ctx, `SELECT `+keyPolicyCols+` FROM key_policies WHERE group_id IS NULL`))
	if errors.Is(err, sql.ErrNoRows) {
		return KeyPolicy{}, nil
	}
	if err != nil {
		return KeyPolicy{}, err
	}
	return r.Policy, nil
}

// checkKeyPolicy applies the instance's key policy to a key being added.
func (t *tx) checkKeyPolicy(ctx context.Context, pk *ParsedKey, expiresAt *time.Time) error {
	p, err := t.keyPolicy(ctx)
	if err != nil {
		return err
	}
	return p.checkAdd(pk, expiresAt, t.now)
}

// KeyPolicyByID returns a key policy row by id (for the index).
func (s *Store) KeyPolicyByID(ctx context.Context, id int64) (*KeyPolicyRow, error) {
	r, err := scanKeyPolicy(s.queryRow(ctx, `SELECT `+keyPolicyCols+` FROM key_policies WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("Key policy")
	}
	return r, err
}

// AllKeyPolicies returns every key policy (for a full load of the index).
func (s *Store) AllKeyPolicies(ctx context.Context) ([]*KeyPolicyRow, error) {
	rows, err := s.query(ctx, `SELECT `+keyPolicyCols+` FROM key_policies ORDER BY id`)
	return scanRows(rows, err, scanKeyPolicy)
}

// SetKeyPolicy stores the instance's key policy (groupID 0) or a top-level
// group's, and records what changed.
func (s *Store) SetKeyPolicy(ctx context.Context, a Actor, groupID int64, p KeyPolicy) (*KeyPolicyRow, error) {
	p.Restrictions[KindDSA] = 0 // keygate's own rule, never stored
	var out *KeyPolicyRow
	err := s.write(ctx, a, func(t *tx) error {
		if groupID != 0 {
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
		}
		cond, args := policyScope(groupID)
		old, err := scanKeyPolicy(t.queryRow(ctx, `SELECT `+keyPolicyCols+` FROM key_policies WHERE `+cond, args...))
		vals := []any{p.Restrictions[KindRSA], p.Restrictions[KindECDSA], p.Restrictions[KindECDSASK],
			p.Restrictions[KindED25519], p.Restrictions[KindED25519SK], p.MaxKeyLifetimeDays, p.MaxCertLifetimeHours,
			boolInt(p.RequireCertExpiry), ms(t.now)}
		var id int64
		var before KeyPolicy
		switch {
		case errors.Is(err, sql.ErrNoRows):
			var gid any
			if groupID != 0 {
				gid = groupID
			}
			id, err = t.insert(ctx, `INSERT INTO key_policies (group_id, rsa_key_restriction, ecdsa_key_restriction, ecdsa_sk_key_restriction,
				ed25519_key_restriction, ed25519_sk_key_restriction, max_ssh_key_lifetime, max_ssh_certificate_lifetime,
				require_ssh_certificate_expiry, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, append([]any{gid}, vals...)...)
			if err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			id, before = old.ID, old.Policy
			if _, err := t.exec(ctx, `UPDATE key_policies SET rsa_key_restriction = ?, ecdsa_key_restriction = ?, ecdsa_sk_key_restriction = ?,
				ed25519_key_restriction = ?, ed25519_sk_key_restriction = ?, max_ssh_key_lifetime = ?, max_ssh_certificate_lifetime = ?,
				require_ssh_certificate_expiry = ?, updated_at = ? WHERE id = ?`, append(vals, id)...); err != nil {
				return err
			}
		}
		out = &KeyPolicyRow{ID: id, GroupID: groupID, Policy: p, UpdatedAt: t.now}
		details := map[string]any{"changes": policyChanges(before, p)}
		action := "application_settings_updated"
		if groupID != 0 {
			action = "group_key_policy_updated"
			details["group_id"] = groupID
		}
		return t.record(ctx, action, EntityKeyPolicy, id, "update", details)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// policyChanges lists the settings that differ: name -> [from, to].
func policyChanges(a, b KeyPolicy) map[string][2]any {
	va, vb := a.Values(), b.Values()
	out := map[string][2]any{}
	for _, n := range KeyPolicySettings {
		if va[n] != vb[n] {
			out[n] = [2]any{va[n], vb[n]}
		}
	}
	return out
}

// PolicyViolation is a key that logs in today and that a key policy
// refuses.
type PolicyViolation struct {
	// Kind is "user_key" or "deploy_key".
	Kind                 string
	ID                   int64
	UserID               *int64 // the user (user keys) or the owner (deploy keys)
	Username             string
	Title                string
	Type                 string
	Bits                 int
	FingerprintSHA256    string
	ExpiresAt, CreatedAt *time.Time
	// Rule and Setting: the first rule it breaks and the setting behind it.
	Rule    PolicyRule
	Setting string
	Reason  string
}

// KeyPolicyViolations lists, by kind then id, the keys that can log in
// (user keys with auth usage, deploy keys) and that p refuses: what a
// policy would lock out if it were switched on.
func (s *Store) KeyPolicyViolations(ctx context.Context, p KeyPolicy, pg Page) ([]*PolicyViolation, int, error) {
	var conds []string
	var args []any
	var forbidden []string
	for k := KindRSA; k < numKinds; k++ {
		types := typesOfKind(k)
		switch r := p.Restrictions[k]; {
		case r == -1:
			forbidden = append(forbidden, types...)
		case r > 0:
			conds = append(conds, `(type IN (`+placeholders(len(types))+`) AND bits < ?)`)
			for _, t := range types {
				args = append(args, t)
			}
			args = append(args, r)
		}
	}
	if len(forbidden) > 0 {
		conds = append(conds, `type IN (`+placeholders(len(forbidden))+`)`)
		for _, t := range forbidden {
			args = append(args, t)
		}
	}
	if d := p.MaxKeyLifetimeDays; d > 0 {
		// Rounded up to the minute, as the index holds it.
		conds = append(conds, `(expires_at IS NULL OR expires_at - created_at > ?)`)
		args = append(args, int64(d)*24*60*60000)
	}
	if len(conds) == 0 {
		return []*PolicyViolation{}, 0, nil
	}
	from := `(SELECT 'user_key' AS kind, k.id, k.user_id, u.username, k.title, k.type, k.bits, k.fingerprint_sha256, k.expires_at, k.created_at
			FROM keys k JOIN users u ON u.id = k.user_id WHERE k.usage_type <> 'signing'
		UNION ALL
		SELECT 'deploy_key', d.id, d.user_id, COALESCE(u.username, ''), d.title, d.type, d.bits, d.fingerprint_sha256, d.expires_at, d.created_at
			FROM deploy_keys d LEFT JOIN users u ON u.id = d.user_id) v WHERE ` + strings.Join(conds, " OR ")
	out, total, err := listPage(ctx, s, `kind, id, user_id, username, title, type, bits, fingerprint_sha256, expires_at, created_at`,
		from, args, "kind DESC, id", pg, func(row rowScanner) (*PolicyViolation, error) {
			var v PolicyViolation
			var uid, exp sql.NullInt64
			var created int64
			if err := row.Scan(&v.Kind, &v.ID, &uid, &v.Username, &v.Title, &v.Type, &v.Bits, &v.FingerprintSHA256, &exp, &created); err != nil {
				return nil, err
			}
			if uid.Valid {
				v.UserID = &uid.Int64
			}
			c := fromMS(created)
			v.CreatedAt, v.ExpiresAt = &c, fromNullMS(exp)
			kind := KeyKind(v.Type)
			v.Rule = p.CheckKey(kind, v.Bits, v.ExpiresAt != nil, LifetimeMinutes(c, v.ExpiresAt))
			v.Setting, v.Reason = v.Rule.Setting(kind), p.Explain(v.Rule, kind, v.Bits)
			return &v, nil
		})
	return out, total, err
}

// typesOfKind lists the OpenSSH key types of a kind.
func typesOfKind(kind uint8) []string {
	var out []string
	for _, t := range []string{"ssh-dss", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
		"sk-ecdsa-sha2-nistp256@openssh.com", "ssh-ed25519", "sk-ssh-ed25519@openssh.com"} {
		if KeyKind(t) == kind {
			out = append(out, t)
		}
	}
	return out
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// ParseKeyPolicy reads settings (name -> API value) into a copy of p; an
// unknown name is refused, naming it.
func ParseKeyPolicy(p KeyPolicy, settings map[string]string) (KeyPolicy, error) {
	pr := problems{}
	for name, v := range settings {
		known, err := p.Set(name, v)
		if !known {
			pr.add(name, "is not a key policy setting keygate knows")
			continue
		}
		if err := pr.with(err); err != nil && !errors.Is(err, ErrInvalid) {
			return p, err
		}
	}
	return p, pr.err()
}

// String is the policy in one line, for logs.
func (p KeyPolicy) String() string {
	var b strings.Builder
	v := p.Values()
	for i, n := range KeyPolicySettings {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(n + "=")
		switch x := v[n].(type) {
		case nil:
			b.WriteString("null")
		case int:
			b.WriteString(strconv.Itoa(x))
		case bool:
			b.WriteString(strconv.FormatBool(x))
		}
	}
	return b.String()
}
