package sshd

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// One decision for everything that is open. A git command and a forward are
// each decided by one function of (identity, resource, action) over the
// index — decideGit and decideForward — at admission, and the same
// function is run again for every open git session and forward on every
// revalidation tick (RevalidateInterval, 1s by default), so anything an
// admin or owner takes away, and any deadline that passes (key or
// certificate expiry, a member's expires_at), ends what relied on it
// within two ticks. Each open thing holds its own resource and action in a
// grant registered on its connection: nothing per connection that another
// session could overwrite.

// grant is one open git session or forward: check re-runs its decision,
// end stops it.
type grant struct {
	check func(now time.Time) (reason string)
	end   func(reason string)
	once  sync.Once
}

// stop ends the grant once with reason.
func (g *grant) stop(reason string) { g.once.Do(func() { g.end(reason) }) }

// register adds g to c's open grants; the returned func removes it. A nil
// connection (untracked, tests) registers nothing.
func (c *connection) register(g *grant) (unregister func()) {
	if c == nil {
		return func() {}
	}
	c.slotMu.Lock()
	if c.grants == nil {
		c.grants = map[*grant]struct{}{}
	}
	c.grants[g] = struct{}{}
	c.slotMu.Unlock()
	return func() {
		c.slotMu.Lock()
		delete(c.grants, g)
		c.slotMu.Unlock()
	}
}

// openGrants returns c's open grants.
func (c *connection) openGrants() []*grant {
	c.slotMu.Lock()
	defer c.slotMu.Unlock()
	out := make([]*grant, 0, len(c.grants))
	for g := range c.grants {
		out = append(out, g)
	}
	return out
}

// gitDecision is decideGit's answer: msg for the client ("" when allowed)
// and the reason for logs and audit events.
type gitDecision struct {
	msg, reason string
}

func (d gitDecision) allowed() bool { return d.msg == "" }

// decideGit decides whether identity id may run a git command (write: a
// push) on project projectID of group groupID at now. It reads only the
// index.
func (s *Server) decideGit(id *Identity, projectID, groupID int64, write bool, now time.Time) gitDecision {
	if reason := s.stillValid(id, now); reason != "" {
		return gitDecision{msgDenied, reason}
	}
	if g, ok := s.cfg.Auth.ProjectGroup(projectID); !ok || g != groupID {
		return gitDecision{msgNotFound, "project deleted or moved"}
	}
	g, ok := s.cfg.Auth.Group(groupID)
	if !ok {
		return gitDecision{msgNotFound, "group deleted"}
	}
	if id.IsDeployKey() {
		// Machines: only where the key is enabled; enforce_ssh_certificates
		// does not apply (GitLab !136498).
		read, push := s.cfg.Auth.DeployAccess(id.DeployKeyID, projectID, groupID)
		switch {
		case !read:
			return gitDecision{msgNotFound, "deploy key not enabled on the project"}
		case write && !push:
			return gitDecision{msgDeployReadOnly, "deploy key may not push to the project"}
		}
		return s.groupPolicy(id, g.TopLevelID)
	}
	if id.IsJob() {
		// A CI job's certificate: its one project, read or push, as a
		// deploy key of that project would.
		switch {
		case projectID != id.JobProjectID:
			return gitDecision{msgNotFound, "CI job certificate is for another project"}
		case write && !id.JobWrite:
			return gitDecision{msgJobReadOnly, "CI job certificate may not push"}
		}
		return gitDecision{}
	}
	u, _ := s.cfg.Auth.User(id.UserID)
	level := keystore.EffectiveLevel(u.IsAdmin, s.cfg.Auth.AccessLevel(id.UserID, groupID))
	if level < keystore.Reporter {
		return gitDecision{msgNotFound, "not a member of the project's group"}
	}
	top, _ := s.cfg.Auth.Group(g.TopLevelID)
	switch {
	case id.IsCertificate() && g.TopLevelID != id.CAGroupID:
		return gitDecision{msgCertScope, "certificate's group does not hold the project"}
	case !id.IsCertificate() && top.EnforceSSHCertificates:
		return gitDecision{msgCertRequired, "group enforces SSH certificates"}
	case write && level < keystore.Developer:
		return gitDecision{msgNoPush, "access level below developer"}
	}
	return s.groupPolicy(id, g.TopLevelID)
}

// forwardDecision is decideForward's answer: the target that allows the
// forward, or the message for the client and the reason.
type forwardDecision struct {
	match       authindex.BastionMatch
	msg, reason string
}

func (d forwardDecision) allowed() bool { return d.msg == "" }

// decideForward decides whether identity id, logged in as login, may
// forward to host:port — on the name alone when addrs is nil, else on each
// of the addresses it resolved to. A restricted address (loopback,
// link-local, metadata, any address of this host, keygate's own listeners)
// opens only for a matching target that an admin made naming that exact
// address; the match returned is the target that actually allows it.
func (s *Server) decideForward(id *Identity, login, host string, port uint32, addrs []netip.Addr, now time.Time) forwardDecision {
	dest := net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
	if reason := s.stillValid(id, now); reason != "" {
		return forwardDecision{msg: "permission denied", reason: reason}
	}
	if id.IsJob() || strings.EqualFold(login, s.cfg.GitUser) || !s.cfg.Auth.UsernameIs(id.UserID, login) {
		return forwardDecision{msg: "log in with your own username to forward connections", reason: "git user cannot forward"}
	}
	if id.IsCertificate() && !id.PermitPortForwarding {
		return forwardDecision{msg: "your certificate does not permit port forwarding", reason: "certificate without permit-port-forwarding"}
	}
	if port == 0 || port > 65535 || host == "" || len(host) > 255 {
		return forwardDecision{msg: "no bastion target allows " + dest, reason: "invalid destination"}
	}
	var scope int64
	if id.IsCertificate() {
		scope = id.CAGroupID
	}
	matches := s.cfg.Auth.BastionTargets(id.UserID, scope, !id.IsCertificate(), host, port)
	if len(matches) == 0 {
		return forwardDecision{msg: "no bastion target allows " + dest, reason: "no matching target"}
	}
	m := matches[0]
	for _, a := range addrs {
		if !s.restrictedDest(a, uint16(port)) {
			continue
		}
		am, ok := adminNamed(matches, a)
		if !ok {
			return forwardDecision{msg: "destination " + dest + " resolves to a restricted address",
				reason: "restricted address " + a.String()}
		}
		m = am
	}
	return forwardDecision{match: m}
}

// restrictedDest reports whether a:port is a destination only an admin's
// exact target opens: a restricted address, any address of this host's
// interfaces (its sshd, its database), or one of keygate's own listeners.
func (s *Server) restrictedDest(a netip.Addr, port uint16) bool {
	return restrictedAddr(a) || s.ownListener(a, port) || s.localAddr(a)
}
