package httpapi_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"testing"
)

// links parses a Link header into rel -> page number.
func links(t *testing.T, h string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range regexp.MustCompile(`<([^>]*)>; rel="([a-z]+)"`).FindAllStringSubmatch(h, -1) {
		u, err := url.Parse(m[1])
		if err != nil {
			t.Fatalf("Link target %q: %v", m[1], err)
		}
		n, err := strconv.Atoi(u.Query().Get("page"))
		if err != nil {
			t.Fatalf("Link target %q has no page", m[1])
		}
		out[m[2]] = n
	}
	return out
}

// TestPaginationHeadersAgree checks that the X-* headers and the Link header
// tell a client the same thing on every page, including past the last one.
func TestPaginationHeadersAgree(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, token := e.newUser(t, "alice")
	for i := 0; i < 5; i++ {
		line, _ := newKey(t, "")
		expect(t, "add key", e.do(t, "POST", "/api/v4/user/keys", token, map[string]any{"title": "k", "key": line}), http.StatusCreated)
	}
	for _, tc := range []struct {
		page, per         int
		items             int
		next, prev, pages string
	}{
		{1, 2, 2, "2", "", "3"},
		{2, 2, 2, "3", "1", "3"},
		{3, 2, 1, "", "2", "3"},
		{9, 2, 0, "", "3", "3"}, // past the end: back to the last page
		{1, 5, 5, "", "", "1"},
		{1, 100, 5, "", "", "1"},
	} {
		path := "/api/v4/user/keys?page=" + strconv.Itoa(tc.page) + "&per_page=" + strconv.Itoa(tc.per)
		r := e.do(t, "GET", path, token, nil)
		expect(t, path, r, http.StatusOK)
		if n := len(r.List(t)); n != tc.items {
			t.Errorf("%s: %d items, want %d", path, n, tc.items)
		}
		h := r.Header
		if h.Get("X-Total") != "5" || h.Get("X-Page") != strconv.Itoa(tc.page) || h.Get("X-Per-Page") != strconv.Itoa(tc.per) ||
			h.Get("X-Total-Pages") != tc.pages || h.Get("X-Next-Page") != tc.next || h.Get("X-Prev-Page") != tc.prev {
			t.Errorf("%s: X-Total %s X-Page %s X-Per-Page %s X-Total-Pages %s X-Next-Page %q X-Prev-Page %q; want 5 %d %d %s %q %q",
				path, h.Get("X-Total"), h.Get("X-Page"), h.Get("X-Per-Page"), h.Get("X-Total-Pages"), h.Get("X-Next-Page"), h.Get("X-Prev-Page"),
				tc.page, tc.per, tc.pages, tc.next, tc.prev)
		}
		l := links(t, h.Get("Link"))
		pages, _ := strconv.Atoi(tc.pages)
		if l["first"] != 1 || l["last"] != pages {
			t.Errorf("%s: Link first %d last %d, want 1 and %d (%s)", path, l["first"], l["last"], pages, h.Get("Link"))
		}
		for rel, want := range map[string]string{"next": tc.next, "prev": tc.prev} {
			got, ok := l[rel]
			switch {
			case want == "" && ok:
				t.Errorf("%s: Link has rel=%s (page %d) but X-%s-Page is empty", path, rel, got, rel)
			case want != "" && strconv.Itoa(got) != want:
				t.Errorf("%s: Link rel=%s is page %d, X-*-Page says %s (%s)", path, rel, got, want, h.Get("Link"))
			}
		}
	}
}
