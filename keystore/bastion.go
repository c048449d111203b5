package keystore

import (
	"context"
	"database/sql"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// BastionTarget allows members of a group (with at least MinAccessLevel,
// membership inherited from ancestors) to forward connections through
// keygate to destinations matching Pattern ("host:port").
//
// Where the bastion may reach is network policy, and admins own it: a
// target an admin made (Origin "admin") applies as written; a target a
// group owner made (Origin "owner") must lie inside an admin's allowance
// for the group (bastion_policy.go), and stops applying when it no longer
// does. A target with a DisabledReason applies nowhere.
type BastionTarget struct {
	ID             int64
	GroupID        int64
	Pattern        string
	MinAccessLevel int
	Description    string
	CreatedAt      time.Time
	Origin         string // OriginAdmin or OriginOwner
	DisabledReason string // "": enabled
}

// Bastion target origins.
const (
	OriginAdmin = "admin"
	OriginOwner = "owner"
	// originLegacy marks rows made before origins were recorded; Open
	// classifies them (classifyLegacyTargets).
	originLegacy = "legacy"
)

// BastionTargetInput describes a target to add. MinAccessLevel 0 means
// the default (developer).
type BastionTargetInput struct {
	Pattern        string
	MinAccessLevel int
	Description    string
}

// BastionPattern is a parsed target pattern.
type BastionPattern struct {
	Host string // lower case; IPv6 without brackets; "*" labels allowed
	Port int    // 0: any port
}

const patternReason = `must be "host:port": host is a name (labels of letters, digits and "-", or "*") or an IP address ([addr] for IPv6), port is 1-65535 or "*"`

// ParseBastionPattern validates and normalises a "host:port" pattern; it
// returns the parsed pattern and its canonical text.
func ParseBastionPattern(s string) (BastionPattern, string, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 300 {
		return BastionPattern{}, "", false
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return BastionPattern{}, "", false
	}
	host, portS := s[:i], s[i+1:]
	var p BastionPattern
	switch {
	case portS == "*":
	default:
		if portS == "" || len(portS) > 5 || strings.TrimLeft(portS, "0123456789") != "" || portS[0] == '0' {
			return BastionPattern{}, "", false
		}
		n, err := strconv.Atoi(portS)
		if err != nil || n < 1 || n > 65535 {
			return BastionPattern{}, "", false
		}
		p.Port = n
	}
	display := ""
	if strings.HasPrefix(host, "[") {
		if !strings.HasSuffix(host, "]") {
			return BastionPattern{}, "", false
		}
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return BastionPattern{}, "", false
		}
		p.Host = a.String()
		display = "[" + p.Host + "]"
	} else {
		if a, err := netip.ParseAddr(host); err == nil {
			if !a.Is4() {
				return BastionPattern{}, "", false // IPv6 needs brackets
			}
			p.Host = a.String()
		} else {
			if host == "" || len(host) > 253 {
				return BastionPattern{}, "", false
			}
			for _, l := range strings.Split(host, ".") {
				if !validPatternLabel(l) {
					return BastionPattern{}, "", false
				}
			}
			p.Host = strings.ToLower(host)
		}
		display = p.Host
	}
	return p, display + ":" + portS, true
}

