package keystore

import (
	"context"
	"database/sql"
	"errors"
	"net/netip"
	"strings"
	"time"
)

// BastionAllowance is an admin's grant to a group's owners: they may define
// bastion targets for the group and its subgroups inside Pattern. Pattern
// is "host:port" where host is a name pattern ("*.db.internal", "*"), an
// IP address, or a CIDR ("10.20.0.0/16", "[fd00:1::/64]"), and port is a
// number or "*".
type BastionAllowance struct {
	ID          int64
	GroupID     int64
	Pattern     string
	Description string
	CreatedAt   time.Time
}

// BastionAllowanceInput describes an allowance to add.
type BastionAllowanceInput struct {
	Pattern     string
	Description string
}

// Allowance is a parsed allowance pattern.
type Allowance struct {
	Name   BastionPattern // host and port (only the port for a CIDR)
	Prefix netip.Prefix   // valid for a CIDR
}

const allowanceReason = `must be "host:port": host is a name pattern (labels of letters, digits and "-", or "*"), an IP address, or a CIDR (10.0.0.0/8, [fd00::/8]); port is 1-65535 or "*"`

// ParseAllowance validates and normalises an allowance pattern.
func ParseAllowance(s string) (Allowance, string, bool) {
	s = strings.TrimSpace(s)
	i := strings.LastIndexByte(s, ':')
	if i < 0 || len(s) > 300 {
		return Allowance{}, "", false
	}
	host, portS := s[:i], s[i+1:]
	bare := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.Contains(bare, "/") {
		pfx, err := netip.ParsePrefix(bare)
		if err != nil || pfx.Addr().Zone() != "" {
			return Allowance{}, "", false
		}
		if pfx.Addr().Is6() != strings.HasPrefix(host, "[") {
			return Allowance{}, "", false // IPv6 needs brackets, IPv4 has none
		}
		// The port part is validated by the target parser.
		p, _, ok := ParseBastionPattern("0.0.0.0:" + portS)
		if !ok {
			return Allowance{}, "", false
		}
		pfx = pfx.Masked()
		disp := pfx.String()
		if pfx.Addr().Is6() {
			disp = "[" + disp + "]"
		}
		return Allowance{Name: BastionPattern{Port: p.Port}, Prefix: pfx}, disp + ":" + portS, true
	}
	p, norm, ok := ParseBastionPattern(s)
	if !ok {
		return Allowance{}, "", false
	}
	return Allowance{Name: p}, norm, true
}

// Covers reports whether target pattern t lies entirely inside allowance
// al: every destination t can match, al matches too. A name target is
// never inside a CIDR (a name can resolve anywhere), and a wildcard label
// only inside a wildcard label.
func (al Allowance) Covers(t BastionPattern) bool {
	if al.Name.Port != 0 && al.Name.Port != t.Port {
		return false // a target for any port needs an allowance for any port
	}
	tAddr, tErr := netip.ParseAddr(t.Host)
	if al.Prefix.IsValid() {
		return tErr == nil && al.Prefix.Contains(tAddr.Unmap())
	}
	if al.Name.Host == "*" {
		return true
	}
	if aAddr, err := netip.ParseAddr(al.Name.Host); err == nil {
		return tErr == nil && aAddr == tAddr
	}
	if tErr == nil || t.Host == "*" {
		return false
	}
	al1, tl := strings.Split(al.Name.Host, "."), strings.Split(t.Host, ".")
	if len(al1) != len(tl) {
		return false
	}
	for i := range al1 {
		if al1[i] != "*" && al1[i] != tl[i] {
			return false
		}
	}
	return true
}

func withinAny(t BastionPattern, as []*BastionAllowance) bool {
	for _, a := range as {
		if al, _, ok := ParseAllowance(a.Pattern); ok && al.Covers(t) {
			return true
		}
	}
	return false
}

// outsideAllowances is the refusal shown to an owner.
func outsideAllowances(pattern string, as []*BastionAllowance) string {
	if len(as) == 0 {
		return "bastion target " + pattern + " is outside what admins allowed: this group has no bastion allowances, so only an administrator can add its targets"
	}
	ps := make([]string, 0, len(as))
	for _, a := range as {
		ps = append(ps, a.Pattern)
	}
	return "bastion target " + pattern + " is outside what admins allowed for this group (allowed: " + strings.Join(ps, ", ") + ")"
}

