package httpapi_test

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/internal/krl"
	"github.com/keygate/keygate/keystore"
)

// TestHostCAAccess: the host CA and host certificate routes are admins'
// only (a user 403, no token 401, a read_api admin token cannot write);
// the host KRL is anyone's.
func TestHostCAAccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, userToken := e.newUser(t, "alice")
	readAdmin := e.newToken(t, e.admin.ID, nil, "read_api")
	_, hostLine := newEd25519Line(t)
	writes := []struct{ method, path string }{
		{"POST", "/api/v4/admin/ssh_host_certificate_authorities"},
		{"DELETE", "/api/v4/admin/ssh_host_certificate_authorities/1"},
		{"POST", "/api/v4/admin/ssh_host_certificates"},
		{"POST", "/api/v4/admin/ssh_host_certificates/1/revoke"},
	}
	reads := []string{"/api/v4/admin/ssh_host_certificate_authorities", "/api/v4/admin/ssh_host_certificate_authorities/1",
		"/api/v4/admin/ssh_host_certificates", "/api/v4/admin/ssh_host_certificates/1"}
	body := map[string]any{"title": "t", "key": hostLine, "principals": "h"}
	for _, w := range writes {
		expect(t, "user "+w.method+" "+w.path, e.do(t, w.method, w.path, userToken, body), 403)
		expect(t, "anonymous "+w.method+" "+w.path, e.do(t, w.method, w.path, "", body), 401)
		expect(t, "read_api admin "+w.method+" "+w.path, e.do(t, w.method, w.path, readAdmin, body), 403)
	}
	for _, p := range reads {
		expect(t, "user GET "+p, e.do(t, "GET", p, userToken, nil), 403)
		expect(t, "anonymous GET "+p, e.do(t, "GET", p, "", nil), 401)
	}
	expect(t, "user reads the host KRL", e.do(t, "GET", "/api/v4/ssh_host_certificate_authorities/krl", userToken, nil), 200)
	expect(t, "anonymous reads the host KRL", e.do(t, "GET", "/api/v4/ssh_host_certificate_authorities/krl", "", nil), 200)
	if _, n, _ := e.store.ListHostCAs(e.ctx, keystore.Page{}); n != 0 {
		t.Errorf("a refused request made %d host CAs", n)
	}
}

