package httpapi_test

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/internal/krl"
	"github.com/keygate/keygate/keystore"
)

// TestFleetFilesAccess: a group's KRL and CA keys are its owners' and
// maintainers' (admins'), refused to developers (403), hidden from
// outsiders (404) and, without a token, 401 whether or not the group
// exists — until an admin (no one else) makes them public; then anyone
// reads them, with or without a token. Principals (membership) never
// become public. A subgroup holds no CAs: 403 Group.
func TestFleetFilesAccess(t *testing.T) {
	t.Parallel()
	f := newGroupsFixture(t)
	dev, devToken := f.newUser(t, "dev")
	if _, err := f.store.AddMember(f.ctx, keystore.Actor{}, f.top, dev.ID, keystore.Developer); err != nil {
		t.Fatal(err)
	}
	top, sub := itoa(f.top), itoa(f.sub)
	for _, file := range []string{"krl", "trusted_user_ca_keys"} {
		path := "/api/v4/groups/" + top + "/ssh_certificates/" + file
		for _, c := range []struct {
			who, token string
			want       int
		}{
			{"owner", f.ownerToken, 200}, {"maintainer", f.maintToken, 200}, {"admin", adminSecret, 200},
			{"developer", devToken, 403}, {"outsider", f.outsiderToken, 404}, {"anonymous", "", 401},
		} {
			expect(t, c.who+" reads "+file, f.do(t, "GET", path, c.token, nil), c.want)
		}
		expect(t, "anonymous, unknown group", f.do(t, "GET", "/api/v4/groups/999999/ssh_certificates/"+file, "", nil), 401)
		expect(t, "owner, unknown group", f.do(t, "GET", "/api/v4/groups/999999/ssh_certificates/"+file, f.ownerToken, nil), 404)
		expect(t, "subgroup", f.do(t, "GET", "/api/v4/groups/"+sub+"/ssh_certificates/"+file, f.ownerToken, nil), 403)
		expect(t, "by path", f.do(t, "GET", "/api/v4/groups/acme/ssh_certificates/"+file, f.maintToken, nil), 200)
	}
	principals := "/api/v4/groups/" + top + "/ssh_certificates/principals"
	expect(t, "developer reads principals", f.do(t, "GET", principals, devToken, nil), 403)
	expect(t, "anonymous reads principals", f.do(t, "GET", principals, "", nil), 401)

	// Only an admin publishes, only a top-level group.
	r := f.do(t, "PUT", "/api/v4/groups/"+top, f.ownerToken, map[string]any{"krl_public": true})
	expect(t, "owner sets krl_public", r, 403)
	r = f.do(t, "PUT", "/api/v4/groups/"+sub, adminSecret, map[string]any{"krl_public": true})
	expect(t, "admin sets a subgroup's krl_public", r, 400)
	if !strings.Contains(string(r.Body), "krl_public") {
		t.Errorf("subgroup refusal names no field: %s", r.Body)
	}
	r = f.do(t, "PUT", "/api/v4/groups/"+top, f.ownerToken, map[string]any{"description": "still fine"})
	expect(t, "owner edits the group otherwise", r, 200)
	if r.Object(t)["krl_public"] != false {
		t.Errorf("krl_public = %v before publishing", r.Object(t)["krl_public"])
	}
	r = f.do(t, "PUT", "/api/v4/groups/"+top, adminSecret, map[string]any{"krl_public": true})
	expect(t, "admin publishes", r, 200)
	if r.Object(t)["krl_public"] != true {
		t.Errorf("krl_public = %v after publishing", r.Object(t)["krl_public"])
	}
	for _, file := range []string{"krl", "trusted_user_ca_keys"} {
		path := "/api/v4/groups/" + top + "/ssh_certificates/" + file
		expect(t, "anonymous reads the public "+file, f.do(t, "GET", path, "", nil), 200)
		expect(t, "outsider reads the public "+file, f.do(t, "GET", path, f.outsiderToken, nil), 200)
		expect(t, "developer reads the public "+file, f.do(t, "GET", path, devToken, nil), 200)
	}
	expect(t, "developer reads principals of a public group", f.do(t, "GET", principals, devToken, nil), 403)
	expect(t, "anonymous reads principals of a public group", f.do(t, "GET", principals, "", nil), 401)
	// Unpublishing closes it again.
	expect(t, "admin unpublishes", f.do(t, "PUT", "/api/v4/groups/"+top, adminSecret, map[string]any{"krl_public": false}), 200)
	expect(t, "anonymous after unpublishing", f.do(t, "GET", "/api/v4/groups/"+top+"/ssh_certificates/krl", "", nil), 401)
}

