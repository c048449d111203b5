package httpapi_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestRequestID: every answer carries X-Request-Id: the client's own when
// it is short and plain, otherwise a fresh one.
func TestRequestID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hexID := regexp.MustCompile(`^[0-9a-f]{16}$`)
	for _, c := range []struct{ sent, want string }{
		{"", ""}, {"ci-run-42.step_3", "ci-run-42.step_3"}, {"has space", ""}, {strings.Repeat("a", 65), ""},
	} {
		hdr := http.Header{"Private-Token": {adminSecret}}
		if c.sent != "" {
			hdr.Set("X-Request-Id", c.sent)
		}
		got := e.raw(t, http.MethodGet, "/api/v4/user", hdr, nil).Header.Get("X-Request-Id")
		if c.want != "" && got != c.want || c.want == "" && !hexID.MatchString(got) {
			t.Errorf("sent %q: X-Request-Id %q", c.sent, got)
		}
	}
	if a, b := e.do(t, http.MethodGet, "/-/health", "", nil).Header.Get("X-Request-Id"), e.do(t, http.MethodGet, "/-/health", "", nil).Header.Get("X-Request-Id"); a == b {
		t.Errorf("two requests share the id %q", a)
	}
}
