package httpapi_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/keygate/keygate/httpapi"
)

// publicGet sends GET path to srv with the admin token and extra headers and
// returns the Link header and body.
func publicGet(t *testing.T, srv *httptest.Server, path string, hdr map[string]string) (string, string) {
	t.Helper()
	req, err := http.NewRequest("GET", srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("PRIVATE-TOKEN", adminSecret)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, res.StatusCode, b)
	}
	return res.Header.Get("Link"), string(b)
}

// TestPublicURL checks that the links keygate writes (Link headers,
// web_url, v3 url) use the public scheme and host: --external-url first,
// then forwarding headers but only from trusted proxies, then the request.
func TestPublicURL(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, token := e.newUser(t, "alice")
	line, _ := newKey(t, "")
	expect(t, "add key", e.do(t, "POST", "/api/v4/user/keys", token, map[string]any{"title": "k", "key": line}), http.StatusCreated)
	serve := func(cfg httpapi.Config) *httptest.Server {
		cfg.Store = e.store
		a, err := httpapi.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(a)
		t.Cleanup(srv.Close)
		return srv
	}
	loopback := e.srv // default trusted proxies: loopback, which the test client is
	untrusted := serve(httpapi.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	external := serve(httpapi.Config{ExternalURL: "https://git.example.com/kg/"})
	host := strings.TrimPrefix(e.srv.URL, "http://")

	for _, tc := range []struct {
		name string
		srv  *httptest.Server
		hdr  map[string]string
		want string
	}{
		{"plain", loopback, nil, "http://" + host},
		{"X-Forwarded from trusted proxy", loopback, map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "keys.example.org"}, "https://keys.example.org"},
		{"X-Forwarded list: first hop", loopback, map[string]string{"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "a.example, b.example"}, "https://a.example"},
		{"Forwarded wins over X-Forwarded", loopback, map[string]string{"Forwarded": `for=1.2.3.4;proto=https;host="fw.example:8443", for=5.6.7.8`, "X-Forwarded-Host": "x.example"}, "https://fw.example:8443"},
		{"bad forwarded host ignored", loopback, map[string]string{"X-Forwarded-Proto": "gopher", "X-Forwarded-Host": "evil.example/x?"}, "http://" + host},
		{"untrusted peer: headers ignored", untrusted, map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example", "Forwarded": "proto=https;host=evil.example"}, "http://" + strings.TrimPrefix(untrusted.URL, "http://")},
		{"external URL wins", external, map[string]string{"X-Forwarded-Proto": "http", "X-Forwarded-Host": "evil.example"}, "https://git.example.com/kg"},
	} {
		link, _ := publicGet(t, tc.srv, "/api/v4/users?per_page=1", tc.hdr)
		for _, part := range strings.Split(link, ", ") {
			if !strings.HasPrefix(part, "<"+tc.want+"/api/v4/users?") {
				t.Errorf("%s: Link %q, want targets under %s", tc.name, part, tc.want)
			}
		}
		_, body := publicGet(t, tc.srv, "/api/v4/users/"+strconv.FormatInt(alice.ID, 10), tc.hdr)
		if !strings.Contains(body, `"web_url":"`+tc.want+`/`) {
			t.Errorf("%s: user %s, want web_url under %s", tc.name, body, tc.want)
		}
	}
	// The v3 url fields too.
	req, _ := http.NewRequest("GET", external.URL+"/api/v3/user/keys", nil)
	req.Header.Set("Authorization", "token "+token)
	res, err := external.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(b), `"url":"https://git.example.com/kg/api/v3/user/keys/`) {
		t.Errorf("v3 keys: %d %s", res.StatusCode, b)
	}
}

func TestExternalURLRejected(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"git.example.com", "ftp://x", "https://", "https://x/?a=b", "https://u:p@x", "https://x#f", "https://a b"} {
		if _, err := httpapi.ParseExternalURL(bad); err == nil {
			t.Errorf("ParseExternalURL(%q) accepted", bad)
		}
	}
	for in, want := range map[string]string{"https://git.example.com/": "https://git.example.com", "http://h:8080/a/b/": "http://h:8080/a/b"} {
		if got, err := httpapi.ParseExternalURL(in); err != nil || got != want {
			t.Errorf("ParseExternalURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
