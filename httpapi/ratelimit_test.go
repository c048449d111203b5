package httpapi_test

import (
	"net/http"
	"testing"
)

// TestFailedTokenRateLimit: repeated bad tokens from one address end in 429
// with Retry-After, while a valid token from the same address still works.
func TestFailedTokenRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	got429 := false
	for i := 0; i < 40 && !got429; i++ {
		r := e.do(t, http.MethodGet, "/api/v4/user", "kgpat-not-a-real-token-0000000000", nil)
		switch r.Code {
		case http.StatusUnauthorized:
		case http.StatusTooManyRequests:
			got429 = true
			if r.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		default:
			t.Fatalf("bad token: status %d", r.Code)
		}
	}
	if !got429 {
		t.Fatal("40 failed authentications in a row were never limited")
	}
	for i := 0; i < 5; i++ {
		if r := e.do(t, http.MethodGet, "/api/v4/user", adminSecret, nil); r.Code != http.StatusOK {
			t.Fatalf("valid token after the limit: status %d", r.Code)
		}
	}
}