// TestHostCAEndpoints: an admin generates host CAs (ed25519 by default;
// the answer has the public key only), signs a fleet server's host key
// (an OpenSSH host certificate for its names, recorded with who asked),
// lists and reads it back, revokes it (its serial and key in the host
// KRL, a new version; ETag 304 until then), and cannot sign that key
// again; bad input is 400 naming the field, unknown ids 404.
func TestHostCAEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const base = "/api/v4/admin/ssh_host_certificate_authorities"
	r := e.do(t, "POST", base, adminSecret, map[string]any{"title": "fleet hosts"})
	expect(t, "generate", r, http.StatusCreated)
	ca := r.Object(t)
	if ca["key_type"] != "ed25519" || !strings.HasPrefix(ca["key"].(string), "ssh-ed25519 ") ||
		ca["created_by"] != float64(e.admin.ID) || strings.Contains(string(r.Body), "PRIVATE") {
		t.Errorf("generated host CA: %s", r.Body)
	}
	caID := itoa(int64(ca["id"].(float64)))
	r = e.do(t, "POST", base, adminSecret, map[string]any{"title": "second", "key_type": "rsa"})
	expect(t, "generate rsa", r, http.StatusCreated)
	rsaID := itoa(int64(r.Object(t)["id"].(float64)))
	expect(t, "bad key_type", e.do(t, "POST", base, adminSecret, map[string]any{"title": "x", "key_type": "dsa"}), 400)
	expect(t, "no title", e.do(t, "POST", base, adminSecret, map[string]any{"key_type": "ecdsa"}), 400)
	r = e.do(t, "GET", base, adminSecret, nil)
	if expect(t, "list", r, 200); len(r.List(t)) != 2 || r.List(t)[0]["id"] != ca["id"] || r.Header.Get("X-Total") != "2" {
		t.Errorf("list: %s", r.Body)
	}
	expect(t, "get", e.do(t, "GET", base+"/"+caID, adminSecret, nil), 200)
	expect(t, "get unknown", e.do(t, "GET", base+"/999", adminSecret, nil), 404)

	krlPath := "/api/v4/ssh_host_certificate_authorities/krl"
	r = e.do(t, "GET", krlPath, "", nil)
	expect(t, "host KRL", r, 200)
	etag := r.Header.Get("ETag")
	if r.Header.Get("X-KRL-Version") != "2" || etag == "" {
		t.Errorf("host KRL after two CAs: version %q, etag %q", r.Header.Get("X-KRL-Version"), etag)
	}
	notModified := e.raw(t, "GET", krlPath, http.Header{"If-None-Match": {etag}}, nil)
	expect(t, "If-None-Match", notModified, http.StatusNotModified)

	// A fleet server's certificate.
	hostPub, hostLine := newEd25519Line(t)
	const certs = "/api/v4/admin/ssh_host_certificates"
	r = e.do(t, "POST", certs, adminSecret, map[string]any{"key": hostLine, "principals": []string{"Web1.example.com", "10.1.2.3"}, "ttl": 3600})
	expect(t, "sign", r, http.StatusCreated)
	hc := r.Object(t)
	pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(hc["certificate"].(string)))
	if err != nil {
		t.Fatalf("certificate: %v (%s)", err, r.Body)
	}
	cert := pub.(*gossh.Certificate)
	if cert.CertType != gossh.HostCert || !bytes.Equal(cert.Key.Marshal(), hostPub.Marshal()) ||
		strings.Join(cert.ValidPrincipals, ",") != "web1.example.com,10.1.2.3" || cert.ValidBefore-cert.ValidAfter != 3660 ||
		hc["requested_by"] != float64(e.admin.ID) || hc["own"] != false || hc["revoked"] != false ||
		hc["ca_id"] != ca["id"] || hc["serial"] != float64(cert.Serial) || hc["key_fingerprint"] != gossh.FingerprintSHA256(hostPub) {
		t.Errorf("signed: %s", r.Body)
	}
	caPub, _, _, _, _ := gossh.ParseAuthorizedKey([]byte(ca["key"].(string)))
	if !bytes.Equal(cert.SignatureKey.Marshal(), caPub.Marshal()) {
		t.Error("not signed by the oldest host CA")
	}
	hcID := itoa(int64(hc["id"].(float64)))
	// The same by form, with ca_id, comma-separated principals.
	_, other := newEd25519Line(t)
	r = e.raw(t, "POST", certs, http.Header{"Private-Token": {adminSecret}, "Content-Type": {"application/x-www-form-urlencoded"}},
		strings.NewReader("key="+urlEscape(other)+"&principals=db1,db1.internal&ca_id="+rsaID))
	if expect(t, "sign by form", r, http.StatusCreated); r.Object(t)["ca_id"] != float64(mustInt(t, rsaID)) {
		t.Errorf("ca_id ignored: %s", r.Body)
	}
	for _, bad := range []struct {
		name  string
		body  map[string]any
		code  int
		field string
	}{
		{"no-key", map[string]any{"principals": "h"}, 400, "key"},
		{"no-principals", map[string]any{"key": hostLine}, 400, "principals"},
		{"bad-principal", map[string]any{"key": hostLine, "principals": "a b"}, 400, "principals"},
		{"bad-ttl", map[string]any{"key": hostLine, "principals": "h", "ttl": "soon"}, 400, "ttl"},
		{"ttl-too-long", map[string]any{"key": hostLine, "principals": "h", "ttl": 400 * 86400}, 400, "ttl"},
		{"a-private-key", map[string]any{"key": "-----BEGIN OPENSSH PRIVATE KEY-----", "principals": "h"}, 400, "key"},
		{"unknown-ca", map[string]any{"key": hostLine, "principals": "h", "ca_id": 999}, 404, ""},
	} {
		r := e.do(t, "POST", certs, adminSecret, bad.body)
		expect(t, bad.name, r, bad.code)
		if bad.field != "" && !strings.Contains(string(r.Body), `"`+bad.field+`"`) {
			t.Errorf("%s: the refusal names no %s: %s", bad.name, bad.field, r.Body)
		}
	}
	r = e.do(t, "GET", certs+"?key_fingerprint="+urlEscape(gossh.FingerprintSHA256(hostPub)), adminSecret, nil)
	if expect(t, "list by key", r, 200); len(r.List(t)) != 1 || r.List(t)[0]["id"] != hc["id"] {
		t.Errorf("list by key: %s", r.Body)
	}
	expect(t, "list by a bad fingerprint", e.do(t, "GET", certs+"?key_fingerprint=nope", adminSecret, nil), 400)
	r = e.do(t, "GET", certs+"/"+hcID, adminSecret, nil)
	if expect(t, "get certificate", r, 200); r.Object(t)["certificate"] != hc["certificate"] {
		t.Errorf("get certificate: %s", r.Body)
	}
	expect(t, "get unknown certificate", e.do(t, "GET", certs+"/999", adminSecret, nil), 404)

	// Revocation: the KRL changes and refuses the certificate and the key.
	e.clock.Advance(time.Minute)
	r = e.do(t, "POST", certs+"/"+hcID+"/revoke", adminSecret, map[string]any{"reason": "decommissioned"})
	if expect(t, "revoke", r, 200); r.Object(t)["revoked"] != true || r.Object(t)["revocation_reason"] != "decommissioned" ||
		r.Object(t)["revoked_by"] != float64(e.admin.ID) {
		t.Errorf("revoke: %s", r.Body)
	}
	expect(t, "revoke again", e.do(t, "POST", certs+"/"+hcID+"/revoke", adminSecret, nil), 409)
	r = e.do(t, "POST", certs, adminSecret, map[string]any{"key": hostLine, "principals": "web1.example.com"})
	if expect(t, "sign a revoked key", r, 409); !strings.Contains(string(r.Body), "revoked") {
		t.Errorf("sign a revoked key: %s", r.Body)
	}
	r = e.raw(t, "GET", krlPath, http.Header{"If-None-Match": {etag}}, nil)
	expect(t, "host KRL after the revocation", r, 200)
	k, err := krl.Parse(r.Body)
	if err != nil {
		t.Fatalf("the host KRL does not parse: %v", err)
	}
	if r.Header.Get("X-KRL-Version") != "3" || k.Version != 3 || !k.Revoked(cert) || !k.Revoked(hostPub) {
		t.Errorf("host KRL: version %q/%d, revokes the certificate %v, the key %v", r.Header.Get("X-KRL-Version"), k.Version, k.Revoked(cert), k.Revoked(hostPub))
	}
	if gen, err := time.Parse(time.RFC3339, r.Header.Get("X-KRL-Generated-At")); err != nil || gen.Unix() != e.clock.Now().Unix() {
		t.Errorf("X-KRL-Generated-At %q", r.Header.Get("X-KRL-Generated-At"))
	}
	r = e.do(t, "GET", certs+"?revoked=true", adminSecret, nil)
	if expect(t, "list revoked", r, 200); len(r.List(t)) != 1 {
		t.Errorf("revoked: %s", r.Body)
	}

	// Deleting a CA: gone from the list, its revocations stay in the KRL.
	expect(t, "delete", e.do(t, "DELETE", base+"/"+caID, adminSecret, nil), 204)
	expect(t, "delete again", e.do(t, "DELETE", base+"/"+caID, adminSecret, nil), 404)
	r = e.do(t, "GET", krlPath, "", nil)
	if k, err := krl.Parse(r.Body); err != nil || !k.Revoked(cert) || r.Header.Get("X-KRL-Version") != "4" {
		t.Errorf("after deleting the CA: %v, version %s", err, r.Header.Get("X-KRL-Version"))
	}
	if !strings.Contains(e.logs.String(), "ssh host certificate issued") || strings.Contains(e.logs.String(), "BEGIN") {
		t.Error("issuance not logged, or key material in the log")
	}
}

// newEd25519Line is a new host key and its authorized_keys line.
func newEd25519Line(t *testing.T) (gossh.PublicKey, string) {
	t.Helper()
	pub := newSigner(t).PublicKey()
	return pub, authorizedKey(pub, "root@host")
}

func urlEscape(s string) string { return url.QueryEscape(s) }

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
