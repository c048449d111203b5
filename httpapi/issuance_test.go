package httpapi_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/internal/oidcprovider"
	"github.com/keygate/keygate/internal/sealed"
	"github.com/keygate/keygate/keystore"
)

// testCAKey seals managed CAs' private keys in this package's stores.
var testCAKey = func() *sealed.Key {
	k, err := sealed.NewKey(bytes.Repeat([]byte{0x5a}, 32))
	if err != nil {
		panic(err)
	}
	return k
}()

// issuanceFixture: group acme with a managed CA, owner, alice (enterprise
// user of acme and a developer), bob (a developer, no enterprise group),
// carol (enterprise user of acme, not a member), project acme/api.
type issuanceFixture struct {
	*env
	ownerToken, aliceToken, bobToken, carolToken string
	alice                                        *keystore.User
	group, caID, project                         int64
	caKey                                        gossh.PublicKey
}

func newIssuanceFixture(t *testing.T) *issuanceFixture {
	t.Helper()
	e := newEnv(t)
	f := &issuanceFixture{env: e}
	_, f.ownerToken = e.newUser(t, "owner")
	f.alice, f.aliceToken = e.newUser(t, "alice")
	bob, bobToken := e.newUser(t, "bob")
	carol, carolToken := e.newUser(t, "carol")
	f.bobToken, f.carolToken = bobToken, carolToken
	r := e.do(t, "POST", "/api/v4/groups", f.ownerToken, map[string]any{"name": "Acme", "path": "acme"})
	expect(t, "create acme", r, http.StatusCreated)
	f.group = int64(r.Object(t)["id"].(float64))
	for _, u := range []*keystore.User{f.alice, bob} {
		expect(t, "add member", e.do(t, "POST", "/api/v4/groups/"+itoa(f.group)+"/members", f.ownerToken,
			map[string]any{"user_id": u.ID, "access_level": keystore.Developer}), http.StatusCreated)
	}
	for _, u := range []*keystore.User{f.alice, carol} {
		expect(t, "enterprise user", e.do(t, "PUT", "/api/v4/users/"+itoa(u.ID), adminSecret,
			map[string]any{"enterprise_group_id": f.group}), http.StatusOK)
	}
	r = e.do(t, "POST", "/api/v4/groups/"+itoa(f.group)+"/ssh_certificates", f.ownerToken,
		map[string]any{"title": "acme managed", "generate": true})
	expect(t, "generate CA", r, http.StatusCreated)
	ca := r.Object(t)
	f.caID = int64(ca["id"].(float64))
	if ca["managed"] != true {
		t.Fatalf("generated CA is not managed: %s", r.Body)
	}
	var err error
	if f.caKey, _, _, _, err = gossh.ParseAuthorizedKey([]byte(ca["key"].(string))); err != nil {
		t.Fatalf("CA key %q: %v", ca["key"], err)
	}
	r = e.do(t, "POST", "/api/v4/projects", adminSecret, map[string]any{"namespace_id": f.group, "path": "api", "name": "api"})
	expect(t, "create project", r, http.StatusCreated)
	f.project = int64(r.Object(t)["id"].(float64))
	return f
}

// message is an error answer's message (the raw body if it has none).
func message(r response) string {
	var m struct {
		Message any `json:"message"`
	}
	if json.Unmarshal(r.Body, &m) == nil {
		if s, ok := m.Message.(string); ok {
			return s
		}
	}
	return string(r.Body)
}

// issue asks for a certificate with a bearer token (PAT or ID token).
func (f *issuanceFixture) issue(t *testing.T, path, bearer string, body map[string]any) response {
	t.Helper()
	hdr := http.Header{"Content-Type": {"application/json"}}
	if bearer != "" {
		hdr.Set("Authorization", "Bearer "+bearer)
	}
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return f.raw(t, "POST", path, hdr, bytes.NewReader(b))
}