// TestGroupKRLEndpoint: the KRL holds what the group revoked, as OpenSSH
// reads it (ssh-keygen -Q when installed, and krl.Parse); ETag and
// If-None-Match answer 304 until a revocation changes it; the version and
// generated-at headers follow every change.
func TestGroupKRLEndpoint(t *testing.T) {
	t.Parallel()
	f := newGroupsFixture(t)
	top := itoa(f.top)
	ca := newSigner(t)
	r := f.do(t, "POST", "/api/v4/groups/"+top+"/ssh_certificates", f.ownerToken,
		map[string]any{"title": "fleet", "key": authorizedKey(ca.PublicKey(), "")})
	expect(t, "register CA", r, http.StatusCreated)
	caID := int64(r.Object(t)["id"].(float64))
	path := "/api/v4/groups/" + top + "/ssh_certificates/krl"

	get := func(etag string) response {
		t.Helper()
		hdr := http.Header{"Private-Token": {f.maintToken}}
		if etag != "" {
			hdr.Set("If-None-Match", etag)
		}
		return f.raw(t, "GET", path, hdr, nil)
	}
	r = get("")
	expect(t, "KRL", r, 200)
	if ct := r.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	k, err := krl.Parse(r.Body)
	if err != nil {
		t.Fatalf("the KRL does not parse: %v", err)
	}
	v1, etag1 := r.Header.Get("X-KRL-Version"), r.Header.Get("ETag")
	if v1 != strconv.FormatUint(k.Version, 10) || v1 != "1" || etag1 == "" || len(k.Certs) != 0 {
		t.Fatalf("fresh KRL: version header %q, KRL version %d, etag %q, %d sections", v1, k.Version, etag1, len(k.Certs))
	}
	r = get(etag1)
	expect(t, "If-None-Match, unchanged", r, http.StatusNotModified)
	if len(r.Body) != 0 || r.Header.Get("ETag") != etag1 {
		t.Errorf("304 with body %q, etag %q", r.Body, r.Header.Get("ETag"))
	}
	if r := get(`"other", ` + etag1); r.Code != 304 {
		t.Errorf("If-None-Match list: %d", r.Code)
	}

	f.clock.Advance(90 * time.Second)
	user := newSigner(t)
	revokedKey := newSigner(t)
	fp := gossh.FingerprintSHA256(revokedKey.PublicKey())
	for _, rv := range []map[string]any{{"serial": "7"}, {"serial": "8"}, {"serial": "9"}, {"key_id": "mallory"}, {"fingerprint": fp}} {
		r := f.do(t, "POST", "/api/v4/groups/"+top+"/ssh_certificates/"+itoa(caID)+"/revocations", f.ownerToken, rv)
		expect(t, "revoke", r, http.StatusCreated)
	}
	r = get(etag1)
	expect(t, "If-None-Match after revoking", r, 200)
	k, err = krl.Parse(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	if r.Header.Get("X-KRL-Version") != "6" || k.Version != 6 || r.Header.Get("ETag") == etag1 {
		t.Errorf("after 5 revocations: version %q/%d, etag %q", r.Header.Get("X-KRL-Version"), k.Version, r.Header.Get("ETag"))
	}
	gen, err := time.Parse(time.RFC3339, r.Header.Get("X-KRL-Generated-At"))
	if err != nil || gen.Unix() != int64(k.GeneratedAt) || gen.Unix() != f.clock.Now().Unix() {
		t.Errorf("X-KRL-Generated-At %q (%v), KRL generated_date %d, now %v", r.Header.Get("X-KRL-Generated-At"), err, k.GeneratedAt, f.clock.Now())
	}
	again := get("")
	if !bytes.Equal(again.Body, r.Body) {
		t.Error("one version, two different bodies")
	}
	head := f.raw(t, "HEAD", path, http.Header{"Private-Token": {f.maintToken}}, nil)
	if head.Code != 200 || len(head.Body) != 0 || head.Header.Get("ETag") != r.Header.Get("ETag") {
		t.Errorf("HEAD: %d, %d bytes, etag %q", head.Code, len(head.Body), head.Header.Get("ETag"))
	}

	// The verdicts, as OpenSSH gives them.
	mk := func(signer gossh.Signer, key gossh.PublicKey, serial uint64, keyID string) *gossh.Certificate {
		c := &gossh.Certificate{Key: key, Serial: serial, KeyId: keyID, CertType: gossh.UserCert,
			ValidPrincipals: []string{"x"}, ValidBefore: gossh.CertTimeInfinity}
		if err := c.SignCert(rand.Reader, signer); err != nil {
			t.Fatal(err)
		}
		return c
	}
	other := newSigner(t)
	certs := map[string]struct {
		cert    *gossh.Certificate
		revoked bool
	}{
		"serial-7":               {mk(ca, user.PublicKey(), 7, "alice"), true},
		"serial-9":               {mk(ca, user.PublicKey(), 9, "alice"), true},
		"serial-10":              {mk(ca, user.PublicKey(), 10, "alice"), false},
		"key-id":                 {mk(ca, user.PublicKey(), 11, "mallory"), true},
		"revoked-key":            {mk(ca, revokedKey.PublicKey(), 12, "bob"), true},
		"serial-7-of-another-ca": {mk(other, user.PublicKey(), 7, "alice"), false},
	}
	for name, c := range certs {
		if got := k.Revoked(c.cert); got != c.revoked {
			t.Errorf("%s: Revoked = %v, want %v", name, got, c.revoked)
		}
	}
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Log("ssh-keygen not installed: verdicts checked with krl.Revoked only")
		return
	}
	dir := t.TempDir()
	krlFile := filepath.Join(dir, "revoked.krl")
	if err := os.WriteFile(krlFile, r.Body, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range certs {
		certFile := filepath.Join(dir, name+"-cert.pub")
		if err := os.WriteFile(certFile, gossh.MarshalAuthorizedKey(c.cert), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("ssh-keygen", "-Q", "-f", krlFile, certFile).CombinedOutput()
		revoked := bytes.HasSuffix(bytes.TrimSpace(out), []byte(": REVOKED"))
		if ok := bytes.HasSuffix(bytes.TrimSpace(out), []byte(": ok")); !revoked && !ok {
			t.Fatalf("ssh-keygen -Q %s: %v: %s", name, err, out)
		}
		if revoked != c.revoked {
			t.Errorf("ssh-keygen -Q: %s revoked=%v, want %v (%s)", name, revoked, c.revoked, out)
		}
	}
}

// TestTrustedUserCAKeysEndpoint: one authorized_keys line per CA, named
// in its comment; an ETag that changes with the file.
func TestTrustedUserCAKeysEndpoint(t *testing.T) {
	t.Parallel()
	f := newGroupsFixture(t)
	top := itoa(f.top)
	path := "/api/v4/groups/" + top + "/ssh_certificates/trusted_user_ca_keys"
	r := f.do(t, "GET", path, f.maintToken, nil)
	expect(t, "no CAs", r, 200)
	if len(r.Body) != 0 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("no CAs: %q (%s)", r.Body, r.Header.Get("Content-Type"))
	}
	empty := r.Header.Get("ETag")
	var keys []gossh.PublicKey
	for _, title := range []string{"laptops", "ci\nrunners"} {
		s := newSigner(t)
		keys = append(keys, s.PublicKey())
		expect(t, "register", f.do(t, "POST", "/api/v4/groups/"+top+"/ssh_certificates", f.ownerToken,
			map[string]any{"title": title, "key": authorizedKey(s.PublicKey(), "")}), http.StatusCreated)
	}
	r = f.do(t, "GET", path, f.maintToken, nil)
	expect(t, "two CAs", r, 200)
	lines := strings.Split(strings.TrimSuffix(string(r.Body), "\n"), "\n")
	if len(lines) != 2 || r.Header.Get("ETag") == empty {
		t.Fatalf("two CAs: %q, etag %q", r.Body, r.Header.Get("ETag"))
	}
	for i, l := range lines {
		pub, comment, _, rest, err := gossh.ParseAuthorizedKey([]byte(l))
		if err != nil || len(rest) != 0 || !bytes.Equal(pub.Marshal(), keys[i].Marshal()) || !strings.HasPrefix(comment, "keygate acme CA ") {
			t.Errorf("line %d %q: %v, comment %q", i, l, err, comment)
		}
	}
	if !strings.HasSuffix(lines[1], ": ci runners") {
		t.Errorf("a title's newline leaks into the file: %q", lines[1])
	}
	if r := f.raw(t, "GET", path, http.Header{"Private-Token": {f.maintToken}, "If-None-Match": {r.Header.Get("ETag")}}, nil); r.Code != 304 {
		t.Errorf("If-None-Match: %d", r.Code)
	}
}

// TestSSHPrincipalsEndpoint: active effective members at the level asked
// (developer by default), one username a line; username= narrows to one
// user or nothing.
func TestSSHPrincipalsEndpoint(t *testing.T) {
	t.Parallel()
	f := newGroupsFixture(t)
	add := func(name string, group int64, level int) *keystore.User {
		u, _ := f.newUser(t, name)
		if _, err := f.store.AddMember(f.ctx, keystore.Actor{}, group, u.ID, level); err != nil {
			t.Fatal(err)
		}
		return u
	}
	add("dev", f.top, keystore.Developer)
	add("guest", f.top, keystore.Guest)
	blocked := add("blocked", f.top, keystore.Developer)
	if _, err := f.store.SetUserState(f.ctx, keystore.Actor{}, blocked.ID, keystore.StateBlocked); err != nil {
		t.Fatal(err)
	}
	add("subdev", f.sub, keystore.Developer)
	for _, c := range []struct {
		group int64
		query string
		want  string
	}{
		{f.top, "", "dev\nmaint\nowner\n"},
		{f.top, "?min_access_level=40", "maint\nowner\n"},
		{f.top, "?min_access_level=10", "dev\nguest\nmaint\nowner\n"},
		{f.sub, "", "dev\nmaint\nowner\nsubdev\n"},
		{f.top, "?username=dev", "dev\n"},
		{f.top, "?username=DEV", "dev\n"},
		{f.top, "?username=guest", ""},
		{f.top, "?username=blocked", ""},
		{f.top, "?username=subdev", ""},
		{f.top, "?username=nobody", ""},
	} {
		r := f.do(t, "GET", "/api/v4/groups/"+itoa(c.group)+"/ssh_certificates/principals"+c.query, f.maintToken, nil)
		expect(t, "principals"+c.query, r, 200)
		if string(r.Body) != c.want {
			t.Errorf("group %d%s: %q, want %q", c.group, c.query, r.Body, c.want)
		}
	}
	expect(t, "bad level", f.do(t, "GET", "/api/v4/groups/"+itoa(f.top)+"/ssh_certificates/principals?min_access_level=35", f.maintToken, nil), 400)
}
