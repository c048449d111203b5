package sshd

import (
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

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

// connKey holds a connection's *connection in its ssh.Context.
type connKey struct{}

// closerFromContext returns the connection of ctx (nil if untracked).
func closerFromContext(ctx ssh.Context) closer {
	if tc, ok := ctx.Value(connKey{}).(*connection); ok {
		return tc
	}
	return nil
}

// errPanicked refuses an authentication attempt whose handler panicked.
var errPanicked = errors.New("keygate: internal error")

// guardedOfferedKey is offeredKey under recoverConn: a panic answers "no"
// and closes only this connection.
func (s *Server) guardedOfferedKey(ctx ssh.Context, key ssh.PublicKey) (known bool) {
	defer s.recoverConn("auth query", closerFromContext(ctx))
	s.testHook("auth query")
	tc := connFromContext(ctx)
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
