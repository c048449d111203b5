package sshd

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
)

// EventRecorder writes audit events (keystore.Store.RecordEvent).
type EventRecorder interface {
	RecordEvent(ctx context.Context, a keystore.Actor, action, targetType string, targetID int64, details map[string]any) error
}

const (
	// defaultMaxForwards caps concurrent forwarded channels per connection.
	defaultMaxForwards = 10
	defaultDialTimeout = 10 * time.Second
	// maxRefusalEventsPerConn caps audit events for refusals per connection
	// (the log still has every one).
	maxRefusalEventsPerConn = 20
)

// directTCPIP is the RFC 4254 §7.2 payload.
type directTCPIP struct {
	DestAddr   string
	DestPort   uint32
	OriginAddr string
	OriginPort uint32
}

// identityDetails adds who authenticated, and with what, to audit details:
// for a certificate the CA (id, group, fingerprint) and the certificate's
// key id and serial, beside the user.
func identityDetails(id *Identity, d map[string]any) map[string]any {
	if id.IsCertificate() {
		d["cert_key_id"] = id.CertKeyID
		d["cert_serial"] = strconv.FormatUint(id.CertSerial, 10)
		d["ca_id"] = id.CAID
		d["ca_group_id"] = id.CAGroupID
		d["ca_fingerprint"] = fingerprintString(id.CAFingerprint)
		d["key_fingerprint"] = id.KeyFingerprint
		if id.IsJob() {
			d["ci_project_id"] = id.JobProjectID
			d["ci_access"] = map[bool]string{true: keystore.AccessWrite, false: keystore.AccessRead}[id.JobWrite]
		}
	} else if id.IsDeployKey() {
		d["deploy_key_id"] = id.DeployKeyID
		d["deploy_key_title"] = id.DeployKeyTitle
		d["key_fingerprint"] = id.KeyFingerprint
	} else {
		d["key_id"] = id.KeyID
		d["key_fingerprint"] = id.KeyFingerprint
	}
	return d
}

func (s *Server) recordEvent(a keystore.Actor, action string, targetID int64, details map[string]any) {
	s.recordEventOn(a, action, "bastion_target", targetID, details)
}

func (s *Server) recordEventOn(a keystore.Actor, action, targetType string, targetID int64, details map[string]any) {
	if s.cfg.Events == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.cfg.Events.RecordEvent(ctx, a, action, targetType, targetID, details); err != nil {
		s.log.Warn("recording audit event failed", "action", action, "err", err)
	}
}

// recordEventAsync records an audit event off the caller's path; Shutdown
// waits for it.
func (s *Server) recordEventAsync(a keystore.Actor, action, targetType string, targetID int64, details map[string]any) {
	if s.cfg.Events == nil {
		return
	}
	s.events.add()
	go func() {
		defer s.events.done()
		s.recordEventOn(a, action, targetType, targetID, details)
	}()
}