const allowanceCols = `id, group_id, pattern, description, created_at`

func scanAllowance(row rowScanner) (*BastionAllowance, error) {
	var b BastionAllowance
	var created int64
	if err := row.Scan(&b.ID, &b.GroupID, &b.Pattern, &b.Description, &created); err != nil {
		return nil, err
	}
	b.CreatedAt = fromMS(created)
	return &b, nil
}

// querier is what a *Store and a *tx share for reads.
type querier interface {
	query(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	queryRow(ctx context.Context, query string, args ...any) rowScanner
}

func (t *tx) allowancesFor(ctx context.Context, groupID int64) ([]*BastionAllowance, error) {
	return allowancesFor(ctx, t, groupID)
}

// allowancesFor returns the allowances that apply to a group: its own and
// its ancestors'.
func allowancesFor(ctx context.Context, t querier, groupID int64) ([]*BastionAllowance, error) {
	var out []*BastionAllowance
	for g, depth := groupID, 0; g != 0 && depth < 64; depth++ {
		rows, err := t.query(ctx, `SELECT `+allowanceCols+` FROM bastion_allowances WHERE group_id = ? ORDER BY id`, g)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			a, err := scanAllowance(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, a)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		var parent sql.NullInt64
		if err := t.queryRow(ctx, `SELECT parent_id FROM groups WHERE id = ?`, g).Scan(&parent); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				break
			}
			return nil, err
		}
		g = parent.Int64
	}
	return out, nil
}

// BastionAllowancesFor returns the allowances that apply to a group (its
// own and its ancestors').
func (s *Store) BastionAllowancesFor(ctx context.Context, groupID int64) ([]*BastionAllowance, error) {
	return allowancesFor(ctx, s, groupID)
}

// InsideAllowances reports whether pattern lies inside one of as.
func InsideAllowances(pattern string, as []*BastionAllowance) bool {
	p, _, ok := ParseBastionPattern(pattern)
	return ok && withinAny(p, as)
}

