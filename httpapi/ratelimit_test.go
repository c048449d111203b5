package httpapi_test

import (
	"net/http"
	"strings"
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

// TestFailedTokenLimitPerForwardedClient: behind a trusted proxy (the
// default: loopback, where this test's client is) the failed-token budget
// and the audit trail belong to the forwarded client, not the proxy: one
// client guessing tokens does not lock out the others behind the same
// proxy, and it cannot escape its own budget by prepending addresses.
func TestFailedTokenLimitPerForwardedClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bad := func(xff string) int {
		hdr := http.Header{"Private-Token": {"kgpat-not-a-real-token-0000000000"}, "X-Forwarded-For": {xff}}
		return e.raw(t, http.MethodGet, "/api/v4/user", hdr, nil).Code
	}
	limited := false
	for i := 0; i < 40 && !limited; i++ {
		limited = bad("198.51.100.7") == http.StatusTooManyRequests
	}
	if !limited {
		t.Fatal("40 failed authentications from one forwarded client were never limited")
	}
	if code := bad("192.0.2.1, 198.51.100.7"); code != http.StatusTooManyRequests {
		t.Fatalf("the limited client with an address prepended: %d, want 429", code)
	}
	if code := bad("198.51.100.8"); code != http.StatusUnauthorized {
		t.Fatalf("another client behind the same proxy: %d, want 401", code)
	}

	// An audited write names the forwarded client.
	hdr := http.Header{"Private-Token": {adminSecret}, "X-Forwarded-For": {"203.0.113.44"}, "Content-Type": {"application/json"}}
	expect(t, "create group", e.raw(t, http.MethodPost, "/api/v4/groups", hdr, strings.NewReader(`{"name":"fwd","path":"fwd"}`)), http.StatusCreated)
	r := e.do(t, http.MethodGet, "/api/v4/audit_events?per_page=100", adminSecret, nil)
	expect(t, "audit events", r, http.StatusOK)
	events := r.List(t)
	found := false
	for _, ev := range events {
		if d, ok := ev["details"].(map[string]any); ok && d["ip_address"] == "203.0.113.44" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no audit event names the forwarded client: %v", events)
	}
}