// handleDirectTCPIP serves "direct-tcpip" channels (ssh -W, -L, -J): it
// decides from the verified identity and the group bastion targets, before
// any name resolution, then resolves, checks the addresses and dials.
func (s *Server) handleDirectTCPIP(_ *ssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, ctx ssh.Context) {
	s.forwards.add()
	defer s.forwards.done()
	var d directTCPIP
	if err := gossh.Unmarshal(newChan.ExtraData(), &d); err != nil {
		_ = newChan.Reject(gossh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	id := identityFromContext(ctx)
	remote := conn.RemoteAddr().String()
	dest := net.JoinHostPort(d.DestAddr, strconv.FormatUint(uint64(d.DestPort), 10))
	refuse := func(reason string, why string) {
		s.metrics.forwards.WithLabelValues("refused").Inc()
		var uid int64
		if id != nil {
			uid = id.UserID
		}
		s.log.Info("forwarding refused", "login", conn.User(), "user_id", uid, "destination", dest,
			"reason", why, "remote", remote)
		// The client prints the reason code ("administratively prohibited")
		// itself; the message is only the why.
		_ = newChan.Reject(gossh.Prohibited, reason)
		if id != nil && connFromContext(ctx).countRefusal() {
			details := identityDetails(id, map[string]any{"destination": dest, "reason": why, "login": conn.User()})
			go s.recordEvent(keystore.Actor{UserID: id.UserID, RemoteIP: hostOnly(remote)}, "bastion_forward_refused", 0, details)
		}
	}
	if id == nil || conn.User() != id.Login {
		refuse("permission denied", "identity mismatch")
		return
	}
	// Decided on the name first (decideForward, the same decision that is
	// re-run while the forward is open), before any name resolution.
	if fd := s.decideForward(id, conn.User(), d.DestAddr, d.DestPort, nil, s.cfg.Now()); !fd.allowed() {
		refuse(fd.msg, fd.reason)
		return
	}
	release, ok := connFromContext(ctx).forwardSlot(s.cfg.MaxForwardsPerConn)
	if !ok {
		s.metrics.forwards.WithLabelValues("limited").Inc()
		s.log.Info("forwarding refused: too many forwarded channels", "user_id", id.UserID, "destination", dest, "remote", remote)
		_ = newChan.Reject(gossh.ResourceShortage, "too many forwarded connections on this SSH connection")
		return
	}
	defer release()

	// Decided on the name: now resolve once, decide on every address, and
	// dial only the addresses checked (never resolving again). Restricted
	// addresses, this host's own addresses and keygate's listeners open
	// only for a matching admin-made target that names the exact address.
	dctx, cancel := context.WithTimeout(ctx, s.cfg.ForwardDialTimeout)
	defer cancel()
	addrs, err := resolve(dctx, d.DestAddr)
	if err != nil || len(addrs) == 0 {
		s.metrics.forwards.WithLabelValues("unreachable").Inc()
		s.log.Info("forwarding failed: cannot resolve", "user_id", id.UserID, "destination", dest, "err", err)
		_ = newChan.Reject(gossh.ConnectionFailed, "cannot resolve "+d.DestAddr)
		return
	}
	fd := s.decideForward(id, conn.User(), d.DestAddr, d.DestPort, addrs, s.cfg.Now())
	if !fd.allowed() {
		refuse(fd.msg, fd.reason)
		return
	}
	var tcp *net.TCPConn
	var dialErr error
	dialer := net.Dialer{}
	for _, a := range addrs {
		c, err := dialer.DialContext(dctx, "tcp", netip.AddrPortFrom(a, uint16(d.DestPort)).String())
		if err == nil {
			tcp = c.(*net.TCPConn)
			break
		}
		dialErr = err
		if dctx.Err() != nil {
			break
		}
	}
	if tcp == nil {
		s.metrics.forwards.WithLabelValues("unreachable").Inc()
		s.log.Info("forwarding failed: cannot connect", "user_id", id.UserID, "destination", dest, "err", dialErr)
		_ = newChan.Reject(gossh.ConnectionFailed, "cannot connect to "+dest)
		return
	}
	ch, reqs, err := newChan.Accept()
	if err != nil {
		tcp.Close()
		return
	}
	go gossh.DiscardRequests(reqs)
	s.metrics.forwards.WithLabelValues("accepted").Inc()
	s.metrics.forwardsActive.Inc()
	defer s.metrics.forwardsActive.Dec()
	start := time.Now()
	connected, _ := netip.ParseAddrPort(tcp.RemoteAddr().String())
	connectedAddr := connected.Addr().Unmap()
	var mMu sync.Mutex
	m := fd.match // the target that allows the address connected to
	s.log.Info("forwarding opened", "user_id", id.UserID, "login", conn.User(), "fingerprint", id.KeyFingerprint,
		"cert_key_id", id.CertKeyID, "destination", dest, "address", tcp.RemoteAddr().String(), "target_id", m.TargetID, "remote", remote)

	// This forward's own grant: revalidation re-runs decideForward on the
	// address connected to, and closes the forward once it no longer holds.
	ended := make(chan string, 1)
	unregister := connFromContext(ctx).register(&grant{
		check: func(now time.Time) string {
			fd := s.decideForward(id, conn.User(), d.DestAddr, d.DestPort, []netip.Addr{connectedAddr}, now)
			if fd.allowed() {
				mMu.Lock()
				m = fd.match
				mMu.Unlock()
			}
			return fd.reason
		},
		end: func(reason string) {
			s.metrics.revoked.WithLabelValues("forward").Inc()
			ended <- reason
		},
	})
	in, out, why := s.proxy(ctx, ch, tcp, ended)
	unregister()
	mMu.Lock() // the target that allowed it last
	defer mMu.Unlock()
	if why != "" {
		s.log.Info("forwarding closed: access revoked", "user_id", id.UserID, "destination", dest, "reason", why,
			"target_id", m.TargetID, "remote", remote)
	}
	dur := time.Since(start)
	s.log.Info("forwarding closed", "user_id", id.UserID, "destination", dest, "bytes_in", in, "bytes_out", out,
		"duration_ms", dur.Milliseconds(), "remote", remote)
	details := identityDetails(id, map[string]any{
		"destination": dest, "address": tcp.RemoteAddr().String(), "target_id": m.TargetID, "group_id": m.GroupID,
		"pattern": m.Pattern, "login": conn.User(),
		"bytes_in": in, "bytes_out": out, "duration_ms": dur.Milliseconds(),
	})
	if why != "" {
		details["closed_reason"] = why
	}
	s.recordEvent(keystore.Actor{UserID: id.UserID, RemoteIP: hostOnly(remote)}, "bastion_forward", m.TargetID, details)
}

// proxy copies both ways with half-close until both directions end, or the
// SSH connection ends. in counts client→destination bytes, out the reverse.
// A reason received on ended (revalidation: the forward is no longer
// allowed) closes the forward and is returned as why.
func (s *Server) proxy(ctx ssh.Context, ch gossh.Channel, tcp *net.TCPConn, ended <-chan string) (in, out int64, why string) {
	var nIn, nOut atomic.Int64
	var wg sync.WaitGroup
	var closeOnce sync.Once
	closeBoth := func() {
		closeOnce.Do(func() {
			_ = tcp.Close()
			_ = ch.Close()
		})
	}
	wg.Add(2)
	go func() { // client → destination
		defer wg.Done()
		_, err := io.Copy(countingWriter{tcp, &nIn, s.metrics.forwardBytes.WithLabelValues("in")}, ch)
		if err != nil {
			closeBoth()
			return
		}
		_ = tcp.CloseWrite()
	}()
	go func() { // destination → client
		defer wg.Done()
		_, err := io.Copy(countingWriter{ch, &nOut, s.metrics.forwardBytes.WithLabelValues("out")}, tcp)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			closeBoth()
			return
		}
		_ = ch.CloseWrite()
	}()
	done := make(chan struct{})
	watched := make(chan string, 1)
	go func() {
		select {
		case <-ctx.Done(): // the SSH connection ended (also on revocation)
			closeBoth()
			select { // a grant ended just before its connection closed
			case r := <-ended:
				watched <- r
			default:
				watched <- ""
			}
		case <-s.done:
			closeBoth()
			watched <- ""
		case r := <-ended:
			closeBoth()
			watched <- r
		case <-done:
			watched <- ""
		}
	}()
	wg.Wait()
	close(done)
	why = <-watched
	closeBoth()
	return nIn.Load(), nOut.Load(), why
}

type counter interface{ Add(float64) }

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
	c counter
}

func (cw countingWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	cw.n.Add(int64(n))
	cw.c.Add(float64(n))
	return n, err
}

func resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return nil, errors.New("zoned addresses are not allowed")
		}
		return []netip.Addr{a.Unmap()}, nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(ips))
	for _, a := range ips {
		out = append(out, a.Unmap())
	}
	return out, nil
}

func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
