package httpapi_test

import (
	"crypto/rand"
	"net/http"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
)

// groupsFixture is a top-level group "acme" with a subgroup "acme/team",
// owned by owner, with maint as a maintainer and outsider in no group.
type groupsFixture struct {
	*env
	ownerToken, maintToken, outsiderToken string
	top, sub                              int64
}

func newGroupsFixture(t *testing.T) *groupsFixture {
	t.Helper()
	e := newEnv(t)
	f := &groupsFixture{env: e}
	_, f.ownerToken = e.newUser(t, "owner")
	maint, maintToken := e.newUser(t, "maint")
	_, f.outsiderToken = e.newUser(t, "outsider")
	f.maintToken = maintToken

	r := e.do(t, "POST", "/api/v4/groups", f.ownerToken, map[string]any{"name": "Acme", "path": "acme"})
	expect(t, "create acme", r, http.StatusCreated)
	f.top = int64(r.Object(t)["id"].(float64))
	r = e.do(t, "POST", "/api/v4/groups", f.ownerToken, map[string]any{"name": "Team", "path": "team", "parent_id": f.top})
	expect(t, "create acme/team", r, http.StatusCreated)
	f.sub = int64(r.Object(t)["id"].(float64))
	r = e.do(t, "POST", "/api/v4/groups/"+itoa(f.top)+"/members", f.ownerToken,
		map[string]any{"user_id": maint.ID, "access_level": keystore.Maintainer})
	expect(t, "add maintainer", r, http.StatusCreated)
	return f
}

// signedCert returns an authorized_keys line holding a user certificate.
func signedCert(t *testing.T, ca gossh.Signer) string {
	t.Helper()
	cert := &gossh.Certificate{Key: newSigner(t).PublicKey(), CertType: gossh.UserCert, KeyId: "alice",
		ValidPrincipals: []string{"alice"}, ValidBefore: gossh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatalf("SignCert: %v", err)
	}
	return authorizedKey(cert, "")
}

