package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
)

// gh sends a GitHub-style request: "Authorization: token T", JSON body.
func (e *env) gh(t *testing.T, method, path, token string, body any) response {
	t.Helper()
	hdr := http.Header{"Accept": {"application/vnd.github+json"}}
	if token != "" {
		hdr.Set("Authorization", "token "+token)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
		hdr.Set("Content-Type", "application/json")
	}
	return e.raw(t, method, path, hdr, rd)
}

// keysOf returns the sorted field names of a JSON object.
func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// idOf reads the "id" of a JSON object.
func idOf(t *testing.T, m map[string]any) int64 {
	t.Helper()
	v, ok := m["id"].(float64)
	if !ok || v <= 0 {
		t.Fatalf("no positive id in %v", m)
	}
	return int64(v)
}

func TestGitHubSigningKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, token := e.newUser(t, "alice")
	_, bobToken := e.newUser(t, "bob")
	line, pub := newKey(t, "alice@signing")
	bare := keyBase64(line)

	r := e.gh(t, "POST", "/api/v3/user/ssh_signing_keys", token, map[string]any{"title": "signing", "key": line})
	expect(t, "POST ssh_signing_keys", r, http.StatusCreated)
	created := r.Object(t)
	if got := strings.Join(keysOf(created), ","); got != "created_at,id,key,title,url" {
		t.Fatalf("signing key fields = %s, want GitHub's id,key,url,title,created_at: %s", got, r.Body)
	}
	id := idOf(t, created)
	if created["url"] != e.srv.URL+"/api/v3/user/ssh_signing_keys/"+itoa(id) {
		t.Fatalf("url = %v, want this key's own address", created["url"])
	}
	// GitHub returns the key as "type base64", without the comment.
	if created["key"] != "ssh-ed25519 "+bare || created["title"] != "signing" {
		t.Fatalf("created = %s", r.Body)
	}
	ts, err := time.Parse(time.RFC3339, created["created_at"].(string))
	if err != nil || ts.Sub(e.clock.Now()).Abs() > time.Minute {
		t.Fatalf("created_at %v is not an RFC 3339 time near now (%v)", created["created_at"], err)
	}
	k, err := e.store.Key(e.ctx, id)
	if err != nil || k.UserID != alice.ID || k.UsageType != keystore.UsageSigning || k.FingerprintSHA256 != gossh.FingerprintSHA256(pub) {
		t.Fatalf("stored key = %+v, %v; want alice's signing key", k, err)
	}

	r = e.gh(t, "GET", "/api/v3/user/ssh_signing_keys", token, nil)
	expect(t, "GET ssh_signing_keys", r, http.StatusOK)
	if l := r.List(t); len(l) != 1 || idOf(t, l[0]) != id || l[0]["key"] != created["key"] {
		t.Fatalf("list = %s", r.Body)
	}
	r = e.gh(t, "GET", "/api/v3/user/ssh_signing_keys/"+itoa(id), token, nil)
	expect(t, "GET ssh_signing_keys/:id", r, http.StatusOK)
	if !jsonEqual(t, r.Body, string(mustJSON(t, created))) {
		t.Fatalf("get = %s, want %v", r.Body, created)
	}
	// Not an authentication key: the v3 auth-key view does not show it.
	r = e.gh(t, "GET", "/api/v3/user/keys", token, nil)
	if l := r.List(t); len(l) != 0 {
		t.Fatalf("a signing-only key is listed as an auth key: %s", r.Body)
	}
	// Someone else's key is not found, neither read nor deleted.
	expect(t, "bob GET alice's key", e.gh(t, "GET", "/api/v3/user/ssh_signing_keys/"+itoa(id), bobToken, nil), http.StatusNotFound)
	expect(t, "bob DELETE alice's key", e.gh(t, "DELETE", "/api/v3/user/ssh_signing_keys/"+itoa(id), bobToken, nil), http.StatusNotFound)

	// Public, without a token.
	for _, who := range []string{"alice", "ALICE"} {
		r = e.raw(t, "GET", "/api/v3/users/"+who+"/ssh_signing_keys", nil, nil)
		expect(t, "public GET users/"+who+"/ssh_signing_keys", r, http.StatusOK)
		if l := r.List(t); len(l) != 1 || idOf(t, l[0]) != id || l[0]["key"] != "ssh-ed25519 "+bare {
			t.Fatalf("public list = %s", r.Body)
		}
	}
	expect(t, "public list of an unknown user", e.raw(t, "GET", "/api/v3/users/nobody/ssh_signing_keys", nil, nil), http.StatusNotFound)

	r = e.gh(t, "DELETE", "/api/v3/user/ssh_signing_keys/"+itoa(id), token, nil)
	expect(t, "DELETE ssh_signing_keys/:id", r, http.StatusNoContent)
	expect(t, "GET after delete", e.gh(t, "GET", "/api/v3/user/ssh_signing_keys/"+itoa(id), token, nil), http.StatusNotFound)
	if _, err := e.store.Key(e.ctx, id); err == nil {
		t.Fatal("deleted signing key is still stored")
	}
	if l := e.raw(t, "GET", "/api/v3/users/alice/ssh_signing_keys", nil, nil).List(t); len(l) != 0 {
		t.Fatalf("public list after delete has %d keys", len(l))
	}
}

func TestGitHubMergesWithGitLabKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, token := e.newUser(t, "alice")
	line, _ := newKey(t, "both")

	r := e.do(t, "POST", "/api/v4/user/keys", token, map[string]any{"title": "laptop", "key": line, "usage_type": "auth"})
	expect(t, "v4 add auth key", r, http.StatusCreated)
	id := idOf(t, r.Object(t))
	before := e.counts(t)

	r = e.gh(t, "POST", "/api/v3/user/ssh_signing_keys", token, map[string]any{"title": "signing", "key": line})
	expect(t, "v3 add the same key for signing", r, http.StatusCreated)
	if got := idOf(t, r.Object(t)); got != id {
		t.Fatalf("v3 signing key id %d, want the existing key %d", got, id)
	}
	r = e.do(t, "GET", "/api/v4/user/keys/"+itoa(id), token, nil)
	expect(t, "v4 GET merged key", r, http.StatusOK)
	if u := r.Object(t)["usage_type"]; u != "auth_and_signing" {
		t.Fatalf("after v3 signing add, usage_type = %v, want auth_and_signing", u)
	}
	if after := e.counts(t); after.Keys != before.Keys {
		t.Fatalf("merging created a key: %d -> %d keys", before.Keys, after.Keys)
	}
	if l := e.do(t, "GET", "/api/v4/user/keys", token, nil).List(t); len(l) != 1 {
		t.Fatalf("v4 lists %d keys, want 1", len(l))
	}
	// Both v3 views show it now.
	if l := e.gh(t, "GET", "/api/v3/user/keys", token, nil).List(t); len(l) != 1 || idOf(t, l[0]) != id {
		t.Fatalf("v3 auth keys = %v", l)
	}
	if l := e.gh(t, "GET", "/api/v3/user/ssh_signing_keys", token, nil).List(t); len(l) != 1 || idOf(t, l[0]) != id {
		t.Fatalf("v3 signing keys = %v", l)
	}
	// Adding it for signing again is a conflict, not a second merge.
	r = e.gh(t, "POST", "/api/v3/user/ssh_signing_keys", token, map[string]any{"title": "signing", "key": line})
	expect(t, "v3 add the merged key again", r, http.StatusUnprocessableEntity)

	r = e.gh(t, "DELETE", "/api/v3/user/ssh_signing_keys/"+itoa(id), token, nil)
	expect(t, "v3 delete signing usage", r, http.StatusNoContent)
	r = e.do(t, "GET", "/api/v4/user/keys/"+itoa(id), token, nil)
	expect(t, "v4 GET after v3 signing delete", r, http.StatusOK)
	if u := r.Object(t)["usage_type"]; u != "auth" {
		t.Fatalf("after v3 signing delete, usage_type = %v, want auth", u)
	}
	expect(t, "v3 signing delete of an auth-only key",
		e.gh(t, "DELETE", "/api/v3/user/ssh_signing_keys/"+itoa(id), token, nil), http.StatusNotFound)
	if k, err := e.store.Key(e.ctx, id); err != nil || k.UsageType != keystore.UsageAuth || k.UserID != alice.ID {
		t.Fatalf("stored key = %+v, %v", k, err)
	}

	// The other way round: a signing key gains auth through v3 /user/keys,
	// and loses it again through v3's auth-key delete.
	line2, _ := newKey(t, "")
	r = e.gh(t, "POST", "/api/v3/user/ssh_signing_keys", token, map[string]any{"title": "s", "key": line2})
	expect(t, "v3 add signing key", r, http.StatusCreated)
	id2 := idOf(t, r.Object(t))
	r = e.gh(t, "POST", "/api/v3/user/keys", token, map[string]any{"title": "a", "key": line2})
	expect(t, "v3 add same key for auth", r, http.StatusCreated)
	if got := idOf(t, r.Object(t)); got != id2 {
		t.Fatalf("v3 auth key id %d, want %d", got, id2)
	}
	if u := e.do(t, "GET", "/api/v4/user/keys/"+itoa(id2), token, nil).Object(t)["usage_type"]; u != "auth_and_signing" {
		t.Fatalf("usage_type = %v, want auth_and_signing", u)
	}
	expect(t, "v3 delete auth usage", e.gh(t, "DELETE", "/api/v3/user/keys/"+itoa(id2), token, nil), http.StatusNoContent)
	if u := e.do(t, "GET", "/api/v4/user/keys/"+itoa(id2), token, nil).Object(t)["usage_type"]; u != "signing" {
		t.Fatalf("usage_type after v3 auth delete = %v, want signing", u)
	}
}

func TestGitHubErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, token := e.newUser(t, "alice")
	_, bobToken := e.newUser(t, "bob")
	taken, _ := newKey(t, "")
	expect(t, "bob's key", e.do(t, "POST", "/api/v4/user/keys", bobToken, map[string]any{"title": "b", "key": taken}), http.StatusCreated)
	rsa1024 := rsaKeyLine(t, 1024)
	before := e.counts(t)

	for _, tc := range []struct {
		name  string
		body  any
		field string
		code  string
	}{
		{"invalid-key", map[string]any{"title": "x", "key": "ssh-ed25519 AAAA%%%"}, "key", "custom"},
		{"rsa-1024", map[string]any{"title": "x", "key": rsa1024}, "key", "custom"},
		{"missing-key", map[string]any{"title": "x"}, "key", "missing_field"},
		{"someone-elses-key", map[string]any{"title": "x", "key": taken}, "key", "already_exists"},
		{"title-too-long", map[string]any{"title": strings.Repeat("x", 256), "key": rsa1024}, "title", "custom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/api/v3/user/ssh_signing_keys", "/api/v3/user/keys"} {
				r := e.gh(t, "POST", path, token, tc.body)
				expect(t, "POST "+path, r, http.StatusUnprocessableEntity)
				var body struct {
					Message string
					Errors  []map[string]any
				}
				if err := json.Unmarshal(r.Body, &body); err != nil {
					t.Fatalf("body %s: %v", r.Body, err)
				}
				if body.Message != "Validation Failed" || len(body.Errors) == 0 {
					t.Fatalf("body %s: want message Validation Failed with errors", r.Body)
				}
				found := false
				for _, fe := range body.Errors {
					for _, f := range []string{"resource", "field", "code"} {
						if s, _ := fe[f].(string); s == "" {
							t.Fatalf("error %v lacks %q", fe, f)
						}
					}
					if fe["field"] == tc.field && fe["code"] == tc.code {
						found = true
					}
				}
				if !found {
					t.Fatalf("errors %v: none for field %s with code %s", body.Errors, tc.field, tc.code)
				}
			}
		})
	}

	for _, tc := range []struct {
		name, method, path string
		hdr                http.Header
	}{
		{"no-token-list", "GET", "/api/v3/user/ssh_signing_keys", nil},
		{"no-token-create", "POST", "/api/v3/user/ssh_signing_keys", http.Header{"Content-Type": {"application/json"}}},
		{"no-token-delete", "DELETE", "/api/v3/user/ssh_signing_keys/1", nil},
		{"no-token-auth-keys", "GET", "/api/v3/user/keys", nil},
		{"unknown-token", "GET", "/api/v3/user/ssh_signing_keys", http.Header{"Authorization": {"token kgpat-not-a-real-token-at-all"}}},
		{"unknown-token-on-public-route", "GET", "/api/v3/users/alice/ssh_signing_keys", http.Header{"Authorization": {"token kgpat-not-a-real-token-at-all"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.method == "POST" {
				body = strings.NewReader(`{"title":"x","key":"` + taken + `"}`)
			}
			r := e.raw(t, tc.method, tc.path, tc.hdr, body)
			expect(t, tc.method+" "+tc.path, r, http.StatusUnauthorized)
			want := "Requires authentication" // GitHub: no token at all
			if tc.hdr.Get("Authorization") != "" {
				want = "Bad credentials" // GitHub: a token that is not valid
			}
			if m := r.Object(t)["message"]; m != want {
				t.Fatalf("401 message %v, want GitHub's %s", m, want)
			}
		})
	}
	// Authorization: Bearer works on v3 too.
	r := e.raw(t, "GET", "/api/v3/user/ssh_signing_keys", http.Header{"Authorization": {"Bearer " + token}}, nil)
	expect(t, "v3 with Bearer", r, http.StatusOK)

	if after := e.counts(t); after != before {
		t.Fatalf("refused v3 requests changed the store: %+v -> %+v", before, after)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