func validPatternLabel(l string) bool {
	if l == "*" {
		return true
	}
	if l == "" || len(l) > 63 {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Matches reports whether the pattern matches the host the client asked
// for (case-insensitive) and port. A host of "*" alone matches any host;
// otherwise "*" matches exactly one label.
func (p BastionPattern) Matches(host string, port uint32) bool {
	if port == 0 || port > 65535 || (p.Port != 0 && uint32(p.Port) != port) {
		return false
	}
	host = strings.ToLower(host)
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if host == "" {
		return false
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return false
		}
		host = a.Unmap().String()
	}
	if p.Host == "*" {
		return true
	}
	if !strings.Contains(p.Host, "*") {
		return p.Host == host
	}
	pl, hl := strings.Split(p.Host, "."), strings.Split(host, ".")
	if len(pl) != len(hl) {
		return false
	}
	for i := range pl {
		if hl[i] == "" || (pl[i] != "*" && pl[i] != hl[i]) {
			return false
		}
	}
	return true
}

const bastionCols = `id, group_id, pattern, min_access_level, description, created_at, origin, disabled_reason`

func scanBastionTarget(row rowScanner) (*BastionTarget, error) {
	var b BastionTarget
	var created int64
	if err := row.Scan(&b.ID, &b.GroupID, &b.Pattern, &b.MinAccessLevel, &b.Description, &created, &b.Origin, &b.DisabledReason); err != nil {
		return nil, err
	}
	b.CreatedAt = fromMS(created)
	return &b, nil
}

// CreateBastionTarget adds a bastion target to a group as an admin: it
// applies as written.
func (s *Store) CreateBastionTarget(ctx context.Context, a Actor, groupID int64, in BastionTargetInput) (*BastionTarget, error) {
	return s.createBastionTarget(ctx, a, groupID, in, OriginAdmin)
}

// CreateOwnerBastionTarget adds a bastion target to a group on behalf of
// a group owner who is not an admin: the pattern must lie inside an
// admin's allowance for the group or one of its ancestors and must be
// able to forward somewhere (NeverForwards), or the write is refused with
// ErrForbidden and nothing is stored.
func (s *Store) CreateOwnerBastionTarget(ctx context.Context, a Actor, groupID int64, in BastionTargetInput) (*BastionTarget, error) {
	return s.createBastionTarget(ctx, a, groupID, in, OriginOwner)
}

func (s *Store) createBastionTarget(ctx context.Context, a Actor, groupID int64, in BastionTargetInput, origin string) (*BastionTarget, error) {
	p := problems{}
	_, norm, ok := ParseBastionPattern(in.Pattern)
	if !ok {
		p.add("pattern", patternReason)
	}
	if in.MinAccessLevel == 0 {
		in.MinAccessLevel = Developer
	}
	if !ValidAccessLevel(in.MinAccessLevel) {
		p.add("min_access_level", "is not a valid access level (10, 20, 30, 40 or 50)")
	}
	in.Description = strings.TrimSpace(in.Description)
	validateText(p, "description", in.Description, false)
	if err := p.err(); err != nil {
		return nil, err
	}
	b := &BastionTarget{GroupID: groupID, Pattern: norm, MinAccessLevel: in.MinAccessLevel, Description: in.Description, Origin: origin}
	err := s.write(ctx, a, func(t *tx) error {
		if err := t.mustExist(ctx, "groups", groupID, "Group"); err != nil {
			return err
		}
		if origin == OriginOwner {
			target, _, _ := ParseBastionPattern(norm)
			allowances, err := t.allowancesFor(ctx, groupID)
			if err != nil {
				return err
			}
			if !withinAny(target, allowances) {
				return forbidden(outsideAllowances(norm, allowances))
			}
			if why := NeverForwards(target); why != "" {
				return forbidden("bastion target " + norm + " could never forward: " + why)
			}
		}
		b.CreatedAt = t.now
		id, err := t.insert(ctx, `INSERT INTO bastion_targets (group_id, pattern, min_access_level, description, created_at, origin, disabled_reason) VALUES (?, ?, ?, ?, ?, ?, '')`,
			groupID, b.Pattern, b.MinAccessLevel, b.Description, ms(t.now), origin)
		if err != nil {
			return err
		}
		b.ID = id
		return t.record(ctx, "bastion_target_created", EntityBastionTarget, id, "create",
			map[string]any{"group_id": groupID, "pattern": b.Pattern, "min_access_level": b.MinAccessLevel, "origin": origin})
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// BastionTargetByID returns a target; groupID, when not 0, must own it.
func (s *Store) BastionTargetByID(ctx context.Context, groupID, id int64) (*BastionTarget, error) {
	b, err := scanBastionTarget(s.queryRow(ctx, `SELECT `+bastionCols+` FROM bastion_targets WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) || (err == nil && groupID != 0 && b.GroupID != groupID) {
		return nil, notFound("Bastion Target")
	}
	return b, err
}

// ListBastionTargets lists a group's targets ordered by id.
func (s *Store) ListBastionTargets(ctx context.Context, groupID int64, pg Page) ([]*BastionTarget, int, error) {
	return listPage(ctx, s, bastionCols, `bastion_targets WHERE group_id = ?`, []any{groupID}, "id", pg, scanBastionTarget)
}

// AllBastionTargets returns every target (for the index).
func (s *Store) AllBastionTargets(ctx context.Context) ([]*BastionTarget, error) {
	rows, err := s.query(ctx, `SELECT `+bastionCols+` FROM bastion_targets ORDER BY id`)
	return scanRows(rows, err, scanBastionTarget)
}

// DeleteBastionTarget deletes a group's target.
func (s *Store) DeleteBastionTarget(ctx context.Context, a Actor, groupID, id int64) error {
	return s.write(ctx, a, func(t *tx) error {
		if err := t.execOne(ctx, "Bastion Target", `DELETE FROM bastion_targets WHERE id = ? AND group_id = ?`, id, groupID); err != nil {
			return err
		}
		return t.record(ctx, "bastion_target_deleted", EntityBastionTarget, id, "delete", map[string]any{"group_id": groupID})
	})
}