// CreateBastionAllowance adds an allowance to a group (admins only; the
// caller checks).
func (s *Store) CreateBastionAllowance(ctx context.Context, a Actor, groupID int64, in BastionAllowanceInput) (*BastionAllowance, error) {
	p := problems{}
	_, norm, ok := ParseAllowance(in.Pattern)
	if !ok {
		p.add("pattern", allowanceReason)
	}
	in.Description = strings.TrimSpace(in.Description)
	validateText(p, "description", in.Description, false)
	if err := p.err(); err != nil {
		return nil, err
	}
	b := &BastionAllowance{GroupID: groupID, Pattern: norm, Description: in.Description}
	err := s.write(ctx, a, func(t *tx) error {
		if err := t.mustExist(ctx, "groups", groupID, "Group"); err != nil {
			return err
		}
		var one int
		switch err := t.queryRow(ctx, `SELECT 1 FROM bastion_allowances WHERE group_id = ? AND pattern = ?`, groupID, norm).Scan(&one); {
		case err == nil:
			return invalid("pattern", "has already been taken")
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		b.CreatedAt = t.now
		id, err := t.insert(ctx, `INSERT INTO bastion_allowances (group_id, pattern, description, created_at) VALUES (?, ?, ?, ?)`,
			groupID, b.Pattern, b.Description, ms(t.now))
		if err != nil {
			return err
		}
		b.ID = id
		return t.record(ctx, "bastion_allowance_created", EntityBastionAllowance, id, "create",
			map[string]any{"group_id": groupID, "pattern": b.Pattern})
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// ListBastionAllowances lists a group's own allowances by id.
func (s *Store) ListBastionAllowances(ctx context.Context, groupID int64, pg Page) ([]*BastionAllowance, int, error) {
	return listPage(ctx, s, allowanceCols, `bastion_allowances WHERE group_id = ?`, []any{groupID}, "id", pg, scanAllowance)
}

// BastionAllowanceByID returns an allowance; groupID, when not 0, must own it.
func (s *Store) BastionAllowanceByID(ctx context.Context, groupID, id int64) (*BastionAllowance, error) {
	b, err := scanAllowance(s.queryRow(ctx, `SELECT `+allowanceCols+` FROM bastion_allowances WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) || (err == nil && groupID != 0 && b.GroupID != groupID) {
		return nil, notFound("Bastion Allowance")
	}
	return b, err
}

// AllBastionAllowances returns every allowance (for the index).
func (s *Store) AllBastionAllowances(ctx context.Context) ([]*BastionAllowance, error) {
	var out []*BastionAllowance
	err := s.forEachRow(ctx, `SELECT `+allowanceCols+` FROM bastion_allowances ORDER BY id`, func(sc func(...any) error) error {
		a, err := scanAllowance(scanFunc(sc))
		if err != nil {
			return err
		}
		out = append(out, a)
		return nil
	})
	return out, err
}

// scanFunc adapts a scan function to rowScanner.
type scanFunc func(...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }

// DeleteBastionAllowance deletes a group's allowance. Owner-made targets
// that no longer lie inside an allowance stop applying at once.
func (s *Store) DeleteBastionAllowance(ctx context.Context, a Actor, groupID, id int64) error {
	return s.write(ctx, a, func(t *tx) error {
		if err := t.execOne(ctx, "Bastion Allowance", `DELETE FROM bastion_allowances WHERE id = ? AND group_id = ?`, id, groupID); err != nil {
			return err
		}
		return t.record(ctx, "bastion_allowance_deleted", EntityBastionAllowance, id, "delete", map[string]any{"group_id": groupID})
	})
}

// LegacyTarget is a bastion target classified when the trust-boundaries
// migration first ran.
type LegacyTarget struct {
	ID      int64
	GroupID int64
	Pattern string
	Origin  string
	// Disabled: an owner made it, outside anything admins allowed.
	Disabled bool
}

const legacyDisabledReason = "made by a group owner before bastion targets became admin policy; an admin must add it again or allow it"

// classifyLegacyTargets decides, once, the origin of targets made before
// origins were recorded: a target whose creation the audit log attributes
// to an admin (or to the system) is an admin's and stays as it is; any
// other was an owner's, and is disabled (not deleted), since no allowances
// existed. It returns what it changed.
func (s *Store) classifyLegacyTargets(ctx context.Context) ([]LegacyTarget, error) {
	var out []LegacyTarget
	err := s.write(ctx, Actor{}, func(t *tx) error {
		rows, err := t.query(ctx, `SELECT b.id, b.group_id, b.pattern,
			(SELECT COUNT(*) FROM audit_events e LEFT JOIN users u ON u.id = e.actor_id
			  WHERE e.action = 'bastion_target_created' AND e.target_type = 'bastion_target' AND e.target_id = b.id
			    AND e.actor_id IS NOT NULL AND (u.id IS NULL OR u.is_admin = 0))
			FROM bastion_targets b WHERE b.origin = ? ORDER BY b.id`, originLegacy)
		if err != nil {
			return err
		}
		for rows.Next() {
			var l LegacyTarget
			var byOwner int
			if err := rows.Scan(&l.ID, &l.GroupID, &l.Pattern, &byOwner); err != nil {
				rows.Close()
				return err
			}
			l.Origin, l.Disabled = OriginAdmin, false
			if byOwner > 0 {
				l.Origin, l.Disabled = OriginOwner, true
			}
			out = append(out, l)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, l := range out {
			reason := ""
			if l.Disabled {
				reason = legacyDisabledReason
			}
			if _, err := t.exec(ctx, `UPDATE bastion_targets SET origin = ?, disabled_reason = ? WHERE id = ?`, l.Origin, reason, l.ID); err != nil {
				return err
			}
			if l.Disabled {
				if err := t.record(ctx, "bastion_target_disabled", EntityBastionTarget, l.ID, "update",
					map[string]any{"group_id": l.GroupID, "pattern": l.Pattern, "reason": reason}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return out, err
}
