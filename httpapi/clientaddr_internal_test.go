package httpapi

import (
	"net/http"
	"net/netip"
	"testing"
)

// TestClientAddr: the client behind trusted proxies is the nearest
// forwarded address that is not a trusted proxy; what a client writes
// before the first proxy, and headers from untrusted peers, are ignored.
func TestClientAddr(t *testing.T) {
	t.Parallel()
	a := &API{trustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}
	cases := []struct {
		name, peer string
		hdr        map[string][]string
		want       string
	}{
		{"direct", "198.51.100.1:5000", nil, "198.51.100.1"},
		{"untrusted peer's header ignored", "198.51.100.1:5000", map[string][]string{"X-Forwarded-For": {"203.0.113.9"}}, "198.51.100.1"},
		{"one proxy", "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"203.0.113.9"}}, "203.0.113.9"},
		{"client-written entry before the proxy's", "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"192.0.2.66, 203.0.113.9"}}, "203.0.113.9"},
		{"two trusted proxies", "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"192.0.2.66, 203.0.113.9, 10.1.2.3"}}, "203.0.113.9"},
		{"headers on several lines", "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"192.0.2.66", "203.0.113.9, 10.1.2.3"}}, "203.0.113.9"},
		{"every hop trusted", "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"10.9.9.9, 10.1.2.3"}}, "10.9.9.9"},
		{"garbage stops the walk", "127.0.0.1:5000", map[string][]string{"X-Forwarded-For": {"203.0.113.9, not-an-ip"}}, "127.0.0.1"},
		{"v6 with port", "[fd00::1]:443", map[string][]string{"X-Forwarded-For": {"[2001:db8::7]:1234"}}, "2001:db8::7"},
		{"no header from a proxy", "127.0.0.1:5000", nil, "127.0.0.1"},
		{"Forwarded wins", "127.0.0.1:5000", map[string][]string{
			"Forwarded":       {`for=192.0.2.66, for="[2001:db8::7]:4711";proto=https, for=10.1.2.3`},
			"X-Forwarded-For": {"203.0.113.9"}}, "2001:db8::7"},
		{"Forwarded unknown", "127.0.0.1:5000", map[string][]string{"Forwarded": {"for=unknown"}}, "127.0.0.1"},
		{"Forwarded without for= leaves X-Forwarded-For", "127.0.0.1:5000", map[string][]string{
			"Forwarded": {"proto=https;host=keys.example.com"}, "X-Forwarded-For": {"203.0.113.9"}}, "203.0.113.9"},
		{"Forwarded hop without for= stops the walk", "127.0.0.1:5000", map[string][]string{
			"Forwarded": {"for=192.0.2.66, proto=https"}}, "127.0.0.1"},
		{"v4-mapped peer", "[::ffff:127.0.0.1]:5000", map[string][]string{"X-Forwarded-For": {"203.0.113.9"}}, "203.0.113.9"},
	}
	for _, c := range cases {
		r, err := http.NewRequest(http.MethodGet, "http://keygate/", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.RemoteAddr = c.peer
		for k, vs := range c.hdr {
			for _, v := range vs {
				r.Header.Add(k, v)
			}
		}
		if got := a.clientAddr(r).String(); got != c.want {
			t.Errorf("%s: client %s, want %s", c.name, got, c.want)
		}
	}
}
