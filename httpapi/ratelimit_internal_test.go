package httpapi

import (
	"testing"

	"golang.org/x/time/rate"
)

// TestIPLimiterKeysIPv6By64: failed-token budgets are per IPv4 address and
// per IPv6 /64, so a client cannot get a fresh budget by rotating through
// the 2^64 addresses of its own network.
func TestIPLimiterKeysIPv6By64(t *testing.T) {
	t.Parallel()
	l := newIPLimiter(rate.Limit(0.0001), 3)
	for i, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff:ffff:ffff:ffff"} {
		if !l.allow(ip) {
			t.Fatalf("attempt %d from %s refused within the burst", i, ip)
		}
	}
	if l.allow("2001:db8:1:2:abcd::9") {
		t.Fatal("a fourth address of the same /64 got a fresh budget")
	}
	if !l.allow("2001:db8:1:3::1") {
		t.Fatal("another /64 shares the exhausted budget")
	}
	for i := 0; i < 3; i++ {
		if !l.allow("192.0.2.1") {
			t.Fatal("IPv4 address refused within its burst")
		}
	}
	if !l.allow("192.0.2.2") {
		t.Fatal("IPv4 neighbours share a budget")
	}
	if l.allow("::ffff:192.0.2.1") {
		t.Fatal("an IPv4-mapped address escapes its IPv4 budget")
	}
}
