package authindex

import (
	"strings"

	"github.com/keygate/keygate/keystore"
)

func (ix *Index) putTarget(b *keystore.BastionTarget) {
	p, _, ok := keystore.ParseBastionPattern(b.Pattern)
	if !ok || b.DisabledReason != "" || (b.Origin != keystore.OriginAdmin && b.Origin != keystore.OriginOwner) {
		delete(ix.targets, b.ID) // unparseable, disabled or unclassified: never matches (fail closed)
		return
	}
	ix.targets[b.ID] = targetRec{GroupID: b.GroupID, MinLevel: b.MinAccessLevel, Pattern: b.Pattern, parsed: p,
		admin: b.Origin == keystore.OriginAdmin}
}

func (ix *Index) putAllowance(b *keystore.BastionAllowance) {
	a, _, ok := keystore.ParseAllowance(b.Pattern)
	if !ok {
		delete(ix.allows, b.ID)
		return
	}
	ix.allows[b.ID] = allowRec{GroupID: b.GroupID, parsed: a}
}

// allowedLocked reports whether an owner-made target lies inside an
// allowance of its group or an ancestor (ix.mu held).
func (ix *Index) allowedLocked(t targetRec) bool {
	for _, a := range ix.allows {
		if !a.parsed.Covers(t.parsed) {
			continue
		}
		for g, depth := t.GroupID, 0; g != 0 && depth < 64; depth++ {
			if g == a.GroupID {
				return true
			}
			g = ix.groups[g].Parent
		}
	}
	return false
}

// BastionMatch is a bastion target that allows a forwarding request.
type BastionMatch struct {
	TargetID, GroupID int64
	Pattern           string
	// Host is the pattern's host part (IPv6 without brackets); it names the
	// destination literally when it holds no "*".
	Host string
	// Admin: an admin made the target. Only such a target, naming an
	// address literally, can open a restricted address (loopback,
	// link-local, keygate's own listeners...).
	Admin bool
}

// Literal reports whether the target names its host without a wildcard.
func (m BastionMatch) Literal() bool { return !strings.Contains(m.Host, "*") }

// BastionTargets returns the targets that allow user userID to forward to
// host:port (host as the client asked for it): targets of groups in which
// the user's effective access level (membership inherited from ancestor
// groups) is at least the target's minimum. scopeTopGroupID, when not 0,
// limits the targets to groups under that top-level group (certificate
// logins). plainKey excludes groups whose top-level group enforces SSH
// certificates.
func (ix *Index) BastionTargets(userID, scopeTopGroupID int64, plainKey bool, host string, port uint32) []BastionMatch {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var out []BastionMatch
	for id, t := range ix.targets {
		if !t.parsed.Matches(host, port) {
			continue
		}
		g, ok := ix.groups[t.GroupID]
		if !ok {
			continue
		}
		if scopeTopGroupID != 0 && g.Top != scopeTopGroupID {
			continue
		}
		if plainKey {
			if top, ok := ix.groups[g.Top]; !ok || top.Enforce {
				continue
			}
		}
		if l := ix.accessLevelLocked(userID, t.GroupID); l == 0 || l < t.MinLevel {
			continue
		}
		if !t.admin && !ix.allowedLocked(t) {
			continue // an owner's target outside every current allowance
		}
		out = append(out, BastionMatch{TargetID: id, GroupID: t.GroupID, Pattern: t.Pattern, Host: t.parsed.Host, Admin: t.admin})
	}
	return out
}
