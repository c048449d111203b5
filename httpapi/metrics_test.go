package httpapi_test

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestMetricLabelsClosed: nothing an anonymous client sends adds a series
// to /metrics. After one round of every request shape, 1,000 more requests
// with made-up methods and paths leave the number of series unchanged:
// methods outside the ones keygate serves are "other", routes are the
// route table's patterns (never raw paths), unmatched ones "unmatched".
func TestMetricLabelsClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	made := func() string {
		var b [6]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}
	// Each shape fixes the method class, route and status; only the
	// made-up strings differ from one round to the next.
	shapes := []func() (method, path string){
		func() (string, string) { return "X" + strings.ToUpper(made()), "/" + made() },
		func() (string, string) { return "get" + made(), "/api/v4/users/" + made() + "/keys" },
		func() (string, string) { return "PROPFIND" + made(), "/api/v3/users/" + made() + "/keys" },
		func() (string, string) { return http.MethodGet, "/" + made() + "/" + made() },
		func() (string, string) { return http.MethodGet, "/api/v4/" + made() },
		func() (string, string) { return http.MethodGet, "/api/v3/" + made() },
		func() (string, string) { return http.MethodGet, "/" + made() + ".keys" },
		func() (string, string) { return http.MethodGet, "/api/v4/users/" + made() + "/gpg_keys" },
		func() (string, string) { return http.MethodPost, "/" + made() },
		func() (string, string) { return http.MethodDelete, "/api/v4/" + made() + "/" + made() },
	}
	send := func(n int) {
		for i := range n {
			method, path := shapes[i%len(shapes)]()
			if r := e.raw(t, method, path, nil, nil); r.Code < 400 {
				t.Fatalf("%s %s: %d", method, path, r.Code)
			}
		}
	}
	series := func() (n int, body string) {
		r := e.raw(t, http.MethodGet, "/metrics", nil, nil)
		if r.Code != http.StatusOK {
			t.Fatalf("/metrics: %d", r.Code)
		}
		for _, line := range strings.Split(string(r.Body), "\n") {
			if line != "" && !strings.HasPrefix(line, "#") {
				n++
			}
		}
		return n, string(r.Body)
	}
	send(len(shapes))
	series() // the scrape itself is counted once it is answered
	before, _ := series()
	send(1000)
	after, body := series()
	if after != before {
		t.Errorf("1,000 made-up requests grew /metrics from %d to %d series", before, after)
	}
	for _, want := range []string{
		`keygate_http_requests_total{code="405",method="other",route="unmatched"}`,
		`keygate_http_requests_total{code="404",method="GET",route="unmatched"}`,
		`keygate_http_requests_total{code="404",method="GET",route="/{username}.keys"}`,
		`keygate_http_requests_total{code="404",method="GET",route="/api/v4/users/{id}/gpg_keys"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, m := range regexp.MustCompile(`method="([^"]*)"`).FindAllStringSubmatch(body, -1) {
		switch m[1] {
		case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other":
		default:
			t.Errorf("/metrics has the method label %q", m[1])
		}
	}
}
