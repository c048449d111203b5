package sshd

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	proxyproto "github.com/pires/go-proxyproto"
)

// PROXY protocol modes (--proxy-protocol).
const (
	// ProxyReject (the default) does not speak the PROXY protocol: a header
	// is never trusted (x/crypto skips lines before the SSH version line),
	// the TCP peer's address is the client's.
	ProxyReject = "reject"
	// ProxyUse reads an optional v1 or v2 header from trusted sources.
	ProxyUse = "use"
	// ProxyRequire refuses trusted sources that send no header.
	ProxyRequire = "require"
)

// ParseCIDRs reads a comma-separated list of CIDRs or single addresses.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not an IP address or CIDR (e.g. 10.0.0.0/8, 192.0.2.1): %w", f, err)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address or CIDR (e.g. 10.0.0.0/8, 192.0.2.1): %w", f, err)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (s *Server) trustedProxy(ip netip.Addr) bool {
	for _, p := range s.cfg.ProxyTrusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// proxyConn reads the PROXY header of a new connection when the mode asks
// for it. Only trusted sources may send one; in require mode they must. The
// returned connection reports the header's source as RemoteAddr, so
// source-address checks, per-source limits, logs and audit events see the
// real client. The caller has set the login-grace deadline, which also
// bounds reading the header.
func (s *Server) proxyConn(conn net.Conn) (net.Conn, error) {
	if s.cfg.ProxyProtocol == ProxyReject {
		return conn, nil
	}
	policy := proxyproto.REJECT
	if s.trustedProxy(addrIP(conn.RemoteAddr())) {
		policy = proxyproto.USE
		if s.cfg.ProxyProtocol == ProxyRequire {
			policy = proxyproto.REQUIRE
		}
	}
	pc := proxyproto.NewConn(conn, proxyproto.WithPolicy(policy))
	// A zero-length read processes the header (once) and reports its error.
	if _, err := pc.Read(nil); err != nil {
		return nil, err
	}
	return pc, nil
}
