package sshd

import (
	"net/netip"
	"testing"

	"github.com/keygate/keygate/keystore/authindex"
)

func TestRestrictedAddressesNeedAdminLiteralTargets(t *testing.T) {
	t.Parallel()
	admin := func(host string) []authindex.BastionMatch { return []authindex.BastionMatch{{Host: host, Admin: true}} }
	owner := func(host string) []authindex.BastionMatch { return []authindex.BastionMatch{{Host: host}} }
	cases := []struct {
		addr  string
		ms    []authindex.BastionMatch
		allow bool
	}{
		{"10.1.2.3", admin("*"), true},
		{"10.1.2.3", owner("*"), true},
		{"127.0.0.1", admin("*"), false},
		{"127.0.0.1", admin("10.0.0.*"), false},
		{"127.0.0.1", admin("127.0.0.1"), true},
		{"127.0.0.1", owner("127.0.0.1"), false}, // an owner's literal target never opens loopback
		{"127.0.0.2", admin("127.0.0.1"), false},
		{"127.0.0.1", admin("localhost"), false}, // a name is not the exact address
		{"::1", admin("::1"), true},
		{"::ffff:127.0.0.1", admin("*"), false},
		{"169.254.169.254", admin("metadata.internal"), false},
		{"169.254.169.254", admin("169.254.169.254"), true},
		{"169.254.169.254", owner("169.254.169.254"), false},
		{"fd00:ec2::254", admin("*"), false},
		{"fd00:ec2::254", admin("fd00:ec2::254"), true},
		{"fd00:ec2::253", admin("*"), true},       // an ordinary ULA address
		{"64:ff9b::a9fe:a9fe", admin("*"), false}, // 169.254.169.254 through NAT64
		{"64:ff9b::a01:203", admin("*"), true},    // 10.1.2.3 through NAT64
		{"fe80::1", admin("*"), false},
		{"0.0.0.0", admin("*"), false},
		{"::", admin("*"), false},
		{"224.0.0.1", admin("*"), false},
		{"ff02::1", admin("*"), false},
	}
	for _, c := range cases {
		a := netip.MustParseAddr(c.addr)
		_, named := adminNamed(c.ms, a)
		if got := !restrictedAddr(a) || named; got != c.allow {
			t.Errorf("%s with %+v: allowed = %v, want %v", c.addr, c.ms, got, c.allow)
		}
	}
}
