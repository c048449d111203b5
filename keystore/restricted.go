package keystore

import (
	"net/netip"
	"strings"
)

// Addresses the bastion never reaches unless an admin's target names that
// exact address: they reach the bastion host itself or its cloud's
// control plane, not the network behind it. The SSH server refuses a
// forward to them through any other target; the store refuses, at
// creation, an owner's target that could reach nothing else.

// awsIMDSv6 is the EC2 instance metadata service on IPv6 (Nitro).
var awsIMDSv6 = netip.MustParseAddr("fd00:ec2::254")

// nat64 is the well-known NAT64 prefix, through which an IPv6 address can
// name any IPv4 one (64:ff9b::a9fe:a9fe is 169.254.169.254).
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// RestrictedAddr reports whether a is loopback, link-local (cloud
// metadata at 169.254.169.254 included), unspecified, multicast, the EC2
// IPv6 metadata address, or one of those behind NAT64.
func RestrictedAddr(a netip.Addr) bool {
	return restrictedKind(a) != ""
}

// restrictedKind names why a is restricted, or "" if it is not.
func restrictedKind(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() && nat64.Contains(a) {
		b := a.As16()
		if k := restrictedKind(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})); k != "" {
			return k + " (behind NAT64)"
		}
	}
	switch {
	case a.IsLoopback():
		return "a loopback address"
	case a == awsIMDSv6:
		return "the cloud metadata address"
	case a.IsLinkLocalUnicast():
		return "a link-local address (cloud metadata lives there)"
	case a.IsUnspecified():
		return "the unspecified address"
	case a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || a.IsMulticast():
		return "a multicast address"
	}
	return ""
}

// localhostName reports whether every name host matches is a localhost
// name: "localhost" or a name under it, which RFC 6761 reserves for
// loopback addresses.
func localhostName(host string) bool {
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// NeverForwards returns why a target with pattern p, made by a group
// owner, could never forward anything, or "" if it might. An owner's
// target never reaches a restricted address (only an admin's target that
// names the exact address does), so a target that covers nothing else is
// refused rather than stored as active. Judged at creation: an IP literal
// that is restricted, and localhost names (RFC 6761). Any other name is
// judged where it is decided, on the addresses it resolves to when a
// client forwards.
func NeverForwards(p BastionPattern) string {
	if a, err := netip.ParseAddr(p.Host); err == nil {
		if k := restrictedKind(a); k != "" {
			return a.String() + " is " + k + ", which only an administrator's target naming that exact address can reach"
		}
		return ""
	}
	if localhostName(p.Host) {
		return p.Host + " is a localhost name, which resolves to loopback addresses; only an administrator's target naming the exact address can reach those"
	}
	return ""
}
