package httpapi

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// FuzzReadParams feeds readParams hostile bodies, content types and query
// strings: it never panics, and every refusal is a 4xx httpError. The
// typed accessors never panic on what it accepted.
func FuzzReadParams(f *testing.F) {
	f.Add("POST", "application/json", []byte(`{"title":"t","key":"ssh-ed25519 AAAA","expires_at":"2026-01-02","scopes":["api"]}`), "page=2")
	f.Add("PUT", "application/x-www-form-urlencoded", []byte("title=t&scopes[]=api&scopes[]=read_api"), "")
	f.Add("POST", "", []byte(`{"a":1}{"b":2}`), "per_page=100")
	f.Add("POST", "multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nt\r\n--x--\r\n"), "")
	f.Add("POST", "application/json", []byte(`{"access_level":1e400,"parent_id":-1,"nested":{"x":1}}`), "a=%zz")
	f.Add("DELETE", "text/plain", []byte("x"), "private_token=abc")
	f.Fuzz(func(t *testing.T, method, ctype string, body []byte, query string) {
		if !validMethod(method) {
			method = "POST"
		}
		req := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		req.Method = method
		req.URL.RawQuery = query
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		p, err := readParams(req)
		if err != nil {
			var he *httpError
			if !errors.As(err, &he) || he.Code < 400 || he.Code > 499 {
				t.Fatalf("readParams error %v (%T) is not a 4xx", err, err)
			}
			return
		}
		for _, name := range []string{"title", "key", "expires_at", "access_level", "parent_id", "scopes", "enforce_ssh_certificates", "page"} {
			_, _ = p.str(name)
			_ = p.strPtr(name)
			_ = p.list(name)
			_, _ = p.boolPtr(name)
			_, _ = p.int64Ptr(name)
			_, _, _ = p.intVal(name)
			_, _ = p.timePtr(name)
		}
		_ = p.require("title", "key")
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	_, err := http.NewRequest(m, "/", nil)
	return err == nil && url.PathEscape(m) == m
}
