package httpapi_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
)

// hostileCase is one malformed or hostile request.
type hostileCase struct {
	name   string
	method string
	path   string
	token  string // PRIVATE-TOKEN; "" for none
	ctype  string // Content-Type; "" for none
	body   string
	hdr    http.Header // extra headers
	chunk  bool        // send the body without a Content-Length
	code   int         // the exact status wanted; 0: any 4xx
	says   string      // a substring the body must hold ("" for none)
	hides  []string    // substrings the body must not hold
}

// unsized hides a reader's length so the request is sent chunked.
type unsized struct{ io.Reader }

// jsonBody encodes v as a JSON document.
func jsonBody(t *testing.T, v any) string {
	t.Helper()
	return string(mustJSON(t, v))
}

// clearMessage checks a refusal's body: a JSON object with a non-empty
// "message" (string, or field -> reasons) or GitLab's OAuth-style "error".
func clearMessage(t *testing.T, body []byte) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("refusal body is not a JSON object (%v): %q", err, body)
	}
	switch msg := m["message"].(type) {
	case string:
		if strings.TrimSpace(msg) == "" {
			t.Fatalf("empty message: %s", body)
		}
		return
	case map[string]any:
		if len(msg) == 0 {
			t.Fatalf("message has no fields: %s", body)
		}
		for f, rs := range msg {
			list, ok := rs.([]any)
			if !ok || len(list) == 0 {
				t.Fatalf("field %s has no reasons: %s", f, body)
			}
			for _, r := range list {
				if s, _ := r.(string); strings.TrimSpace(s) == "" {
					t.Fatalf("field %s has an empty reason: %s", f, body)
				}
			}
		}
		return
	}
	if e, _ := m["error"].(string); strings.TrimSpace(e) != "" {
		return
	}
	t.Fatalf("refusal body carries no message: %s", body)
}

