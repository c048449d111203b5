package sshd

import (
	"errors"
	"fmt"
	"sync"

	gossh "golang.org/x/crypto/ssh"
)

// Per-principal caps. However many connections one principal opens, and
// however many git commands it starts on them, keygate holds at most
// MaxConnectionsPerPrincipal authenticated connections and
// MaxGitProcessesPerPrincipal running git processes for it. A principal is
// a user — by user id, whether they logged in with a key or a certificate,
// so certificates issued by several CAs for one person share one budget —
// or a deploy key, by its id (one key shared by a CI pool is one
// principal).

// Default caps, far above what a person or an honest machine uses: a person
// has a handful of connections open and git commands running; the most
// parallel honest clients (repo sync -j, git submodule update --jobs, a CI
// pool cloning with one shared deploy key) run tens at once. A git process
// costs a process and its memory, a connection a few kilobytes, hence the
// lower git cap.
const (
	defaultMaxConnsPerPrincipal = 100
	defaultMaxGitPerPrincipal   = 50
)

// The "limit" label values of keygate_ssh_principal_limit_refusals_total.
const (
	limitConnections  = "connections"
	limitGitProcesses = "git_processes"
)

// errPrincipalCap is a login refused at the per-principal connection cap:
// the credential was good, so it is not a failure of the source.
var errPrincipalCap = errors.New("keygate: per-principal connection limit reached")

// principalKey is what the caps count by.
type principalKey struct {
	deployKey bool
	id        int64
}

func principalOf(id *Identity) principalKey {
	if id.IsDeployKey() {
		return principalKey{deployKey: true, id: id.DeployKeyID}
	}
	return principalKey{id: id.UserID}
}

// principalUse is one principal's count; it is dropped when both are 0, so
// the table holds no more entries than there are open connections.
type principalUse struct{ conns, gits int }

// principalCaps counts, per principal, open authenticated connections and
// running git processes.
type principalCaps struct {
	maxConns, maxGit int // <= 0: no cap
	mu               sync.Mutex
	use              map[principalKey]*principalUse
}

// principalHold is a connection's connection slot, under principalCaps.mu.
type principalHold struct {
	key          principalKey
	held, closed bool
}

func newPrincipalCaps(c *Config) *principalCaps {
	return &principalCaps{maxConns: c.MaxConnectionsPerPrincipal, maxGit: c.MaxGitProcessesPerPrincipal,
		use: map[principalKey]*principalUse{}}
}

func (p *principalCaps) entryLocked(k principalKey) *principalUse {
	u := p.use[k]
	if u == nil {
		u = &principalUse{}
		p.use[k] = u
	}
	return u
}

func (p *principalCaps) dropIfIdleLocked(k principalKey) {
	if u := p.use[k]; u != nil && u.conns <= 0 && u.gits <= 0 {
		delete(p.use, k)
	}
}

// takeConn gives c a connection slot of k, or reports false at the cap. A
// connection already closed takes none (and is not refused: it is gone).
func (p *principalCaps) takeConn(c *connection, k principalKey) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.principal.closed || c.principal.held {
		return true
	}
	if u := p.use[k]; u != nil && p.maxConns > 0 && u.conns >= p.maxConns {
		return false
	}
	p.entryLocked(k).conns++
	c.principal = principalHold{key: k, held: true}
	return true
}

// releaseConn gives back c's slot, once; a slot taken later is never taken.
func (p *principalCaps) releaseConn(c *connection) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.principal.closed = true
	if !c.principal.held {
		return
	}
	c.principal.held = false
	if u := p.use[c.principal.key]; u != nil {
		u.conns--
	}
	p.dropIfIdleLocked(c.principal.key)
}

// takeGit takes a git-process slot of k, or reports false at the cap.
func (p *principalCaps) takeGit(k principalKey) (release func(), ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if u := p.use[k]; u != nil && p.maxGit > 0 && u.gits >= p.maxGit {
		return nil, false
	}
	p.entryLocked(k).gits++
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if u := p.use[k]; u != nil {
				u.gits--
			}
			p.dropIfIdleLocked(k)
		})
	}, true
}

// inUse reports the connections and git processes counted for k.
func (p *principalCaps) inUse(k principalKey) (conns, gits int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if u := p.use[k]; u != nil {
		return u.conns, u.gits
	}
	return 0, 0
}

// tracked is the number of principals in the table.
func (p *principalCaps) tracked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.use)
}

// principalName is how a refusal names the principal to its holder.
func (s *Server) principalName(id *Identity) (who, kind string) {
	if id.IsDeployKey() {
		return fmt.Sprintf("deploy key %q", id.DeployKeyTitle), "deploy key"
	}
	return "@" + s.cfg.Auth.Username(id.UserID), "account"
}

// admitPrincipal takes the authenticated connection's slot of its
// principal (after verifiedKey accepted it), or refuses the login with a
// banner that names the limit.
func (s *Server) admitPrincipal(tc *connection, conn gossh.ConnMetadata, perms *gossh.Permissions) (*gossh.Permissions, error) {
	id, _ := perms.ExtraData[identityKey{}].(*Identity)
	if tc == nil || id == nil {
		return perms, nil
	}
	if s.caps.takeConn(tc, principalOf(id)) {
		return perms, nil
	}
	s.metrics.principalRefusals.WithLabelValues(limitConnections).Inc()
	if s.refusalLog.Allow() {
		s.log.Info("ssh login refused: per-principal connection limit", "user_id", id.UserID, "deploy_key_id", id.DeployKeyID,
			"fingerprint", id.KeyFingerprint, "limit", s.caps.maxConns, "remote", conn.RemoteAddr().String())
	}
	who, kind := s.principalName(id)
	msg := fmt.Sprintf("keygate: connection limit reached: %s already has %d SSH connections open, the most one %s may have; close some and try again",
		who, s.caps.maxConns, kind)
	return nil, &gossh.BannerError{Err: errPrincipalCap, Message: msg + "\r\n"}
}

// gitSlot takes a running-git slot of id's principal; at the cap it
// returns the message for the client's stderr instead.
func (s *Server) gitSlot(id *Identity) (release func(), msg string) {
	if release, ok := s.caps.takeGit(principalOf(id)); ok {
		return release, ""
	}
	s.metrics.principalRefusals.WithLabelValues(limitGitProcesses).Inc()
	if s.refusalLog.Allow() {
		s.log.Info("git command refused: per-principal git process limit", "user_id", id.UserID, "deploy_key_id", id.DeployKeyID,
			"limit", s.caps.maxGit)
	}
	who, kind := s.principalName(id)
	return nil, fmt.Sprintf("keygate: ERROR: git process limit reached: %s is already running %d git commands, the most one %s may run at once; try again when one has finished\n",
		who, s.caps.maxGit, kind)
}
