package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// newPrivateKeyPEM returns a fresh OpenSSH private key in PEM form.
func newPrivateKeyPEM(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "secret@laptop")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}

// TestSecretsNeverLogged runs keygate at debug level, sends it tokens in
// every accepted place and a pasted private key, and searches its whole
// stderr for them (SPEC §8: no secret ever in logs).
func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			admin := randomToken("log-secret-admin-token-")
			p := startServe(t, serveOpts{Env: []string{"KEYGATE_ADMIN_TOKEN=" + admin},
				Args: []string{"--log-level", "debug", "--log-format", format}})

			u := p.must("POST", "/api/v4/users", admin, map[string]any{
				"username": "bob", "email": "bob@example.com", "name": "Bob"}, 201).Object(t)
			var pat struct{ Token string }
			p.must("POST", fmt.Sprintf("/api/v4/users/%d/personal_access_tokens", id(t, u)), admin,
				map[string]any{"name": "laptop", "scopes": []string{"api"}}, 201).JSON(t, &pat)
			if pat.Token == "" {
				t.Fatal("no token in the personal access token's answer")
			}
			wrong := randomToken("kgpat-mistyped-")
			privPEM := newPrivateKeyPEM(t)

			// Tokens in the query string, in each header, good and bad.
			p.must("GET", "/api/v4/user?private_token="+url.QueryEscape(admin), "", nil, 200)
			p.must("GET", "/api/v4/user/keys?private_token="+url.QueryEscape(pat.Token), "", nil, 200)
			p.must("GET", "/api/v4/user", admin, nil, 200)
			p.must("GET", "/api/v4/user", pat.Token, nil, 200)
			p.must("GET", "/api/v4/user?private_token="+url.QueryEscape(wrong), "", nil, 401)
			p.must("GET", "/api/v4/user", wrong, nil, 401)
			for _, auth := range []string{"Bearer " + admin, "Bearer " + wrong} {
				req := mustRequest(t, "GET", p.URL("/api/v4/user"), nil)
				req.Header.Set("Authorization", auth)
				if _, err := p.send(req); err != nil {
					t.Fatal(err)
				}
			}
			req := mustRequest(t, "GET", p.URL("/api/v3/user/keys"), nil)
			req.Header.Set("Authorization", "token "+pat.Token)
			if _, err := p.send(req); err != nil {
				t.Fatal(err)
			}
			// A token on a route that does not exist, and in a request that fails.
			p.must("GET", "/api/v4/no/such/route?private_token="+url.QueryEscape(admin), "", nil, 404)

			// A pasted private key: a clear 400 that says so, as JSON, form and
			// query string, through v4 and v3.
			r := p.must("POST", "/api/v4/user/keys", admin, map[string]any{"title": "oops", "key": privPEM}, 400)
			if !strings.Contains(strings.ToLower(string(r.Body)), "private key") {
				t.Errorf("refusal of a private key does not say why: %s", r.Body)
			}
			form := url.Values{"title": {"oops"}, "key": {privPEM}}
			req = mustRequest(t, "POST", p.URL(fmt.Sprintf("/api/v4/users/%d/keys", id(t, u))), strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("PRIVATE-TOKEN", admin)
			if r, err := p.send(req); err != nil || r.Status != 400 {
				t.Errorf("form POST of a private key: %+v %v, want 400", r, err)
			}
			p.must("POST", "/api/v4/user/keys?"+form.Encode(), pat.Token, nil, 400)
			req = mustRequest(t, "POST", p.URL("/api/v3/user/keys"), strings.NewReader(mustJSON(t, map[string]string{"title": "oops", "key": privPEM})))
			req.Header.Set("Authorization", "token "+pat.Token)
			req.Header.Set("Content-Type", "application/json")
			if r, err := p.send(req); err != nil || r.Status/100 != 4 {
				t.Errorf("v3 POST of a private key: %+v %v, want 4xx", r, err)
			}
			// Nothing was stored.
			var keys []map[string]any
			p.must("GET", "/api/v4/user/keys", admin, nil, 200).JSON(t, &keys)
			if len(keys) != 0 {
				t.Errorf("keys stored after refusals: %v", keys)
			}
			p.stop()

			logs := p.Stderr.String()
			// The requests were logged (so this test can fail).
			if !strings.Contains(logs, "/api/v4/user/keys") {
				t.Fatalf("no debug log of the requests; stderr:\n%s", logs)
			}
			for name, secret := range map[string]string{"admin token": admin, "personal access token": pat.Token, "mistyped token": wrong} {
				if strings.Contains(logs, secret) {
					t.Errorf("the %s %q is in the logs:\n%s", name, secret, logs)
				}
			}
			for _, line := range strings.Split(privPEM, "\n") {
				line = strings.TrimSpace(line)
				if len(line) < 16 {
					continue
				}
				// JSON logs escape nothing in base64 or in the markers; text
				// logs quote the value but keep each line's characters.
				if strings.Contains(logs, line) {
					t.Errorf("a line of the private key is in the logs: %q", line)
				}
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