func TestHostileInputs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, token := e.newUser(t, "alice")
	readOnly := e.newToken(t, alice.ID, nil, keystore.ScopeReadAPI)
	soon := e.clock.Now().Add(time.Hour)
	expired := e.newToken(t, alice.ID, &soon, keystore.ScopeAPI)
	revoked := e.newToken(t, alice.ID, nil, keystore.ScopeAPI)
	revokedID := tokenID(t, e, alice.ID, 3) // the fourth of alice's tokens
	if err := e.store.RevokeToken(e.ctx, keystore.Actor{}, revokedID); err != nil {
		t.Fatal(err)
	}
	mallory, malloryToken := e.newUser(t, "mallory")
	if _, err := e.store.SetUserState(e.ctx, keystore.Actor{}, mallory.ID, keystore.StateBlocked); err != nil {
		t.Fatal(err)
	}
	r := e.do(t, "POST", "/api/v4/groups", token, map[string]any{"name": "Acme", "path": "acme"})
	expect(t, "create group", r, http.StatusCreated)
	group := itoa(idOf(t, r.Object(t)))
	e.clock.Advance(2 * time.Hour) // the expiring token is now expired

	good, goodPub := newKey(t, "good")
	goodFP := gossh.FingerprintSHA256(goodPub)
	blob := keyBase64(good)

	// Key material that must be refused.
	caSigner := newSigner(t)
	certLine := signedCert(t, caSigner)
	rsaWeak := rsaKey(t, 1024)
	weakPub, err := gossh.NewPublicKey(&rsaWeak.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	opensshBlock, err := gossh.MarshalPrivateKey(edPriv, "victim")
	if err != nil {
		t.Fatal(err)
	}
	opensshPEM := string(pem.EncodeToMemory(opensshBlock))
	pkcs1PEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaWeak)}))
	secretOf := func(p string) []string { // lines of the PEM body, as they would leak
		var out []string
		for _, l := range strings.Split(p, "\n") {
			if len(l) > 20 && !strings.HasPrefix(l, "-----") {
				out = append(out, l[:20])
			}
		}
		return out
	}
	gpgPrivEnt, _ := newGPGEntity(t, "Secret", "secret@example.com")
	gpgPrivate := armoredPrivate(t, gpgPrivEnt)

	addKey := func(fields map[string]any) string {
		m := map[string]any{"title": "t", "key": good}
		for k, v := range fields {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return jsonBody(t, m)
	}
	ten := strings.Repeat("A", 10<<20)
	// Valid but for its size: if the cap failed, this key would be stored.
	huge := `{"title":"t","key":"` + good + `","description":"` + ten + `"}`
	deep := `{"title":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `,"key":"` + good + `"}`
	yesterday := dateFromNow(e, -24*time.Hour).Format("2006-01-02")
	long := strings.Repeat("9", 5000)
	sqlName := "'; DROP TABLE keys;--"
	const js = "application/json"

	cases := []hostileCase{
		// Keys that are not acceptable public keys.
		{name: "bad-base64", body: addKey(map[string]any{"key": "ssh-ed25519 AAAA!!!!not*base64"}), code: 400, says: "key"},
		{name: "truncated-blob", body: addKey(map[string]any{"key": "ssh-ed25519 " + blob[:len(blob)/2]}), code: 400, says: "key"},
		{name: "type-and-blob-disagree", body: addKey(map[string]any{"key": "ssh-rsa " + blob}), code: 400, says: "key"},
		{name: "ssh-dss", body: addKey(map[string]any{"key": readFixture(t, "ssh-dss.pub")}), code: 400, says: "forbidden"},
		{name: "rsa-1024", body: addKey(map[string]any{"key": authorizedKey(weakPub, "")}), code: 400, says: "2048"},
		{name: "certificate-as-user-key", body: addKey(map[string]any{"key": certLine}), code: 400, says: "certificate"},
		{name: "openssh-private-key", body: addKey(map[string]any{"key": opensshPEM}), code: 400, says: "private key",
			hides: secretOf(opensshPEM)},
		{name: "pkcs1-rsa-private-key", body: addKey(map[string]any{"key": pkcs1PEM}), code: 400, says: "private key",
			hides: secretOf(pkcs1PEM)},
		{name: "private-key-as-group-ca", path: "/api/v4/groups/" + group + "/ssh_certificates",
			body: jsonBody(t, map[string]any{"title": "ca", "key": opensshPEM}), code: 400, says: "private key", hides: secretOf(opensshPEM)},
		{name: "two-keys-on-two-lines", body: addKey(map[string]any{"key": good + "\n" + rsaKeyLine(t, 2048)}), code: 400, says: "single line"},
		{name: "key-too-long", body: addKey(map[string]any{"key": good + " " + strings.Repeat("c", 5000)}), code: 400, says: "too long"},
		{name: "nul-in-key", body: addKey(map[string]any{"key": good + "\x00"}), code: 400},
		{name: "empty-key", body: addKey(map[string]any{"key": "   "}), code: 400},
		// Other fields.
		{name: "unknown-usage-type", body: addKey(map[string]any{"usage_type": "root"}), code: 400, says: "usage_type"},
		{name: "expires-yesterday-word", body: addKey(map[string]any{"expires_at": "yesterday"}), code: 400, says: "expires_at"},
		{name: "expires-yesterday-date", body: addKey(map[string]any{"expires_at": yesterday}), code: 400, says: "expires_at"},
		{name: "expires-2020", body: addKey(map[string]any{"expires_at": "2020-01-01"}), code: 400, says: "expires_at"},
		{name: "expires-impossible-date", body: addKey(map[string]any{"expires_at": "2026-13-45"}), code: 400, says: "expires_at"},
		{name: "title-too-long-unicode", body: addKey(map[string]any{"title": strings.Repeat("é", 256)}), code: 400, says: "too long"},
		{name: "title-too-long-emoji", body: addKey(map[string]any{"title": strings.Repeat("🔑", 256)}), code: 400, says: "too long"},
		{name: "nul-in-title", body: addKey(map[string]any{"title": "a\x00b"}), code: 400, says: "title"},
		{name: "nul-in-form-title", ctype: "application/x-www-form-urlencoded",
			body: url.Values{"title": {"a\x00b"}, "key": {good}}.Encode(), code: 400, says: "title"},
		{name: "invalid-utf8-in-form-title", ctype: "application/x-www-form-urlencoded",
			body: "title=%ff%fe&key=" + url.QueryEscape(good), code: 400, says: "title"},
		{name: "blank-title", body: addKey(map[string]any{"title": " \t "}), code: 400, says: "title"},
		{name: "sql-in-username", path: "/api/v4/users", token: adminSecret,
			body: jsonBody(t, map[string]any{"username": sqlName, "email": "x@example.com"}), code: 400, says: "username"},
		{name: "sql-in-username-path", method: "GET", path: "/api/v4/users/" + url.PathEscape(sqlName) + "/keys", code: 404, says: "User Not Found"},
		{name: "sql-in-group-path", method: "GET", path: "/api/v4/groups/" + url.PathEscape(sqlName), code: 404, says: "Group Not Found"},
		{name: "group-path-traversal", path: "/api/v4/groups", body: jsonBody(t, map[string]any{"name": "x", "path": "../../etc"}), code: 400, says: "path"},
		{name: "group-path-encoded-traversal", method: "GET", path: "/api/v4/groups/..%2F..%2Fetc", code: 404},
		{name: "parent-id-not-a-number", path: "/api/v4/groups", body: jsonBody(t, map[string]any{"name": "x", "path": "x", "parent_id": "abc"}), code: 400},
		{name: "access-level-invalid", path: "/api/v4/groups/" + group + "/members",
			body: jsonBody(t, map[string]any{"user_id": mallory.ID, "access_level": 99}), code: 400, says: "access_level"},
		{name: "token-scope-invalid", path: "/api/v4/users/" + itoa(alice.ID) + "/personal_access_tokens", token: adminSecret,
			body: jsonBody(t, map[string]any{"name": "x", "scopes": []string{"sudo"}}), code: 400, says: "scopes"},
		{name: "token-expiry-past", path: "/api/v4/users/" + itoa(alice.ID) + "/personal_access_tokens", token: adminSecret,
			body: jsonBody(t, map[string]any{"name": "x", "scopes": []string{"api"}, "expires_at": "2020-01-01"}), code: 400, says: "expires_at"},
		{name: "gpg-garbage", path: "/api/v4/user/gpg_keys", body: jsonBody(t, map[string]any{"key": "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n-----END PGP PUBLIC KEY BLOCK-----"}), code: 400},
		{name: "gpg-private-key", path: "/api/v4/user/gpg_keys", body: jsonBody(t, map[string]any{"key": gpgPrivate}), code: 400,
			says: "private key", hides: secretOf(gpgPrivate)},
		{name: "v3-private-key", path: "/api/v3/user/ssh_signing_keys", body: jsonBody(t, map[string]any{"title": "x", "key": opensshPEM}),
			code: 422, says: "Validation Failed", hides: secretOf(opensshPEM)},
		// Bodies.
		{name: "10MB-body", body: huge, code: 413},
		{name: "10MB-body-chunked", body: huge, chunk: true, code: 413},
		{name: "10MB-body-v3", path: "/api/v3/user/ssh_signing_keys", body: huge, code: 413},
		{name: "text-plain", ctype: "text/plain", body: "title=t&key=" + url.QueryEscape(good), code: 415},
		{name: "xml", ctype: "application/xml", body: "<key><title>t</title></key>", code: 415},
		{name: "malformed-json", body: `{"title": "t", "key": `, code: 400},
		{name: "json-array", body: `[{"title":"t","key":"` + good + `"}]`, code: 400},
		// Operator objects where a value belongs: refused, not ignored (else the key would be added).
		{name: "json-nested-object", body: `{"title":"t","key":"` + good + `","usage_type":{"$ne":""}}`, code: 400, says: "usage_type"},
		{name: "json-list-of-objects", body: `{"title":"t","key":"` + good + `","expires_at":[{"$gt":0}]}`, code: 400, says: "expires_at"},
		{name: "json-trailing-value", body: addKey(nil) + ` {"title":"again"}`, code: 400},
		{name: "json-deeply-nested", body: deep, code: 400},
		{name: "missing-fields", body: `{}`, code: 400, says: "is missing"},
		{name: "missing-title", body: addKey(map[string]any{"title": nil}), code: 400, says: "title"},
		{name: "empty-body", ctype: "-", body: "", code: 400, says: "is missing"},
		{name: "malformed-form", ctype: "application/x-www-form-urlencoded", body: "title=%zz&key=x", code: 400},
		{name: "malformed-multipart", ctype: "multipart/form-data; boundary=xyz", body: "--xyz\r\nbroken", code: 400},
		// Paging.
		{name: "page-negative", method: "GET", path: "/api/v4/user/keys?page=-1", code: 400, says: "page"},
		{name: "page-zero", method: "GET", path: "/api/v4/user/keys?page=0", code: 400, says: "page"},
		{name: "page-huge", method: "GET", path: "/api/v4/user/keys?page=99999999999999999999", code: 400, says: "page"},
		{name: "page-not-a-number", method: "GET", path: "/api/v4/user/keys?page=abc", code: 400, says: "page"},
		{name: "per-page-negative", method: "GET", path: "/api/v4/user/keys?per_page=-5", code: 400, says: "per_page"},
		{name: "per-page-zero", method: "GET", path: "/api/v4/user/keys?per_page=0", code: 400, says: "per_page"},
		{name: "per-page-huge", method: "GET", path: "/api/v4/users?per_page=99999999999999999999", code: 400, says: "per_page"},
		{name: "per-page-not-a-number", method: "GET", path: "/api/v4/groups?per_page=1e3", code: 400, says: "per_page"},
		{name: "v3-per-page-not-a-number", method: "GET", path: "/api/v3/user/keys?per_page=x", code: 422},
		// Paths.
		{name: "key-id-not-numeric", method: "GET", path: "/api/v4/user/keys/abc", code: 404, says: "Key Not Found"},
		{name: "key-id-negative", method: "DELETE", path: "/api/v4/user/keys/-1", code: 404, says: "Key Not Found"},
		{name: "key-id-overflow", method: "GET", path: "/api/v4/user/keys/99999999999999999999999", code: 404, says: "Key Not Found"},
		{name: "key-id-fraction", method: "DELETE", path: "/api/v4/user/keys/1.5", code: 404},
		{name: "key-id-absurdly-long", method: "GET", path: "/api/v4/user/keys/" + long, code: 404},
		{name: "username-absurdly-long", method: "GET", path: "/api/v4/users/" + strings.Repeat("u", 5000) + "/keys", code: 404, says: "User Not Found"},
		{name: "group-absurdly-long", method: "GET", path: "/api/v4/groups/" + strings.Repeat("g%2F", 1500) + "g/members", code: 404},
		{name: "user-id-not-numeric-on-admin-route", method: "DELETE", path: "/api/v4/users/abc", token: adminSecret, code: 404},
		{name: "unknown-route", method: "GET", path: "/api/v4/does/not/exist", code: 404},
		{name: "method-not-allowed", method: "PATCH", path: "/api/v4/user/keys", code: 405},
		{name: "fingerprint-empty", method: "GET", path: "/api/v4/keys?fingerprint=", token: adminSecret, code: 400, says: "fingerprint"},
		{name: "fingerprint-garbage", method: "GET", path: "/api/v4/keys?fingerprint=%27%3B--", token: adminSecret, code: 404},
		// Tokens.
		{name: "read-api-token-post", token: readOnly, body: addKey(nil), code: 403, says: "insufficient_scope"},
		{name: "read-api-token-delete", method: "DELETE", path: "/api/v4/user/keys/1", token: readOnly, code: 403, says: "insufficient_scope"},
		{name: "expired-token", token: expired, body: addKey(nil), code: 401, says: "401 Unauthorized"},
		{name: "revoked-token", token: revoked, body: addKey(nil), code: 401, says: "401 Unauthorized"},
		{name: "blocked-users-token", token: malloryToken, body: addKey(nil), code: 403, says: "blocked"},
		{name: "blocked-users-token-read", method: "GET", path: "/api/v4/user", token: malloryToken, code: 403, says: "blocked"},
		{name: "no-token", token: "-", body: addKey(nil), code: 401, says: "401 Unauthorized"},
		{name: "bad-token-in-query", token: "-", path: "/api/v4/user/keys?private_token=kgpat-no-such-token-anywhere", body: addKey(nil), code: 401},
		{name: "oversized-token-in-query", token: "-", path: "/api/v4/user/keys?private_token=" + strings.Repeat("k", 10000), body: addKey(nil), code: 401},
		{name: "expired-token-in-query", token: "-", path: "/api/v4/user/keys?private_token=" + url.QueryEscape(expired), body: addKey(nil), code: 401},
		{name: "blocked-token-in-query", token: "-", path: "/api/v4/user/keys?private_token=" + url.QueryEscape(malloryToken), body: addKey(nil), code: 403},
		{name: "bearer-token-altered", token: "-", hdr: http.Header{"Authorization": {"Bearer " + token + "x"}}, body: addKey(nil), code: 401},
	}
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}

	before := e.counts(t)
	t.Run("cases", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				method, path, tok, ctype := tc.method, tc.path, tc.token, tc.ctype
				if method == "" {
					method = "POST"
				}
				if path == "" {
					path = "/api/v4/user/keys"
				}
				switch tok {
				case "":
					tok = token
				case "-":
					tok = ""
				}
				hdr := http.Header{}
				for k, vs := range tc.hdr {
					hdr[k] = vs
				}
				if tok != "" {
					hdr.Set("PRIVATE-TOKEN", tok)
				}
				switch {
				case ctype == "" && tc.body != "":
					hdr.Set("Content-Type", js)
				case ctype != "" && ctype != "-":
					hdr.Set("Content-Type", ctype)
				}
				var body io.Reader
				if tc.body != "" {
					body = strings.NewReader(tc.body)
					if tc.chunk {
						body = unsized{body}
					}
				}
				r := e.raw(t, method, path, hdr, body)
				if r.Code < 400 || r.Code > 499 || (tc.code != 0 && r.Code != tc.code) {
					want := "4xx"
					if tc.code != 0 {
						want = itoa(int64(tc.code))
					}
					t.Fatalf("%s %s: status %d, want %s; body %.300s", method, path, r.Code, want, r.Body)
				}
				if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Fatalf("Content-Type %q, want JSON", ct)
				}
				clearMessage(t, r.Body)
				if tc.says != "" && !bytes.Contains(r.Body, []byte(tc.says)) {
					t.Fatalf("body %.300s does not say %q", r.Body, tc.says)
				}
				for _, h := range tc.hides {
					if bytes.Contains(r.Body, []byte(h)) {
						t.Fatalf("body echoes secret material %q: %.300s", h, r.Body)
					}
				}
			})
		}
	})

	if after := e.counts(t); after != before {
		t.Fatalf("hostile requests changed the store:\n before %+v\n after  %+v", before, after)
	}
	if _, err := e.store.KeyByFingerprint(e.ctx, goodFP); err == nil {
		t.Fatal("the key sent with a 10 MB body (or another refused request) was stored")
	}
	logs := e.logs.String()
	for _, secret := range append(append(secretOf(opensshPEM), secretOf(pkcs1PEM)...), token, readOnly, expired, revoked, malloryToken) {
		if strings.Contains(logs, secret) {
			t.Fatalf("the log holds secret material %q", secret)
		}
	}
	if strings.Contains(logs, "level=ERROR") {
		t.Fatalf("hostile input caused server errors:\n%s", logs)
	}
	// The server still works after all that.
	r = e.do(t, "POST", "/api/v4/user/keys", token, map[string]any{"title": "t", "key": good})
	expect(t, "a good key after the hostile ones", r, http.StatusCreated)
}

// tokenID returns the id of the n-th (from 0) token of a user.
func tokenID(t *testing.T, e *env, userID int64, n int) int64 {
	t.Helper()
	toks, _, err := e.store.ListTokens(e.ctx, userID, keystore.Page{PerPage: 100})
	if err != nil || len(toks) <= n {
		t.Fatalf("tokens of %d: %v, %v", userID, toks, err)
	}
	return toks[n].ID
}

// TestHostileValuesThatAreValid: metacharacters are data, not code — SQL
// metacharacters and long (but not too long) Unicode titles are stored and
// returned verbatim.
func TestHostileValuesThatAreValid(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, token := e.newUser(t, "alice")
	for _, title := range []string{
		"'; DROP TABLE keys;--",
		`" OR 1=1 --`,
		"Robert'); DELETE FROM users WHERE ('1'='1",
		strings.Repeat("é", 255),
		strings.Repeat("🔑", 255),
		"<script>alert(1)</script>",
		"%s%n%x",
	} {
		before := e.counts(t)
		line, _ := newKey(t, "")
		r := e.do(t, "POST", "/api/v4/user/keys", token, map[string]any{"title": title, "key": line})
		expect(t, "title "+title, r, http.StatusCreated)
		id := idOf(t, r.Object(t))
		if got := r.Object(t)["title"]; got != title {
			t.Fatalf("title %q came back as %q", title, got)
		}
		k, err := e.store.Key(e.ctx, id)
		if err != nil || k.Title != title {
			t.Fatalf("stored title = %q, %v; want %q", k.Title, err, title)
		}
		after := e.counts(t)
		if after.Keys != before.Keys+1 || after.Users != before.Users || after.AuditEvents != before.AuditEvents+1 {
			t.Fatalf("title %q: counts %+v -> %+v", title, before, after)
		}
	}
	// Usernames with metacharacters are refused; lookups by them find nothing.
	r := e.do(t, "GET", "/api/v4/users?username="+url.QueryEscape("' OR '1'='1"), token, nil)
	expect(t, "user search with SQL", r, http.StatusOK)
	if l := r.List(t); len(l) != 0 {
		t.Fatalf("SQL in ?username= found %d users", len(l))
	}
	r = e.do(t, "GET", "/api/v4/users?per_page=1000", token, nil)
	expect(t, "per_page above the maximum", r, http.StatusOK)
	if r.Header.Get("X-Per-Page") != "100" {
		t.Fatalf("per_page=1000 gave X-Per-Page %q, want the maximum 100", r.Header.Get("X-Per-Page"))
	}
}

