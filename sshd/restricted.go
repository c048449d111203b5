package sshd

import (
	"net"
	"net/netip"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// restrictedAddr reports whether a is an address the bastion reaches only
// through an admin's target naming it exactly (keystore.RestrictedAddr:
// loopback, link-local and cloud metadata, unspecified, multicast, and
// those behind NAT64); the store judges owners' targets by the same rule.
func restrictedAddr(a netip.Addr) bool { return keystore.RestrictedAddr(a) }

// ownListener reports whether a:port is one of keygate's own listeners:
// the SSH listener and Config.OwnListeners. A listener on an unspecified
// address (":8080") is on every local address.
func (s *Server) ownListener(a netip.Addr, port uint16) bool {
	a = a.Unmap()
	for _, l := range s.ownAddrs() {
		if l.Port() != port {
			continue
		}
		la := l.Addr().Unmap()
		if la == a || (la.IsUnspecified() && (a.IsLoopback() || s.localAddr(a))) {
			return true
		}
	}
	return false
}

func (s *Server) ownAddrs() []netip.AddrPort {
	out := append([]netip.AddrPort(nil), s.cfg.OwnListeners...)
	s.lnMu.Lock()
	if s.ln != nil {
		if ap, err := netip.ParseAddrPort(s.ln.Addr().String()); err == nil {
			out = append(out, ap)
		}
	}
	s.lnMu.Unlock()
	return out
}

// localAddr reports whether a is an address of this host's interfaces.
func (s *Server) localAddr(a netip.Addr) bool {
	addrs, err := s.hostAddrs()
	if err != nil {
		return true // cannot tell: treat as ours (fail closed)
	}
	a = a.Unmap()
	for _, ip := range addrs {
		if ip.Unmap().WithZone("") == a.WithZone("") {
			return true
		}
	}
	return false
}

// hostAddrs returns this host's addresses (Config.HostAddrs), read at most
// once a second: every open forward re-checks them on each revalidation.
func (s *Server) hostAddrs() ([]netip.Addr, error) {
	read := s.cfg.HostAddrs
	if read == nil {
		read = interfaceAddrs
	}
	s.hostMu.Lock()
	defer s.hostMu.Unlock()
	if s.hostErr == nil && s.hostList != nil && time.Since(s.hostRead) < time.Second {
		return s.hostList, nil
	}
	s.hostList, s.hostErr = read()
	s.hostRead = time.Now()
	return s.hostList, s.hostErr
}

// interfaceAddrs lists the addresses of this host's interfaces.
func interfaceAddrs() ([]netip.Addr, error) {
	ias, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(ias))
	for _, ia := range ias {
		if n, ok := ia.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}

// adminNamed returns the matching target that an admin made naming address
// a exactly (an IP literal, no wildcard, no name), if there is one.
func adminNamed(ms []authindex.BastionMatch, a netip.Addr) (authindex.BastionMatch, bool) {
	for _, m := range ms {
		if !m.Admin || !m.Literal() {
			continue
		}
		if p, err := netip.ParseAddr(m.Host); err == nil && p.Unmap() == a.Unmap() {
			return m, true
		}
	}
	return authindex.BastionMatch{}, false
}
