package keystore_test

import (
	"net/netip"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// TestRestrictedAddr: the addresses only an admin's exact target reaches
// (the rule sshd applies when a forward resolves).
func TestRestrictedAddr(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1", true}, {"127.255.0.9", true}, {"::1", true}, {"::ffff:127.0.0.1", true},
		{"169.254.169.254", true}, {"fe80::1", true}, {"fd00:ec2::254", true},
		{"64:ff9b::a9fe:a9fe", true}, {"64:ff9b::7f00:1", true},
		{"0.0.0.0", true}, {"::", true}, {"224.0.0.1", true}, {"239.1.2.3", true}, {"ff02::1", true}, {"ff01::1", true},
		{"10.0.0.1", false}, {"192.168.1.1", false}, {"8.8.8.8", false}, {"fd00:1::5", false},
		{"64:ff9b::a00:1", false}, {"2001:db8::1", false}, {"::ffff:10.0.0.1", false},
	} {
		if got := keystore.RestrictedAddr(netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("RestrictedAddr(%s) = %v, want %v", c.addr, got, c.want)
		}
	}
}
