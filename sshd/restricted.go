package sshd

import (
	"net"
	"net/netip"
	"time"

	"github.com/keygate/keygate/keystore/authindex"
)

// Addresses the bastion never reaches unless an admin's target names that
// exact address: they reach the bastion host itself or its cloud's
// control plane, not the network behind it.

// awsIMDSv6 is the EC2 instance metadata service on IPv6 (Nitro).
var awsIMDSv6 = netip.MustParseAddr("fd00:ec2::254")

// nat64 is the well-known NAT64 prefix, through which an IPv6 address can
// name any IPv4 one (64:ff9b::a9fe:a9fe is 169.254.169.254).
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// restrictedAddr reports whether a is loopback, link-local (cloud
// metadata at 169.254.169.254 included), unspecified, multicast, the EC2
// IPv6 metadata address, or one of those behind NAT64.
func restrictedAddr(a netip.Addr) bool {
	a = a.Unmap()
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		if restrictedAddr(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})) {
			return true
		}
	}
	return a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsUnspecified() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a == awsIMDSv6
}

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
