package sshd

import (
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// defaultMaxSessions caps concurrent session channels per connection.
const defaultMaxSessions = 10

// sessionChannel serves a "session" channel within the per-connection
// session cap.
func (s *Server) sessionChannel(srv *ssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, ctx ssh.Context) {
	release, ok := s.sessionSlot(ctx, conn)
	if !ok {
		s.log.Info("session refused: too many sessions", "login", conn.User(), "remote", conn.RemoteAddr().String(),
			"max_sessions", s.cfg.MaxSessions)
		_ = newChan.Reject(gossh.ResourceShortage, "too many sessions")
		return
	}
	defer release()
	// Returns when the channel's requests end, i.e. the channel is closed.
	ssh.DefaultSessionHandler(srv, conn, newChan, ctx)
}

func (s *Server) sessionSlot(ctx ssh.Context, conn *gossh.ServerConn) (release func(), ok bool) {
	s.fwdMu.Lock()
	defer s.fwdMu.Unlock()
	st := s.connState(ctx, conn)
	if st.sessions >= s.cfg.MaxSessions {
		return nil, false
	}
	st.sessions++
	return func() {
		s.fwdMu.Lock()
		st.sessions--
		s.fwdMu.Unlock()
	}, true
}

// closer is what recoverConn closes: the connection the panic happened on.
type closer interface{ Close() error }

// recoverConn, deferred, turns a panic in a handler into an error log with
// the stack and closes only that handler's connection.
func (s *Server) recoverConn(where string, c closer) {
	r := recover()
	if r == nil {
		return
	}
	s.metrics.panics.Inc()
	s.log.Error("panic in ssh handler; closing its connection", "handler", where,
		"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	if c != nil {
		_ = c.Close()
	}
}

// trackedConnKey holds a connection's *trackedConn in its ssh.Context.
type trackedConnKey struct{}

// trackedFromContext returns the connection of ctx (nil if untracked).
func trackedFromContext(ctx ssh.Context) closer {
	if tc, ok := ctx.Value(trackedConnKey{}).(*trackedConn); ok {
		return tc
	}
	return nil
}

// errPanicked refuses an authentication attempt whose handler panicked.
var errPanicked = errors.New("keygate: internal error")

// guardedOfferedKey is offeredKey under recoverConn: a panic answers "no"
// and closes only this connection.
func (s *Server) guardedOfferedKey(ctx ssh.Context, key ssh.PublicKey) (known bool) {
	defer s.recoverConn("auth query", trackedFromContext(ctx))
	s.testHook("auth query")
	tc, _ := ctx.Value(trackedConnKey{}).(*trackedConn)
	if tc != nil && !tc.countAuthRequest() {
		return false
	}
	known = s.offeredKey(ctx, key)
	if !known && tc != nil {
		tc.authFailed.Store(true)
	}
	return known
}

func (s *Server) testHook(where string) {
	if s.cfg.testPanic != nil {
		s.cfg.testPanic(where)
	}
}

// guardChannel runs a channel handler under recoverConn.
func (s *Server) guardChannel(name string, h ssh.ChannelHandler) ssh.ChannelHandler {
	return func(srv *ssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, ctx ssh.Context) {
		defer s.recoverConn("channel "+name, conn)
		s.testHook("channel " + name)
		s.announceHostKeys(ctx, conn)
		h(srv, conn, newChan, ctx)
	}
}

// guardRequest runs a global request handler under recoverConn.
func (s *Server) guardRequest(h ssh.RequestHandler) ssh.RequestHandler {
	return func(ctx ssh.Context, srv *ssh.Server, req *gossh.Request) (ok bool, payload []byte) {
		conn, _ := ctx.Value(ssh.ContextKeyConn).(*gossh.ServerConn)
		var c closer
		if conn != nil {
			c = conn
		}
		defer s.recoverConn("request "+req.Type, c)
		s.testHook("request " + req.Type)
		return h(ctx, srv, req)
	}
}

// keepAlive sends "keepalive@openssh.com" requests every KeepAliveInterval
// and closes the connection when KeepAliveCountMax intervals pass without a
// reply to the outstanding one (OpenSSH ClientAliveInterval/CountMax). Any
// reply, also a refusal, shows the client is alive.
func (s *Server) keepAlive(tc *trackedConn, conn *gossh.ServerConn) {
	t := time.NewTicker(s.cfg.KeepAliveInterval)
	defer t.Stop()
	replies := make(chan error, 1)
	inflight, missed := false, 0
	for {
		select {
		case <-tc.ctx.Done():
			return
		case <-s.done:
			return
		case err := <-replies:
			if err != nil {
				return // connection gone
			}
			inflight, missed = false, 0
		case <-t.C:
			if inflight {
				missed++
				if missed >= s.cfg.KeepAliveCountMax {
					s.log.Info("closing connection: keepalives unanswered", "login", conn.User(),
						"remote", conn.RemoteAddr().String(), "missed", missed)
					s.metrics.keepaliveTimeouts.Inc()
					_ = tc.Close()
					_ = conn.Close()
					return
				}
				continue
			}
			inflight = true
			go func() {
				_, _, err := conn.SendRequest("keepalive@openssh.com", true, nil)
				replies <- err
			}()
		}
	}
}
