package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/oidcprovider"
	"github.com/keygate/keygate/internal/sealed"
	"github.com/keygate/keygate/keystore"
)

// e2eCAKey seals the managed CAs of every test keygate.
var e2eCAKey = func() *sealed.Key {
	k, err := sealed.NewKey(bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		panic(err)
	}
	return k
}()

// issuedCert is an issuing answer.
type issuedCert struct {
	Certificate string `json:"certificate"`
	Serial      uint64 `json:"serial"`
	KeyID       string `json:"key_id"`
	CAID        int64  `json:"ca_id"`
}

// requestCert POSTs key to path with bearer (a PAT or an ID token) and
// returns the status and answer.
func (e *env) requestCert(t *testing.T, path, bearer, pubKey string, ttl int) (int, []byte) {
	t.Helper()
	form := url.Values{"key": {pubKey}}
	if ttl != 0 {
		form.Set("ttl", strconv.Itoa(ttl))
	}
	req, err := http.NewRequestWithContext(e.ctx, http.MethodPost, e.http.URL+"/api/v4"+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// mustCert requests a certificate and writes it beside the private key
// (KEY-cert.pub, where ssh looks for it).
func (e *env) mustCert(t *testing.T, path, bearer, keyPath, pubKey string, ttl int) issuedCert {
	t.Helper()
	code, body := e.requestCert(t, path, bearer, pubKey, ttl)
	if code != http.StatusCreated {
		t.Fatalf("POST %s = %d %s", path, code, body)
	}
	var c issuedCert
	if err := json.Unmarshal(body, &c); err != nil || c.Certificate == "" {
		t.Fatalf("answer %s: %v", body, err)
	}
	if err := os.WriteFile(keyPath+"-cert.pub", []byte(c.Certificate+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

// issuanceWorld: group eng with a managed CA, project eng/api seeded,
// alice (enterprise user of eng, developer), bob (developer, no enterprise
// group), the owner.
type issuanceWorld struct {
	e                          *env
	eng, caID                  int64
	ownerTok, aliceTok, bobTok string
}

func newIssuanceWorld(t *testing.T) *issuanceWorld {
	t.Helper()
	e := newEnv(t)
	w := &issuanceWorld{e: e}
	_, w.ownerTok = e.createUser(t, "owner")
	aliceID, aliceTok := e.createUser(t, "alice")
	bobID, bobTok := e.createUser(t, "bob")
	w.aliceTok, w.bobTok = aliceTok, bobTok
	w.eng = e.createGroup(t, "eng", w.ownerTok)
	e.addMember(t, w.eng, aliceID, keystore.Developer)
	e.addMember(t, w.eng, bobID, keystore.Developer)
	e.mustAPI(t, http.MethodPut, "/users/"+itoa(aliceID), e.adminToken, url.Values{"enterprise_group_id": {itoa(w.eng)}}, http.StatusOK, nil)
	var ca idJSON
	e.mustAPI(t, http.MethodPost, "/groups/"+itoa(w.eng)+"/ssh_certificates", w.ownerTok,
		url.Values{"title": {"eng managed"}, "generate": {"true"}}, http.StatusCreated, &ca)
	w.caID = ca.ID
	e.createProject(t, w.eng, "api")
	e.seedRepo(t, "eng/api")
	e.createProject(t, w.eng, "secrets")
	e.seedRepo(t, "eng/secrets")
	return w
}

// TestPersonCertificateE2E: a person's certificate, from a personal access
// token and from an ID token, logs in and clones with the real ssh and
// git; it expires and is refused; revoked by serial, its open session ends;
// a user who is no enterprise user gets none.
func TestPersonCertificateE2E(t *testing.T) {
	t.Parallel()
	w := newIssuanceWorld(t)
	e := w.e
	key, pub := e.sshKeygen(t, "ed25519", 0)
	c := e.mustCert(t, "/user/ssh_certificates", w.aliceTok, key, pub, 0)
	if c.KeyID != "alice" {
		t.Fatalf("key id %q", c.KeyID)
	}
	e.mustGit(t, "", []string{key}, "clone", "--quiet", e.cloneURL("eng/api"), filepath.Join(t.TempDir(), "api"))
	if out, stderr, code := e.ssh(t, []string{key}, "alice"); code != 0 || !strings.Contains(out, "Welcome to keygate, @alice!") {
		t.Fatalf("ssh alice@ with the certificate: exit %d %q %q", code, out, stderr)
	}
	// The key alone (no certificate file) is nobody.
	os.Rename(key+"-cert.pub", key+"-cert.pub.off")
	if _, _, code := e.ssh(t, []string{key}, "git"); code == 0 {
		t.Fatal("the bare key logged in")
	}
	os.Rename(key+"-cert.pub.off", key+"-cert.pub")

	// Bob is no enterprise user: no certificate.
	if code, body := e.requestCert(t, "/user/ssh_certificates", w.bobTok, pub, 0); code != http.StatusForbidden || !strings.Contains(string(body), "enterprise") {
		t.Fatalf("bob: %d %s", code, body)
	}

	// From an ID token of a trusted provider.
	idp := oidcprovider.Start(t.Cleanup)
	e.mustAPI(t, http.MethodPost, "/admin/oidc_issuers", e.adminToken, url.Values{"issuer": {idp.Issuer}, "client_id": {"keygate"},
		"username_claim": {"preferred_username"}}, http.StatusCreated, nil)
	key2, pub2 := e.sshKeygen(t, "ecdsa", 0)
	tok := idp.Sign(map[string]any{"sub": "42", "aud": "keygate", "preferred_username": "alice"})
	e.mustCert(t, "/user/ssh_certificates", tok, key2, pub2, 120)
	e.mustGit(t, "", []string{key2}, "clone", "--quiet", e.cloneURL("eng/api"), filepath.Join(t.TempDir(), "api2"))

	// It expires: the server's clock past valid_before refuses it.
	e.clock.Advance(3 * time.Minute)
	if _, stderr, code := e.git(t, "", []string{key2}, "ls-remote", e.cloneURL("eng/api")); code == 0 || !strings.Contains(stderr, "your certificate expired at") {
		t.Fatalf("expired certificate: exit %d %s", code, stderr)
	}

	// Revoked by serial: the open session ends, new logins are refused.
	s := e.startSession(t, []string{key}, "git", "git-upload-pack 'eng/api.git'")
	if !s.waitOutput(" refs/heads/main\n0000", 30*time.Second) {
		t.Fatalf("no ref advertisement; stderr %q", s.stderr.String())
	}
	e.mustAPI(t, http.MethodPost, "/groups/"+itoa(w.eng)+"/ssh_certificates/"+itoa(c.CAID)+"/revocations", w.ownerTok,
		url.Values{"serial": {strconv.FormatUint(c.Serial, 10)}, "reason": {"laptop lost"}}, http.StatusCreated, nil)
	if !s.waitExit(10 * time.Second) {
		t.Fatal("an open fetch went on after its certificate was revoked")
	}
	if _, stderr, code := e.git(t, "", []string{key}, "ls-remote", e.cloneURL("eng/api")); code == 0 || !strings.Contains(stderr, "revoked") {
		t.Fatalf("revoked certificate: exit %d %s", code, stderr)
	}
	// A fresh certificate for the same key has a new serial and works.
	c3 := e.mustCert(t, "/user/ssh_certificates", w.aliceTok, key, pub, 0)
	if c3.Serial == c.Serial {
		t.Fatal("a serial was reused")
	}
	e.mustGit(t, "", []string{key}, "ls-remote", e.cloneURL("eng/api"))
	if strings.Contains(e.logs.String(), "PRIVATE KEY") {
		t.Fatal("a private key reached the log")
	}
}

// TestCIJobCertificateE2E: a CI job's ID token with the right claims gets
// a certificate that pushes to its project with the real git, and nothing
// else; a wrong ref is refused with the claim named; an expired or
// foreign-audience token is refused; every git operation is audited with
// the job's claims.
func TestCIJobCertificateE2E(t *testing.T) {
	t.Parallel()
	w := newIssuanceWorld(t)
	e := w.e
	ci := oidcprovider.Start(t.Cleanup)
	e.mustAPI(t, http.MethodPost, "/admin/oidc_issuers", e.adminToken, url.Values{"issuer": {ci.Issuer}}, http.StatusCreated, nil)
	var rule idJSON
	e.mustAPI(t, http.MethodPost, "/projects/eng%2Fapi/ssh_certificate_trust", w.ownerTok, url.Values{
		"issuer": {ci.Issuer}, "audience": {"keygate-ci"}, "access": {"write"},
		"claims[project_path]": {"eng/api"}, "claims[ref]": {"refs/heads/main"},
	}, http.StatusCreated, &rule)
	e.mustAPI(t, http.MethodPost, "/projects/eng%2Fapi/ssh_certificate_trust", w.ownerTok, url.Values{
		"issuer": {ci.Issuer}, "audience": {"keygate-ci-read"}, "access": {"read"}, "claims[project_path]": {"eng/api"},
	}, http.StatusCreated, nil)
	job := map[string]any{"sub": "project_path:eng/api:ref_type:branch:ref:main", "aud": "keygate-ci",
		"project_path": "eng/api", "ref": "refs/heads/main", "job_id": "777", "pipeline_id": "55"}
	path := "/projects/eng%2Fapi/ssh_certificates"

	key, pub := e.sshKeygen(t, "ed25519", 0)
	c := e.mustCert(t, path, ci.Sign(job), key, pub, 0)
	work := filepath.Join(t.TempDir(), "api")
	e.mustGit(t, "", []string{key}, "clone", "--quiet", e.cloneURL("eng/api"), work)
	if err := os.WriteFile(filepath.Join(work, "BUILD"), []byte("built by job 777\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.mustGit(t, work, nil, "add", "BUILD")
	e.mustGit(t, work, nil, "commit", "--quiet", "-m", "ci")
	e.mustGit(t, work, []string{key}, "push", "--quiet", "origin", "HEAD:refs/heads/main")

	// Nothing else: another project, a login other than git, forwarding.
	if _, stderr, code := e.git(t, "", []string{key}, "ls-remote", e.cloneURL("eng/secrets")); code == 0 || !strings.Contains(stderr, "could not be found") {
		t.Fatalf("another project: exit %d %s", code, stderr)
	}
	if _, stderr, code := e.ssh(t, []string{key}, "alice"); code == 0 || !strings.Contains(stderr, "logs in only as git@") {
		t.Fatalf("ssh alice@ with a job certificate: exit %d %s", code, stderr)
	}
	if _, _, code := e.ssh(t, []string{key}, "git", "-W", "127.0.0.1:9"); code == 0 {
		t.Fatal("a job certificate forwarded")
	}

	// The read rule's certificate fetches but does not push.
	keyR, pubR := e.sshKeygen(t, "ed25519", 0)
	read := map[string]any{}
	for k, v := range job {
		read[k] = v
	}
	read["aud"] = "keygate-ci-read"
	e.mustCert(t, path, ci.Sign(read), keyR, pubR, 0)
	e.mustGit(t, "", []string{keyR}, "ls-remote", e.cloneURL("eng/api"))
	if _, stderr, code := e.git(t, work, []string{keyR}, "push", "--quiet", "origin", "HEAD:refs/heads/other"); code == 0 || !strings.Contains(stderr, "read-only") {
		t.Fatalf("push with a read job certificate: exit %d %s", code, stderr)
	}

	// Refusals at issuance.
	wrongRef := map[string]any{}
	for k, v := range job {
		wrongRef[k] = v
	}
	wrongRef["ref"] = "refs/heads/feature"
	if code, body := e.requestCert(t, path, ci.Sign(wrongRef), pub, 0); code != http.StatusForbidden ||
		!strings.Contains(string(body), `rule `+itoa(rule.ID)+` came closest`) || !strings.Contains(string(body), `claim \"ref\" differs`) {
		t.Fatalf("wrong ref: %d %s", code, body)
	}
	expired := map[string]any{"exp": time.Now().Add(-time.Minute).Unix()}
	foreign := map[string]any{"aud": "someone-else"}
	for name, change := range map[string]map[string]any{"expired": expired, "foreign-audience": foreign} {
		claims := map[string]any{}
		for k, v := range job {
			claims[k] = v
		}
		for k, v := range change {
			claims[k] = v
		}
		if code, body := e.requestCert(t, path, ci.Sign(claims), pub, 0); code != http.StatusUnauthorized {
			t.Fatalf("%s: %d %s", name, code, body)
		}
	}

	// Revoked by serial: refused at once.
	e.mustAPI(t, http.MethodPost, "/groups/"+itoa(w.eng)+"/ssh_certificates/"+itoa(c.CAID)+"/revocations", w.ownerTok,
		url.Values{"serial": {strconv.FormatUint(c.Serial, 10)}}, http.StatusCreated, nil)
	if _, stderr, code := e.git(t, "", []string{key}, "ls-remote", e.cloneURL("eng/api")); code == 0 || !strings.Contains(stderr, "revoked") {
		t.Fatalf("revoked job certificate: exit %d %s", code, stderr)
	}

	// Every git operation is audited with the job's claims.
	audited := func() bool {
		events, _, err := e.store.ListAuditEvents(e.ctx, keystore.AuditFilter{}, keystore.Page{PerPage: -1})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range events {
			if ev.Action == "git_push" && strings.Contains(ev.Details, "job_id=777") && strings.Contains(ev.Details, `"ci_project_id"`) &&
				strings.Contains(ev.Details, `"ci_access":"write"`) {
				return true
			}
		}
		return false
	}
	if !waitFor(5*time.Second, audited) {
		t.Fatalf("no audited push names the job's claims")
	}
}