// parseCert parses an issuing response's certificate and checks that the
// fixture's CA signed it.
func (f *issuanceFixture) parseCert(t *testing.T, r response) *gossh.Certificate {
	t.Helper()
	line, _ := r.Object(t)["certificate"].(string)
	pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatalf("certificate %q: %v", line, err)
	}
	cert, ok := pub.(*gossh.Certificate)
	if !ok {
		t.Fatalf("not a certificate: %q", line)
	}
	if !bytes.Equal(cert.SignatureKey.Marshal(), f.caKey.Marshal()) {
		t.Fatalf("certificate not signed by the group's managed CA")
	}
	checker := gossh.CertChecker{SupportedCriticalOptions: []string{keystore.JobCertOption}}
	if err := checker.CheckCert(cert.ValidPrincipals[0], cert); err != nil {
		t.Fatalf("x/crypto's CertChecker refuses the certificate: %v", err)
	}
	return cert
}

func TestManagedCA(t *testing.T) {
	t.Parallel()
	f := newIssuanceFixture(t)
	top := itoa(f.group)
	// key types; the answer never carries a private key.
	for _, kt := range []struct{ typ, algo string }{{"ecdsa", gossh.KeyAlgoECDSA256}, {"rsa", gossh.KeyAlgoRSA}} {
		r := f.do(t, "POST", "/api/v4/groups/"+top+"/ssh_certificates", f.ownerToken, map[string]any{"title": kt.typ, "generate": true, "key_type": kt.typ})
		expect(t, "generate "+kt.typ, r, http.StatusCreated)
		if !strings.HasPrefix(r.Object(t)["key"].(string), kt.algo+" ") || bytes.Contains(r.Body, []byte("PRIVATE")) {
			t.Fatalf("generate %s: %s", kt.typ, r.Body)
		}
	}
	for _, c := range []struct {
		name  string
		token string
		body  map[string]any
		code  int
		says  string
	}{
		{"bad-key-type", f.ownerToken, map[string]any{"title": "x", "generate": true, "key_type": "dsa"}, 400, "key_type"},
		{"key-with-generate", f.ownerToken, map[string]any{"title": "x", "generate": true, "key": authorizedKey(newSigner(t).PublicKey(), "")}, 400, "generate=true"},
		{"key-type-without-generate", f.ownerToken, map[string]any{"title": "x", "key_type": "rsa", "key": authorizedKey(newSigner(t).PublicKey(), "")}, 400, "key_type"},
		{"no-title", f.ownerToken, map[string]any{"generate": true}, 400, "title"},
		{"developer", f.aliceToken, map[string]any{"title": "x", "generate": true}, 403, "Forbidden"},
	} {
		r := f.do(t, "POST", "/api/v4/groups/"+top+"/ssh_certificates", c.token, c.body)
		if r.Code != c.code || !strings.Contains(message(r), c.says) {
			t.Errorf("%s: %d %s, want %d saying %q", c.name, r.Code, r.Body, c.code, c.says)
		}
	}
	uploaded := f.do(t, "POST", "/api/v4/groups/"+top+"/ssh_certificates", f.ownerToken, map[string]any{"title": "up", "key": authorizedKey(newSigner(t).PublicKey(), "")})
	expect(t, "upload", uploaded, http.StatusCreated)
	if _, has := uploaded.Object(t)["managed"]; has {
		t.Errorf("an uploaded CA's answer changed shape: %s", uploaded.Body)
	}
	list := f.do(t, "GET", "/api/v4/groups/"+top+"/ssh_certificates", f.ownerToken, nil)
	expect(t, "list", list, http.StatusOK)
	managed := 0
	for _, c := range list.List(t) {
		if c["managed"] == true {
			managed++
		}
	}
	if managed != 3 || bytes.Contains(list.Body, []byte("PRIVATE")) || bytes.Contains(list.Body, []byte("kgsealed")) {
		t.Fatalf("listing: %d managed; %s", managed, list.Body)
	}
	// At rest: only the sealed form, which the export carries with a note.
	var export bytes.Buffer
	if err := f.store.Export(f.ctx, &export); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(export.Bytes(), []byte("PRIVATE KEY")) || !bytes.Contains(export.Bytes(), []byte("kgsealed1:"+testCAKey.ID())) ||
		!bytes.Contains(export.Bytes(), []byte("--ca-key-file")) {
		t.Fatalf("export does not carry the sealed keys only, with the note")
	}
	if os.Getenv("KEYGATE_TEST_BACKEND") != "postgres" {
		db, err := sql.Open("sqlite", "file:"+f.dir+"/keygate.db?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM group_cas WHERE sealed_private_key LIKE 'kgsealed1:%' AND managed = 1`).Scan(&n); err != nil || n != 3 {
			t.Fatalf("sealed keys at rest: %d, %v", n, err)
		}
	}
	if strings.Contains(f.logs.String(), "PRIVATE KEY") || strings.Contains(f.logs.String(), "kgsealed") {
		t.Fatalf("a private key reached the log")
	}
	// Deleting the CA destroys its key and what it issued.
	key := authorizedKey(newSigner(t).PublicKey(), "")
	expect(t, "issue", f.issue(t, "/api/v4/user/ssh_certificates", f.aliceToken, map[string]any{"key": key, "ca_id": f.caID}), http.StatusCreated)
	expect(t, "issued", f.do(t, "GET", "/api/v4/groups/"+top+"/ssh_certificates/"+itoa(f.caID)+"/issued", f.ownerToken, nil), http.StatusOK)
	expect(t, "delete", f.do(t, "DELETE", "/api/v4/groups/"+top+"/ssh_certificates/"+itoa(f.caID), f.ownerToken, nil), http.StatusNoContent)
	expect(t, "issued after delete", f.do(t, "GET", "/api/v4/groups/"+top+"/ssh_certificates/"+itoa(f.caID)+"/issued", f.ownerToken, nil), http.StatusNotFound)
	expect(t, "issue with the deleted CA", f.issue(t, "/api/v4/user/ssh_certificates", f.aliceToken, map[string]any{"key": key, "ca_id": f.caID}), http.StatusNotFound)
}