func TestGroupSSHCertificateRules(t *testing.T) {
	t.Parallel()
	f := newGroupsFixture(t)
	caSigner := newSigner(t)
	caLine := authorizedKey(caSigner.PublicKey(), "acme-ca")
	top, sub := itoa(f.top), itoa(f.sub)
	before := f.counts(t)

	refused := []struct {
		name, method, path, token string
		body                      any
		code                      int
		want                      string // exact JSON body; "" to check only the status
	}{
		{"subgroup-create", "POST", "/api/v4/groups/" + sub + "/ssh_certificates", f.ownerToken,
			map[string]any{"title": "t", "key": caLine}, 403, `{"message":"403 Forbidden - Group"}`},
		{"subgroup-list", "GET", "/api/v4/groups/" + sub + "/ssh_certificates", f.ownerToken, nil,
			403, `{"message":"403 Forbidden - Group"}`},
		{"subgroup-delete", "DELETE", "/api/v4/groups/" + sub + "/ssh_certificates/1", f.ownerToken, nil,
			403, `{"message":"403 Forbidden - Group"}`},
		{"subgroup-by-encoded-full-path", "POST", "/api/v4/groups/acme%2Fteam/ssh_certificates", f.ownerToken,
			map[string]any{"title": "t", "key": caLine}, 403, `{"message":"403 Forbidden - Group"}`},
		{"subgroup-by-admin", "POST", "/api/v4/groups/" + sub + "/ssh_certificates", adminSecret,
			map[string]any{"title": "t", "key": caLine}, 403, `{"message":"403 Forbidden - Group"}`},
		{"maintainer-create", "POST", "/api/v4/groups/" + top + "/ssh_certificates", f.maintToken,
			map[string]any{"title": "t", "key": caLine}, 403, `{"message":"403 Forbidden"}`},
		{"maintainer-list", "GET", "/api/v4/groups/" + top + "/ssh_certificates", f.maintToken, nil,
			403, `{"message":"403 Forbidden"}`},
		// Outsiders learn nothing about the group, not even that it exists.
		{"outsider-create", "POST", "/api/v4/groups/" + top + "/ssh_certificates", f.outsiderToken,
			map[string]any{"title": "t", "key": caLine}, 404, `{"message":"404 Group Not Found"}`},
		{"outsider-subgroup-list", "GET", "/api/v4/groups/" + sub + "/ssh_certificates", f.outsiderToken, nil,
			404, `{"message":"404 Group Not Found"}`},
		{"unknown-group", "GET", "/api/v4/groups/999999/ssh_certificates", f.ownerToken, nil,
			404, `{"message":"404 Group Not Found"}`},
		{"anonymous", "GET", "/api/v4/groups/" + top + "/ssh_certificates", "", nil,
			401, `{"message":"401 Unauthorized"}`},
		{"certificate-as-ca", "POST", "/api/v4/groups/" + top + "/ssh_certificates", f.ownerToken,
			map[string]any{"title": "t", "key": signedCert(t, caSigner)}, 400, ""},
		{"invalid-key", "POST", "/api/v4/groups/" + top + "/ssh_certificates", f.ownerToken,
			map[string]any{"title": "t", "key": "ssh-ed25519 not-base64!"}, 400, ""},
		{"missing-title", "POST", "/api/v4/groups/" + top + "/ssh_certificates", f.ownerToken,
			map[string]any{"key": caLine}, 400, `{"message":{"title":["is missing"]}}`},
		{"missing-key", "POST", "/api/v4/groups/" + top + "/ssh_certificates", f.ownerToken,
			map[string]any{"title": "t"}, 400, `{"message":{"key":["is missing"]}}`},
		{"title-too-long", "POST", "/api/v4/groups/" + top + "/ssh_certificates", f.ownerToken,
			map[string]any{"title": strings.Repeat("ü", 256), "key": caLine}, 400,
			`{"message":{"title":["is too long (maximum is 255 characters)"]}}`},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, tc.method, tc.path, tc.token, tc.body)
			if tc.want != "" {
				expectBody(t, tc.method+" "+tc.path, r, tc.code, tc.want)
				return
			}
			expect(t, tc.method+" "+tc.path, r, tc.code)
			msg, ok := r.Object(t)["message"].(map[string]any)
			if !ok || len(msg["key"].([]any)) == 0 {
				t.Fatalf("body %s has no reason for field key", r.Body)
			}
		})
	}
	if t.Failed() {
		return
	}
	// The certificate is refused with a reason that says so.
	r := f.do(t, "POST", "/api/v4/groups/"+top+"/ssh_certificates", f.ownerToken,
		map[string]any{"title": "t", "key": signedCert(t, caSigner)})
	if !strings.Contains(string(r.Body), "not a certificate") {
		t.Errorf("certificate as CA: reason %s does not say a certificate is not a CA key", r.Body)
	}
	if after := f.counts(t); after != before {
		t.Fatalf("refused requests changed the store: %+v -> %+v", before, after)
	}

	// The owner adds the CA; the same CA is refused a second time on this
	// group, not on another.
	r = f.do(t, "POST", "/api/v4/groups/"+top+"/ssh_certificates", f.ownerToken, map[string]any{"title": "Acme CA", "key": caLine})
	expect(t, "create CA", r, http.StatusCreated)
	ca := r.Object(t)
	caID := int64(ca["id"].(float64))
	if ca["title"] != "Acme CA" || ca["key"] != caLine || ca["created_at"] == nil || len(ca) != 4 {
		t.Fatalf("create CA = %s; want exactly id, title, key, created_at", r.Body)
	}
	r = f.do(t, "POST", "/api/v4/groups", f.ownerToken, map[string]any{"name": "Other", "path": "other"})
	expect(t, "create other", r, http.StatusCreated)
	other := itoa(int64(r.Object(t)["id"].(float64)))
	r = f.do(t, "POST", "/api/v4/groups/"+top+"/ssh_certificates", f.ownerToken, map[string]any{"title": "again", "key": caLine})
	expectBody(t, "same CA on the same group", r, 400, `{"message":{"fingerprint":["has already been taken"],"fingerprint_sha256":["has already been taken"],"key":["has already been taken"]}}`)
	// Another group may hold the same key: each group's CA is its own.
	r = f.do(t, "POST", "/api/v4/groups/"+other+"/ssh_certificates", f.ownerToken, map[string]any{"title": "again", "key": caLine})
	expect(t, "same CA on another group", r, http.StatusCreated)
	// A deletion through the wrong group is not found and deletes nothing.
	r = f.do(t, "DELETE", "/api/v4/groups/"+other+"/ssh_certificates/"+itoa(caID), f.ownerToken, nil)
	expect(t, "delete CA through another group", r, http.StatusNotFound)
	if _, err := f.store.CA(f.ctx, f.top, caID); err != nil {
		t.Fatalf("CA gone after a refused delete: %v", err)
	}
	r = f.do(t, "DELETE", "/api/v4/groups/"+top+"/ssh_certificates/"+itoa(caID), f.maintToken, nil)
	expectBody(t, "delete CA as maintainer", r, 403, `{"message":"403 Forbidden"}`)
}

