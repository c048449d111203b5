package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// TestStreamingDestinationsREST: admins list, add, change and delete
// streaming destinations; https anywhere, http only to loopback; the
// verification token is generated when not given and never in an audit
// event; others get 403.
func TestStreamingDestinationsREST(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin := e.newToken(t, e.admin.ID, nil, keystore.ScopeAPI)
	const base = "/api/v4/admin/audit_events/streaming/destinations"
	_, userTok := e.newUser(t, "alice")
	expect(t, "user lists", e.do(t, http.MethodGet, base, userTok, nil), http.StatusForbidden)
	expect(t, "user adds", e.do(t, http.MethodPost, base, userTok, map[string]any{"destination_url": "https://x.example.com/"}), http.StatusForbidden)

	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{}, "destination_url"},
		{map[string]any{"destination_url": "http://siem.example.com/"}, "destination_url"},
		{map[string]any{"destination_url": "https://siem.example.com/", "verification_token": "short"}, "verification_token"},
		{map[string]any{"destination_url": "https://siem.example.com/", "event_type_filters": []string{"has space"}}, "event_type_filters"},
	} {
		r := e.do(t, http.MethodPost, base, admin, c.body)
		expect(t, "bad destination", r, http.StatusBadRequest)
		if !strings.Contains(string(r.Body), c.field) {
			t.Errorf("%v: %s, want a 400 naming %s", c.body, r.Body, c.field)
		}
	}
	r := e.do(t, http.MethodPost, base, admin, map[string]any{"destination_url": "https://siem.example.com/keygate",
		"event_type_filters": []string{"key_created", "ssh_login_refused_by_key_policy"}})
	expect(t, "add", r, http.StatusCreated)
	d := r.Object(t)
	tok, _ := d["verification_token"].(string)
	if len(tok) < 16 || d["name"] != "siem.example.com" || len(d["event_type_filters"].([]any)) != 2 {
		t.Fatalf("added: %v", d)
	}
	path := base + "/" + itoa(int64(d["id"].(float64)))
	expect(t, "duplicate", e.do(t, http.MethodPost, base, admin, map[string]any{"destination_url": "https://siem.example.com/keygate"}), http.StatusBadRequest)
	expect(t, "loopback http", e.do(t, http.MethodPost, base, admin, map[string]any{"destination_url": "http://127.0.0.1:9999/"}), http.StatusCreated)
	if l := e.do(t, http.MethodGet, base, admin, nil).List(t); len(l) != 2 {
		t.Fatalf("list: %v", l)
	}
	r = e.do(t, http.MethodPut, path, admin, map[string]any{"verification_token": "a-new-token-of-32-characters-xyz", "event_type_filters": ""})
	expect(t, "update", r, http.StatusOK)
	if u := r.Object(t); u["verification_token"] != "a-new-token-of-32-characters-xyz" || len(u["event_type_filters"].([]any)) != 0 {
		t.Fatalf("updated: %v", u)
	}
	expect(t, "get", e.do(t, http.MethodGet, path, admin, nil), http.StatusOK)
	expect(t, "delete", e.do(t, http.MethodDelete, path, admin, nil), http.StatusNoContent)
	expect(t, "get deleted", e.do(t, http.MethodGet, path, admin, nil), http.StatusNotFound)
	audit := string(e.do(t, http.MethodGet, "/api/v4/audit_events?per_page=100", admin, nil).Body)
	if strings.Contains(audit, tok) || strings.Contains(audit, "a-new-token-of-32-characters-xyz") {
		t.Error("a verification token is in the audit log")
	}
	for _, a := range []string{"audit_stream_destination_created", "audit_stream_destination_updated", "audit_stream_destination_deleted"} {
		if !strings.Contains(audit, a) {
			t.Errorf("no %s audit event", a)
		}
	}
}