func TestPeopleCertificatesWithToken(t *testing.T) {
	t.Parallel()
	f := newIssuanceFixture(t)
	signer := newSigner(t)
	key := authorizedKey(signer.PublicKey(), "alice@laptop")
	now := time.Now()
	r := f.issue(t, "/api/v4/user/ssh_certificates", f.aliceToken, map[string]any{"key": key})
	expect(t, "issue", r, http.StatusCreated)
	cert := f.parseCert(t, r)
	body := r.Object(t)
	if cert.KeyId != "alice" || strings.Join(cert.ValidPrincipals, ",") != "alice,git" || len(cert.Extensions) != 0 || len(cert.CriticalOptions) != 0 {
		t.Fatalf("certificate: key id %q principals %v extensions %v options %v", cert.KeyId, cert.ValidPrincipals, cert.Extensions, cert.CriticalOptions)
	}
	if !bytes.Equal(cert.Key.Marshal(), signer.PublicKey().Marshal()) || uint64(body["serial"].(float64)) != cert.Serial ||
		int64(body["ca_id"].(float64)) != f.caID || body["key_id"] != "alice" || body["source"] != keystore.CertSourceToken {
		t.Fatalf("answer does not describe the certificate: %s", r.Body)
	}
	after, before := time.Unix(int64(cert.ValidAfter), 0), time.Unix(int64(cert.ValidBefore), 0)
	if d := before.Sub(after); d != 8*time.Hour+time.Minute {
		t.Errorf("window %v, want the group's 8h maximum plus the minute of skew", d)
	}
	if after.After(now.Add(-55*time.Second)) || after.Before(now.Add(-70*time.Second)) {
		t.Errorf("valid_after %v is not a minute before %v", after, now)
	}
	// ttl: shorter is kept, longer cut to the maximum, too short refused.
	r = f.issue(t, "/api/v4/user/ssh_certificates", f.aliceToken, map[string]any{"key": key, "ttl": 600})
	expect(t, "ttl 600", r, http.StatusCreated)
	if c := f.parseCert(t, r); c.ValidBefore-c.ValidAfter != 660 || c.Serial == cert.Serial {
		t.Errorf("ttl 600: window %d s, serial %d (first %d)", c.ValidBefore-c.ValidAfter, c.Serial, cert.Serial)
	}
	r = f.issue(t, "/api/v4/user/ssh_certificates", f.aliceToken, map[string]any{"key": key, "ttl": 30})
	expect(t, "ttl 30", r, http.StatusBadRequest)
	// The group's maximum, set by its owner; then bastion rights.
	expect(t, "max ttl", f.do(t, "PUT", "/api/v4/groups/"+itoa(f.group), f.ownerToken, map[string]any{"ssh_certificate_max_ttl": 3600}), http.StatusOK)
	expect(t, "max ttl on nonsense", f.do(t, "PUT", "/api/v4/groups/"+itoa(f.group), f.ownerToken, map[string]any{"ssh_certificate_max_ttl": 10}), http.StatusBadRequest)
	expect(t, "bastion target", f.do(t, "POST", "/api/v4/groups/"+itoa(f.group)+"/bastion_targets", adminSecret,
		map[string]any{"pattern": "db.internal:5432", "min_access_level": keystore.Developer}), http.StatusCreated)
	r = f.issue(t, "/api/v4/user/ssh_certificates", f.aliceToken, map[string]any{"key": key, "ttl": 86400})
	expect(t, "after max ttl", r, http.StatusCreated)
	c := f.parseCert(t, r)
	if c.ValidBefore-c.ValidAfter != 3660 {
		t.Errorf("window %d s, want the group's new 3600 s maximum", c.ValidBefore-c.ValidAfter)
	}
	if _, ok := c.Extensions["permit-port-forwarding"]; !ok || len(c.Extensions) != 1 {
		t.Errorf("extensions %v, want only permit-port-forwarding (alice may use a bastion target)", c.Extensions)
	}
	// Who gets none.
	for _, c := range []struct {
		name, token string
		body        map[string]any
		code        int
		says        string
	}{
		{"not-enterprise", f.bobToken, map[string]any{"key": key}, 403, "enterprise"},
		{"not-a-member", f.carolToken, map[string]any{"key": key}, 403, "not a member"},
		{"another-group", f.aliceToken, map[string]any{"key": key, "group_id": f.group + 100}, 403, "may not vouch"},
		{"no-key", f.aliceToken, map[string]any{}, 400, "key"},
		{"a-certificate-as-key", f.aliceToken, map[string]any{"key": r.Object(t)["certificate"]}, 400, "key"},
		{"private-key", f.aliceToken, map[string]any{"key": "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----"}, 400, "private"},
		{"anonymous", "", map[string]any{"key": key}, 401, "401"},
		{"bad-token", "kgpat-nonsense-token-xxxxxxxx", map[string]any{"key": key}, 401, "401"},
	} {
		r := f.issue(t, "/api/v4/user/ssh_certificates", c.token, c.body)
		if r.Code != c.code || !strings.Contains(message(r), c.says) {
			t.Errorf("%s: %d %s, want %d saying %q", c.name, r.Code, r.Body, c.code, c.says)
		}
	}
	// Listings: the user's own, the owner's per CA; serials unique.
	mine := f.do(t, "GET", "/api/v4/user/ssh_certificates", f.aliceToken, nil)
	expect(t, "mine", mine, http.StatusOK)
	if n := len(mine.List(t)); n != 3 || mine.Header.Get("X-Total") != "3" {
		t.Fatalf("alice's certificates: %d (X-Total %s)", n, mine.Header.Get("X-Total"))
	}
	serials := map[any]bool{}
	for _, c := range mine.List(t) {
		if _, has := c["certificate"]; has || c["user_id"] == nil || c["key_fingerprint"] != gossh.FingerprintSHA256(signer.PublicKey()) {
			t.Errorf("listed certificate: %v", c)
		}
		serials[c["serial"]] = true
	}
	if len(serials) != 3 {
		t.Errorf("serials not unique: %v", serials)
	}
	expect(t, "bob's list", f.do(t, "GET", "/api/v4/user/ssh_certificates", f.bobToken, nil), http.StatusOK)
	issued := f.do(t, "GET", "/api/v4/groups/"+itoa(f.group)+"/ssh_certificates/"+itoa(f.caID)+"/issued?per_page=2", f.ownerToken, nil)
	expect(t, "issued", issued, http.StatusOK)
	if issued.Header.Get("X-Total") != "3" || len(issued.List(t)) != 2 {
		t.Fatalf("issued: X-Total %s, %d on the page", issued.Header.Get("X-Total"), len(issued.List(t)))
	}
	expect(t, "issued as developer", f.do(t, "GET", "/api/v4/groups/"+itoa(f.group)+"/ssh_certificates/"+itoa(f.caID)+"/issued", f.aliceToken, nil), http.StatusForbidden)
	// Revocation by serial uses the existing route.
	expect(t, "revoke", f.do(t, "POST", "/api/v4/groups/"+itoa(f.group)+"/ssh_certificates/"+itoa(f.caID)+"/revocations", f.ownerToken,
		map[string]any{"serial": body["serial"], "reason": "laptop lost"}), http.StatusCreated)
	// The audit log has every issuance, with the serial.
	events := f.do(t, "GET", "/api/v4/audit_events?per_page=100", adminSecret, nil)
	n := 0
	for _, ev := range events.List(t) {
		if ev["event_name"] == "ssh_certificate_issued" {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d issuance audit events, want 3: %s", n, events.Body)
	}
}

// trustIssuer makes the admin trust p (people's audience clientID, "": CI
// only).
func trustIssuer(t *testing.T, e *env, p *oidcprovider.Provider, clientID, claim string, required map[string]string) {
	t.Helper()
	body := map[string]any{"issuer": p.Issuer, "client_id": clientID, "username_claim": claim}
	if required != nil {
		body["required_claims"] = required
	}
	expect(t, "trust issuer", e.do(t, "POST", "/api/v4/admin/oidc_issuers", adminSecret, body), http.StatusCreated)
}

func TestPeopleCertificatesWithIDToken(t *testing.T) {
	t.Parallel()
	f := newIssuanceFixture(t)
	idp := oidcprovider.Start(t.Cleanup)
	trustIssuer(t, f.env, idp, "keygate", "email", map[string]string{"hd": "example.com"})
	key := authorizedKey(newSigner(t).PublicKey(), "")
	alice := map[string]any{"sub": "u-alice", "aud": "keygate", "email": "Alice@example.com", "email_verified": true, "hd": "example.com"}
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for kk, vv := range alice {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	r := f.issue(t, "/api/v4/user/ssh_certificates", idp.Sign(alice), map[string]any{"key": key, "ttl": 900})
	expect(t, "ID token", r, http.StatusCreated)
	if c := f.parseCert(t, r); c.KeyId != "alice" {
		t.Fatalf("key id %q", c.KeyId)
	}
	if o := r.Object(t); o["source"] != keystore.CertSourceOIDC || o["issuer"] != idp.Issuer || o["subject"] != "u-alice" ||
		int64(o["requested_by"].(float64)) != f.alice.ID {
		t.Fatalf("record: %s", r.Body)
	}
	fetches := idp.JWKSFetches()
	// Rotation: a token signed with a new key verifies (the keys are
	// fetched again), the old key withdrawn.
	idp.Rotate(true)
	expect(t, "after rotation", f.issue(t, "/api/v4/user/ssh_certificates", idp.Sign(alice), map[string]any{"key": key}), http.StatusCreated)
	if idp.JWKSFetches() <= fetches {
		t.Errorf("the JWKS was not fetched again after the provider rotated its keys")
	}

	untrusted := oidcprovider.Start(t.Cleanup)
	foreignKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	for _, c := range []struct {
		name  string
		token string
		code  int
		says  string
	}{
		{"untrusted-issuer", untrusted.Sign(alice), 401, "issuer \"" + untrusted.Issuer + "\" is not trusted"},
		{"foreign-audience", idp.Sign(with("aud", "another-app")), 401, `audience "another-app", not "keygate"`},
		{"expired", idp.Sign(with("exp", now.Add(-time.Minute).Unix())), 401, "expired"},
		{"not-yet-valid", idp.Sign(with("nbf", now.Add(time.Hour).Unix())), 401, "nbf"},
		{"unknown-key", oidcprovider.SignWith(jose.ES256, foreignKey, "nope", with("iss", idp.Issuer)), 401, "does not verify"},
		{"hs256", oidcprovider.SignWith(jose.HS256, []byte("0123456789abcdef0123456789abcdef"), "", with("iss", idp.Issuer)), 401, "does not verify"},
		{"email-unverified", idp.Sign(with("email_verified", false)), 403, "not verified"},
		{"required-claim", idp.Sign(with("hd", "evil.example")), 403, `claim "hd"`},
		{"no-such-user", idp.Sign(with("email", "nobody@example.com")), 403, "no keygate user"},
		{"not-a-jwt-shape", "eyJhbGciOiJFUzI1NiJ9.e30.sig", 401, "401"},
	} {
		r := f.issue(t, "/api/v4/user/ssh_certificates", c.token, map[string]any{"key": key})
		if r.Code != c.code || !strings.Contains(message(r), c.says) {
			t.Errorf("%s: %d %s, want %d saying %q", c.name, r.Code, r.Body, c.code, c.says)
		}
	}
	// An ID token is no API credential elsewhere.
	hdr := http.Header{"Authorization": {"Bearer " + idp.Sign(alice)}}
	expect(t, "ID token on GET /user", f.raw(t, "GET", "/api/v4/user", hdr, nil), http.StatusUnauthorized)
	expect(t, "ID token on a public route", f.raw(t, "GET", "/api/v4/users/"+itoa(f.alice.ID)+"/gpg_keys", hdr, nil), http.StatusUnauthorized)
	expect(t, "ID token on GET /user/ssh_certificates", f.raw(t, "GET", "/api/v4/user/ssh_certificates", hdr, nil), http.StatusUnauthorized)
	// An issuer for CI only takes no people's tokens.
	ci := oidcprovider.Start(t.Cleanup)
	trustIssuer(t, f.env, ci, "", "", nil)
	r = f.issue(t, "/api/v4/user/ssh_certificates", ci.Sign(with("aud", "x")), map[string]any{"key": key})
	if r.Code != 401 || !strings.Contains(message(r), "CI jobs only") {
		t.Errorf("CI-only issuer: %d %s", r.Code, r.Body)
	}
	// Admin routes: list, get, delete; non-admins refused.
	list := f.do(t, "GET", "/api/v4/admin/oidc_issuers", adminSecret, nil)
	expect(t, "list issuers", list, http.StatusOK)
	if len(list.List(t)) != 2 {
		t.Fatalf("issuers: %s", list.Body)
	}
	expect(t, "issuers as user", f.do(t, "GET", "/api/v4/admin/oidc_issuers", f.aliceToken, nil), http.StatusForbidden)
	expect(t, "duplicate issuer", f.do(t, "POST", "/api/v4/admin/oidc_issuers", adminSecret, map[string]any{"issuer": idp.Issuer}), http.StatusBadRequest)
	expect(t, "http issuer", f.do(t, "POST", "/api/v4/admin/oidc_issuers", adminSecret, map[string]any{"issuer": "http://idp.example.com"}), http.StatusBadRequest)
	expect(t, "bad claim", f.do(t, "POST", "/api/v4/admin/oidc_issuers", adminSecret, map[string]any{"issuer": "https://x.example", "username_claim": "sub"}), http.StatusBadRequest)
	id := itoa(int64(list.List(t)[0]["id"].(float64)))
	expect(t, "get issuer", f.do(t, "GET", "/api/v4/admin/oidc_issuers/"+id, adminSecret, nil), http.StatusOK)
	expect(t, "delete issuer", f.do(t, "DELETE", "/api/v4/admin/oidc_issuers/"+id, adminSecret, nil), http.StatusNoContent)
	r = f.issue(t, "/api/v4/user/ssh_certificates", idp.Sign(alice), map[string]any{"key": key})
	if r.Code != 401 || !strings.Contains(string(r.Body), "not trusted") {
		t.Errorf("after the issuer was deleted: %d %s", r.Code, r.Body)
	}
}

func TestCITrustRulesAndJobCertificates(t *testing.T) {
	t.Parallel()
	f := newIssuanceFixture(t)
	ci := oidcprovider.Start(t.Cleanup)
	trustIssuer(t, f.env, ci, "", "", nil)
	proj := itoa(f.project)
	maint, maintToken := f.newUser(t, "maint")
	expect(t, "maintainer", f.do(t, "POST", "/api/v4/groups/"+itoa(f.group)+"/members", f.ownerToken,
		map[string]any{"user_id": maint.ID, "access_level": keystore.Maintainer}), http.StatusCreated)
	rule := map[string]any{"issuer": ci.Issuer, "audience": "https://keygate.example",
		"claims": map[string]any{"project_path": "acme/api", "ref_protected": true, "ref": "refs/heads/main"}, "access": "write"}
	r := f.do(t, "POST", "/api/v4/projects/"+proj+"/ssh_certificate_trust", maintToken, rule)
	expect(t, "rule", r, http.StatusCreated)
	ruleID := int64(r.Object(t)["id"].(float64))
	if o := r.Object(t); o["max_ttl"] != float64(900) || o["claims"].(map[string]any)["ref_protected"] != "true" {
		t.Fatalf("rule: %s", r.Body)
	}
	// The form way: claims[name]=value.
	form := url.Values{"issuer": {ci.Issuer}, "audience": {"read-aud"}, "claims[project_path]": {"acme/api"}, "access": {"read"}, "max_ttl": {"300"}}
	r = f.raw(t, "POST", "/api/v4/projects/"+proj+"/ssh_certificate_trust", http.Header{"PRIVATE-TOKEN": {maintToken},
		"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(form.Encode()))
	expect(t, "form rule", r, http.StatusCreated)
	for _, c := range []struct {
		name  string
		token string
		body  map[string]any
		code  int
	}{
		{"no-claims", maintToken, map[string]any{"issuer": ci.Issuer, "audience": "a", "access": "read"}, 400},
		{"untrusted-issuer", maintToken, map[string]any{"issuer": "https://token.actions.githubusercontent.com", "audience": "a", "access": "read", "claims": map[string]any{"a": "b"}}, 400},
		{"bad-access", maintToken, map[string]any{"issuer": ci.Issuer, "audience": "a", "access": "admin", "claims": map[string]any{"a": "b"}}, 400},
		{"ttl-cap", maintToken, map[string]any{"issuer": ci.Issuer, "audience": "a", "access": "read", "claims": map[string]any{"a": "b"}, "max_ttl": 7200}, 400},
		{"nested-claim", maintToken, map[string]any{"issuer": ci.Issuer, "audience": "a", "access": "read", "claims": map[string]any{"a": map[string]any{"$ne": ""}}}, 400},
		{"developer", f.aliceToken, rule, 403},
	} {
		if r := f.do(t, "POST", "/api/v4/projects/"+proj+"/ssh_certificate_trust", c.token, c.body); r.Code != c.code {
			t.Errorf("%s: %d %s, want %d", c.name, r.Code, r.Body, c.code)
		}
	}
	groupRules := f.do(t, "GET", "/api/v4/groups/"+itoa(f.group)+"/ssh_certificate_trust", f.ownerToken, nil)
	expect(t, "group rules", groupRules, http.StatusOK)
	if len(groupRules.List(t)) != 2 {
		t.Fatalf("group rules: %s", groupRules.Body)
	}
	expect(t, "group rules as maintainer", f.do(t, "GET", "/api/v4/groups/"+itoa(f.group)+"/ssh_certificate_trust", maintToken, nil), http.StatusForbidden)

	job := map[string]any{"sub": "project_path:acme/api:ref_type:branch:ref:main", "aud": "https://keygate.example",
		"project_path": "acme/api", "ref": "refs/heads/main", "ref_protected": "true", "job_id": "1234", "pipeline_id": "99"}
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for kk, vv := range job {
			c[kk] = vv
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	key := authorizedKey(newSigner(t).PublicKey(), "")
	path := "/api/v4/projects/" + proj + "/ssh_certificates"
	r = f.issue(t, path, ci.Sign(job), map[string]any{"key": key})
	expect(t, "job certificate", r, http.StatusCreated)
	cert := f.parseCert(t, r)
	if strings.Join(cert.ValidPrincipals, ",") != "git" || len(cert.Extensions) != 0 ||
		cert.CriticalOptions[keystore.JobCertOption] != proj+":write" || cert.ValidBefore-cert.ValidAfter != 960 {
		t.Fatalf("job certificate: principals %v extensions %v options %v window %d", cert.ValidPrincipals, cert.Extensions,
			cert.CriticalOptions, cert.ValidBefore-cert.ValidAfter)
	}
	for _, want := range []string{"iss=" + ci.Issuer, "sub=project_path:acme/api", "job_id=1234", "pipeline_id=99", "ref=refs/heads/main"} {
		if !strings.Contains(cert.KeyId, want) {
			t.Errorf("key id %q does not name %q", cert.KeyId, want)
		}
	}
	if o := r.Object(t); o["source"] != keystore.CertSourceJob || o["access"] != "write" || int64(o["trust_rule_id"].(float64)) != ruleID || o["user_id"] != nil {
		t.Errorf("record: %s", r.Body)
	}
	// The read rule, by its audience.
	r = f.issue(t, path, ci.Sign(with("aud", "read-aud")), map[string]any{"key": key, "ttl": 3600})
	expect(t, "read job", r, http.StatusCreated)
	if c := f.parseCert(t, r); c.CriticalOptions[keystore.JobCertOption] != proj+":read" || c.ValidBefore-c.ValidAfter != 360 {
		t.Errorf("read job: %v, window %d (the rule's 300 s)", c.CriticalOptions, c.ValidBefore-c.ValidAfter)
	}
	untrusted := oidcprovider.Start(t.Cleanup)
	for _, c := range []struct {
		name, path, token string
		code              int
		says              string
	}{
		{"wrong-ref", path, ci.Sign(with("ref", "refs/heads/dev")), 403, `rule ` + itoa(ruleID) + ` came closest (2 of 3 claims matched); claim "ref" differs: the token's is "refs/heads/dev"`},
		{"missing-claim", path, ci.Sign(with("ref_protected", nil)), 403, `claim "ref_protected" differs: the token has no such claim`},
		{"expired", path, ci.Sign(with("exp", time.Now().Add(-time.Minute).Unix())), 401, "expired"},
		{"foreign-audience", path, ci.Sign(with("aud", "https://elsewhere.example")), 401, `audience "https://elsewhere.example", which no trust rule`},
		{"untrusted-issuer", path, untrusted.Sign(job), 401, "not trusted"},
		{"no-rule-for-project", "/api/v4/projects/999/ssh_certificates", ci.Sign(job), 404, "Project Not Found"},
		{"personal-access-token", path, f.aliceToken, 401, "CI job's ID token"},
		{"no-token", path, "", 401, "401"},
	} {
		r := f.issue(t, c.path, c.token, map[string]any{"key": key})
		if r.Code != c.code || !strings.Contains(message(r), c.says) {
			t.Errorf("%s: %d %s, want %d saying %q", c.name, r.Code, r.Body, c.code, c.says)
		}
	}
	// Owners see CI certificates among the CA's issued ones.
	issued := f.do(t, "GET", "/api/v4/groups/"+itoa(f.group)+"/ssh_certificates/"+itoa(f.caID)+"/issued", f.ownerToken, nil)
	if !strings.Contains(string(issued.Body), `"source":"ci_job_id_token"`) || !strings.Contains(string(issued.Body), `"job_id":"1234"`) {
		t.Errorf("issued list lacks the job certificate and its claims: %s", issued.Body)
	}
	expect(t, "delete rule", f.do(t, "DELETE", "/api/v4/projects/"+proj+"/ssh_certificate_trust/"+itoa(ruleID), maintToken, nil), http.StatusNoContent)
	r = f.issue(t, path, ci.Sign(job), map[string]any{"key": key})
	if r.Code != 401 || !strings.Contains(string(r.Body), "no trust rule") {
		t.Errorf("after the rule went: %d %s", r.Code, r.Body)
	}
	rules := f.do(t, "GET", "/api/v4/projects/"+proj+"/ssh_certificate_trust", maintToken, nil)
	if expect(t, "rules", rules, http.StatusOK); len(rules.List(t)) != 1 {
		t.Errorf("rules after delete: %s", rules.Body)
	}
}