// TestHostileConcurrentDuplicates races the same key through both APIs and
// two users: exactly one request creates it, every other one gets the
// documented refusal, never a server error.
func TestHostileConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, alice := e.newUser(t, "alice")
	_, bob := e.newUser(t, "bob")
	line, pub := newKey(t, "")
	before := e.counts(t)
	const n = 24
	results := make([]response, n)
	paths := make([]string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		tok := alice
		if i%2 == 1 {
			tok = bob
		}
		paths[i] = "/api/v4/user/keys"
		if i%3 == 2 {
			paths[i] = "/api/v3/user/ssh_signing_keys"
		}
		wg.Add(1)
		go func(i int, tok string) {
			defer wg.Done()
			results[i] = e.do(t, "POST", paths[i], tok, map[string]any{"title": "race", "key": line})
		}(i, tok)
	}
	wg.Wait()
	created := 0
	for i, r := range results {
		switch {
		case r.Code == http.StatusCreated:
			created++
		case strings.HasPrefix(paths[i], "/api/v4/"):
			expectBody(t, "v4 duplicate", r, 400, `{"message":{"fingerprint":["has already been taken"],"fingerprint_sha256":["has already been taken"],"key":["has already been taken"]}}`)
		default:
			expect(t, "v3 duplicate", r, http.StatusUnprocessableEntity)
			if !bytes.Contains(r.Body, []byte(`"code":"already_exists"`)) {
				t.Fatalf("v3 duplicate body %s lacks code already_exists", r.Body)
			}
		}
	}
	if created != 1 {
		t.Fatalf("%d requests created the key, want exactly 1", created)
	}
	after := e.counts(t)
	if after.Keys != before.Keys+1 || after.AuditEvents != before.AuditEvents+1 {
		t.Fatalf("counts %+v -> %+v; want one more key and one more audit event", before, after)
	}
	if _, err := e.store.KeyByFingerprint(e.ctx, gossh.FingerprintSHA256(pub)); err != nil {
		t.Fatalf("the key is not stored: %v", err)
	}
}
