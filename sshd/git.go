package sshd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
)

const (
	msgDenied         = "keygate: permission denied\n"
	msgNotFound       = "keygate: ERROR: The project you were looking for could not be found or you don't have permission to view it.\n"
	msgNoPush         = "keygate: ERROR: You are not allowed to push code to this project.\n"
	msgDeployReadOnly = "keygate: ERROR: This deploy key is read-only for this project (enable can_push to push).\n"
	msgCertRequired   = "keygate: ERROR: This group requires SSH certificates: log in with a certificate issued by the group's CA.\n"
	msgCertScope      = "keygate: ERROR: Your certificate does not allow access to projects in this namespace.\n"
	msgJobReadOnly    = "keygate: ERROR: This CI job's certificate is read-only for this project (its trust rule has access read).\n"
)

// gitServices maps the SSH command to git's subcommand and whether it writes.
var gitServices = map[string]struct {
	sub   string
	write bool
}{
	"git-upload-pack":    {"upload-pack", false},
	"git-upload-archive": {"upload-archive", false},
	"git-receive-pack":   {"receive-pack", true},
}

var segmentRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]*$`)

// parseRepoPath normalises a client's repository argument: quotes are gone
// already, a leading "~" or "/" and a trailing ".git" are optional. It
// returns "" when the path is malformed (which reads as "not found").
func parseRepoPath(arg string) string {
	p := strings.TrimLeft(arg, "~/")
	p = strings.TrimRight(p, "/")
	p = strings.TrimSuffix(p, ".git")
	segs := strings.Split(p, "/")
	if len(segs) < 2 || len(p) > 1024 {
		return ""
	}
	for _, s := range segs {
		if !segmentRE.MatchString(s) || strings.HasSuffix(s, ".git") {
			return ""
		}
	}
	return p
}

// handleSession serves a session channel: git commands, or a welcome line.
func (s *Server) handleSession(sess ssh.Session) {
	// gliderlabs runs this in a goroutine of its own: recover here too.
	if conn, ok := sess.Context().Value(ssh.ContextKeyConn).(closer); ok {
		defer s.recoverConn("session", conn)
	} else {
		defer s.recoverConn("session", sess)
	}
	s.testHook("session")
	id := identityFromContext(sess.Context())
	if id == nil || sess.User() != id.Login {
		// The client switched user names between attempts, or no identity:
		// never act on anything but the verified identity.
		s.log.Warn("session refused: identity mismatch", "login", sess.User(), "remote", sess.RemoteAddr().String())
		fmt.Fprint(sess.Stderr(), "keygate: permission denied\n")
		_ = sess.Exit(1)
		return
	}
	if reason := s.stillValid(id, s.cfg.Now()); reason != "" {
		fmt.Fprint(sess.Stderr(), msgDenied)
		_ = sess.Exit(1)
		return
	}
	if sess.Subsystem() != "" {
		fmt.Fprintf(sess.Stderr(), "keygate: subsystem %q is not supported\n", sess.Subsystem())
		_ = sess.Exit(1)
		return
	}
	args := sess.Command()
	if len(args) == 0 {
		if id.IsJob() {
			fmt.Fprintf(sess, "Welcome to keygate, CI job %q!\n", id.CertKeyID)
		} else if id.IsDeployKey() {
			fmt.Fprintf(sess, "Welcome to keygate, deploy key %q!\n", id.DeployKeyTitle)
		} else {
			fmt.Fprintf(sess, "Welcome to keygate, @%s!\n", s.cfg.Auth.Username(id.UserID))
		}
		// A client learning our host keys (UpdateHostKeys) gets its
		// proofs before this short session ends.
		s.waitHostKeyProofs(sess.Context())
		_ = sess.Exit(0)
		return
	}
	switch args[0] { // Git LFS over SSH (lfs.go)
	case "git-lfs-transfer":
		s.gitOps.add()
		defer s.gitOps.done()
		_ = sess.Exit(s.runLFS(sess, id, args))
		return
	case "git-lfs-authenticate":
		s.refuseLFSAuthenticate(sess, id, args)
		_ = sess.Exit(1)
		return
	}
	svc, ok := gitServices[args[0]]
	if !ok || len(args) != 2 {
		fmt.Fprintf(sess.Stderr(), "keygate: ERROR: unknown command %q; only git-upload-pack, git-receive-pack, git-upload-archive and git-lfs-transfer are served\n", args[0])
		_ = sess.Exit(1)
		return
	}
	// Shutdown waits for git sessions until their exit status is sent, so
	// a push that finished in the grace period is reported as finished.
	s.gitOps.add()
	defer s.gitOps.done()
	code := s.runGit(sess, id, args[0], svc.sub, svc.write, args[1])
	_ = sess.Exit(code)
}

// authorizeRepo resolves a repository path for an identity and decides
// (decideGit), or returns the message to show and the reason.
func (s *Server) authorizeRepo(ctx context.Context, id *Identity, path string, write bool) (*keystore.Project, gitDecision) {
	clean := parseRepoPath(path)
	if clean == "" {
		return nil, gitDecision{msgNotFound, "malformed repository path"}
	}
	p, err := s.cfg.Projects.ProjectByPath(ctx, clean)
	if err != nil {
		if !errors.Is(err, keystore.ErrNotFound) {
			s.log.Error("project lookup failed", "path", clean, "err", err)
		}
		return nil, gitDecision{msgNotFound, "no such project"}
	}
	if d := s.decideGit(id, p.ID, p.GroupID, write, s.cfg.Now()); !d.allowed() {
		return nil, d
	}
	return p, gitDecision{}
}

// runGit runs one git service for the session and returns its exit status.
func (s *Server) runGit(sess ssh.Session, id *Identity, command, sub string, write bool, path string) int {
	p, d := s.authorizeRepo(sess.Context(), id, path, write)
	if p == nil {
		s.metrics.gitOps.WithLabelValues(command, "denied").Inc()
		s.log.Info("git command denied", "user_id", id.UserID, "deploy_key_id", id.DeployKeyID, "command", command,
			"path", path, "reason", d.reason)
		fmt.Fprint(sess.Stderr(), d.msg)
		return 1
	}
	// Per-principal cap on running git processes (principal.go).
	release, capMsg := s.gitSlot(id)
	if release == nil {
		fmt.Fprint(sess.Stderr(), capMsg)
		return 1
	}
	defer release()
	// This session's own grant: revalidation re-runs decideGit for it on
	// every tick and, once it no longer holds, kills git and ends the
	// session with the reason.
	gctx, cancel := context.WithCancel(sess.Context())
	defer cancel()
	var endedBy atomic.Pointer[gitDecision]
	unregister := connFromContext(sess.Context()).register(&grant{
		check: func(now time.Time) string { return s.decideGit(id, p.ID, p.GroupID, write, now).reason },
		end: func(reason string) {
			d := s.decideGit(id, p.ID, p.GroupID, write, s.cfg.Now())
			if d.allowed() { // cannot happen: check said no; never end silently
				d = gitDecision{msgDenied, reason}
			}
			d.reason = reason
			endedBy.Store(&d)
			s.metrics.revoked.WithLabelValues("git").Inc()
			cancel()
		},
	})
	defer unregister()
	// The one repository-path function, with its escape check.
	repo := keystore.Repos{Root: s.cfg.ReposDir}.Path(p.FullPath)
	if fi, err := os.Stat(repo); repo == "" || err != nil || !fi.IsDir() {
		s.log.Error("repository missing on disk", "project", p.FullPath, "path", repo)
		s.metrics.gitOps.WithLabelValues(command, "error").Inc()
		fmt.Fprint(sess.Stderr(), msgNotFound)
		return 1
	}
	pcArgs, pcEnv, pcDone := s.packCacheFor(gctx, sub, p.ID, repo)
	defer pcDone()
	cmd := exec.CommandContext(gctx, s.cfg.GitBin, append(append(keystore.GitServeArgs(), pcArgs...), sub, repo)...)
	cmd.Env = append(keystore.GitEnv(s.cfg.GitHome, s.cfg.GitBin), pcEnv...)
	for _, kv := range sess.Environ() {
		if v, ok := strings.CutPrefix(kv, "GIT_PROTOCOL="); ok && validGitProtocol(v) {
			cmd.Env = append(cmd.Env, "GIT_PROTOCOL="+v)
		}
	}
	prog := newProgress(time.Now)
	var push *pushWatch // a push's options and report (gitpush.go)
	if write {
		push = &pushWatch{}
	}
	cmd.Stdout = progressWriter{push.server(sess), prog}
	cmd.Stderr = progressWriter{sess.Stderr(), prog}
	// A client that stopped reading blocks the copy to it (and so Wait);
	// watchStall closes its connection, which ends the copy.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	stdin, err := cmd.StdinPipe()
	if err != nil {
		s.metrics.gitOps.WithLabelValues(command, "error").Inc()
		return 1
	}
	if err := cmd.Start(); err != nil {
		s.log.Error("starting git failed", "err", err)
		s.metrics.gitOps.WithLabelValues(command, "error").Inc()
		fmt.Fprint(sess.Stderr(), "keygate: ERROR: internal error\n")
		return 1
	}
	go func() {
		_, _ = io.Copy(stdin, push.client(progressReader{sess, prog}))
		_ = stdin.Close()
	}()
	stopWatch := s.watchStall(sess, prog, command, p.FullPath)
	err = cmd.Wait()
	stopWatch()
	code := 0
	if err != nil {
		code = 1
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			code = ee.ExitCode()
		}
	}
	code, hungUp := push.settle(code)
	result := "ok"
	if code != 0 {
		result = "failed"
	}
	ended := endedBy.Load()
	if ended != nil {
		result = "revoked"
		code = 1
		fmt.Fprintf(sess.Stderr(), "\n%skeygate: this session was ended: %s\n", ended.msg, ended.reason)
		s.log.Info("git session ended: access revoked", "user_id", id.UserID, "deploy_key_id", id.DeployKeyID,
			"command", command, "project", p.FullPath, "reason", ended.reason, "remote", sess.RemoteAddr().String())
	}
	s.metrics.gitOps.WithLabelValues(command, result).Inc()
	logArgs := []any{"user_id", id.UserID, "command", command, "project", p.FullPath, "exit", code,
		"cert_key_id", id.CertKeyID, "ca_id", id.CAID}
	if hungUp { // git's own status was the closed pipe's, not the push's
		logArgs = append(logArgs, "client_hung_up_after_report", true)
	}
	s.log.Info("git command", logArgs...)
	// Each git operation is an audit event naming the key, or the CA and
	// certificate, it was made with.
	action := "git_pull"
	if write {
		action = "git_push"
	}
	details := gitEventDetails(id, command, p.FullPath, sess.User(), code, ended)
	push.addDetails(details)
	if hungUp {
		details["client_hung_up_after_report"] = true
	}
	s.recordEventAsync(keystore.Actor{UserID: id.UserID, RemoteIP: hostOnly(sess.RemoteAddr().String())}, action, "project", p.ID, details)
	return code
}

// gitEventDetails are a git operation's audit details; ended, when set, is
// the change that ended the session.
func gitEventDetails(id *Identity, command, project, login string, code int, ended *gitDecision) map[string]any {
	d := identityDetails(id, map[string]any{"command": command, "project": project, "login": login, "exit_status": code})
	if ended != nil {
		d["closed_reason"] = ended.reason
	}
	return d
}

var gitProtocolRE = regexp.MustCompile(`^[a-zA-Z0-9=:._-]{1,64}$`)

func validGitProtocol(v string) bool { return gitProtocolRE.MatchString(v) }

// progress is when a git session last moved data either way.
type progress struct {
	now  func() time.Time
	last atomic.Int64 // UnixNano
}

func newProgress(now func() time.Time) *progress {
	p := &progress{now: now}
	p.touch()
	return p
}

func (p *progress) touch() { p.last.Store(p.now().UnixNano()) }

func (p *progress) idle() time.Duration { return p.now().Sub(time.Unix(0, p.last.Load())) }

// progressWriter counts a write as progress once the client took it (a
// write blocked on a full channel window is no progress).
type progressWriter struct {
	w io.Writer
	p *progress
}

func (w progressWriter) Write(b []byte) (int, error) {
	n, err := w.w.Write(b)
	if n > 0 {
		w.p.touch()
	}
	return n, err
}

type progressReader struct {
	r io.Reader
	p *progress
}

func (r progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if n > 0 {
		r.p.touch()
	}
	return n, err
}

// watchStall closes the connection of a git session that moved no data in
// either direction for IdleTimeout — a client that stopped reading would
// otherwise pin git (blocked writing to it) forever; closing the connection
// cancels the session's context, which kills git's process group. The
// returned func stops the watch.
func (s *Server) watchStall(sess ssh.Session, prog *progress, command, project string) (stop func()) {
	if s.cfg.IdleTimeout <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		tick := s.cfg.IdleTimeout / 4
		if tick > time.Second {
			tick = time.Second
		}
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if prog.idle() < s.cfg.IdleTimeout {
					continue
				}
				s.metrics.stalls.Inc()
				s.log.Info("closing connection: git session moved no data for the idle timeout",
					"command", command, "project", project, "remote", sess.RemoteAddr().String(), "idle_timeout", s.cfg.IdleTimeout)
				if conn, ok := sess.Context().Value(ssh.ContextKeyConn).(closer); ok {
					_ = conn.Close()
				}
				_ = sess.Close()
				return
			}
		}
	}()
	return func() { close(done) }
}

// sessionChannel serves a "session" channel within the per-connection
// session cap.
func (s *Server) sessionChannel(srv *ssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, ctx ssh.Context) {
	release, ok := connFromContext(ctx).sessionSlot(s.cfg.MaxSessions)
	if !ok {
		s.log.Info("session refused: too many sessions", "login", conn.User(), "remote", conn.RemoteAddr().String(),
			"max_sessions", s.cfg.MaxSessions)
		_ = newChan.Reject(gossh.ResourceShortage, "too many sessions")
		return
	}
	defer release()
	// Returns when the channel's requests end, i.e. the channel is closed.
	// Env requests keygate does not use never reach it (envreq.go).
	ssh.DefaultSessionHandler(srv, conn, envFilter{newChan}, ctx)
}