func TestGroupSSHCertificateDelete(t *testing.T) {
	t.Parallel()
	f := newGroupsFixture(t)
	for _, tc := range []struct{ name, group, route string }{
		{"plural-route-by-id", itoa(f.top), "ssh_certificates"},
		{"singular-route-by-id", itoa(f.top), "ssh_certificate"},
		{"plural-route-by-path", "acme", "ssh_certificates"},
		{"singular-route-by-encoded-path", "%61cme", "ssh_certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caLine, caPub := newKey(t, "ca "+tc.name)
			r := f.do(t, "POST", "/api/v4/groups/"+tc.group+"/ssh_certificates", f.ownerToken,
				map[string]any{"title": tc.name, "key": caLine})
			expect(t, "create CA", r, http.StatusCreated)
			id := int64(r.Object(t)["id"].(float64))
			r = f.do(t, "GET", "/api/v4/groups/"+tc.group+"/ssh_certificates", f.ownerToken, nil)
			expect(t, "list CAs", r, http.StatusOK)
			if !listHasID(t, r, id) {
				t.Fatalf("new CA %d not listed: %s", id, r.Body)
			}
			r = f.do(t, "DELETE", "/api/v4/groups/"+tc.group+"/"+tc.route+"/"+itoa(id), f.ownerToken, nil)
			expect(t, "delete CA", r, http.StatusNoContent)
			if len(r.Body) != 0 {
				t.Fatalf("204 with a body: %q", r.Body)
			}
			r = f.do(t, "GET", "/api/v4/groups/"+tc.group+"/ssh_certificates", f.ownerToken, nil)
			if listHasID(t, r, id) {
				t.Fatalf("deleted CA %d still listed: %s", id, r.Body)
			}
			if _, err := f.store.CA(f.ctx, 0, id); err == nil {
				t.Fatalf("deleted CA %d still in the store", id)
			}
			cas, _, err := f.store.ListCAs(f.ctx, 0, keystore.Page{PerPage: 100})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cas {
				if c.FingerprintSHA256 == gossh.FingerprintSHA256(caPub) {
					t.Fatalf("deleted CA's fingerprint is still registered (CA %d)", c.ID)
				}
			}
			r = f.do(t, "DELETE", "/api/v4/groups/"+tc.group+"/"+tc.route+"/"+itoa(id), f.ownerToken, nil)
			expect(t, "delete CA twice", r, http.StatusNotFound)
			// Its fingerprint is free again.
			r = f.do(t, "POST", "/api/v4/groups/"+tc.group+"/ssh_certificates", f.ownerToken,
				map[string]any{"title": tc.name, "key": caLine})
			expect(t, "re-create CA", r, http.StatusCreated)
		})
	}
}

// listHasID reports whether a JSON list response holds an object with id.
func listHasID(t *testing.T, r response, id int64) bool {
	t.Helper()
	for _, o := range r.List(t) {
		if v, ok := o["id"].(float64); ok && int64(v) == id {
			return true
		}
	}
	return false
}
