package sshd

import (
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// keepAlive sends "keepalive@openssh.com" requests every KeepAliveInterval
// and closes the connection when KeepAliveCountMax intervals pass without a
// reply to the outstanding one (OpenSSH ClientAliveInterval/CountMax). Any
// reply, also a refusal, shows the client is alive.
func (s *Server) keepAlive(tc *connection, conn *gossh.ServerConn) {
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
