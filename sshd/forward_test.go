package sshd

import (
	"net/netip"
	"testing"

	"github.com/keygate/keygate/keystore"
)

func TestRestrictedAddressesNeedLiteralTargets(t *testing.T) {
	t.Parallel()
	lit := func(host string) []keystore.BastionMatch { return []keystore.BastionMatch{{Host: host}} }
	cases := []struct {
		addr  string
		ms    []keystore.BastionMatch
		allow bool
	}{
		{"10.1.2.3", lit("*"), true},
		{"127.0.0.1", lit("*"), false},
		{"127.0.0.1", lit("10.0.0.*"), false},
		{"127.0.0.1", lit("127.0.0.1"), true},
		{"127.0.0.2", lit("127.0.0.1"), false},
		{"127.0.0.1", lit("localhost"), true},
		{"::1", lit("localhost"), true},
		{"::1", lit("::1"), true},
		{"169.254.169.254", lit("metadata.internal"), false},
		{"169.254.169.254", lit("169.254.169.254"), true},
		{"fe80::1", lit("*"), false},
		{"0.0.0.0", lit("*"), false},
		{"::", lit("*"), false},
		{"224.0.0.1", lit("*"), false},
	}
	for _, c := range cases {
		a := netip.MustParseAddr(c.addr)
		if got := !restricted(a) || namedExplicitly(c.ms, a); got != c.allow {
			t.Errorf("%s with %v: allowed = %v, want %v", c.addr, c.ms, got, c.allow)
		}
	}
}
