package httpapi_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	gitlab "gitlab.com/gitlab-org/api/client-go"
	gossh "golang.org/x/crypto/ssh"
)

// The official GitLab Go client as a real REST client of keygate.

func newGitLabClient(t *testing.T, e *env, token string) *gitlab.Client {
	t.Helper()
	c, err := gitlab.NewClient(token, gitlab.WithBaseURL(e.srv.URL+"/api/v4"),
		gitlab.WithHTTPClient(e.srv.Client()), gitlab.WithoutRetries())
	if err != nil {
		t.Fatalf("gitlab.NewClient: %v", err)
	}
	return c
}

// dateFromNow is a calendar date (midnight UTC) about d from the store's now.
func dateFromNow(e *env, d time.Duration) time.Time {
	n := e.clock.Now().Add(d).UTC()
	return time.Date(n.Year(), n.Month(), n.Day(), 0, 0, 0, 0, time.UTC)
}

// errorResponse unwraps a client error into the server's answer.
func errorResponse(t *testing.T, what string, err error) *gitlab.ErrorResponse {
	t.Helper()
	var er *gitlab.ErrorResponse
	if !errors.As(err, &er) {
		t.Fatalf("%s: error %v (%T), want a *gitlab.ErrorResponse", what, err, err)
	}
	return er
}

// expectStatus fails unless the client call got status code.
func expectStatus(t *testing.T, what string, resp *gitlab.Response, err error, code int) {
	t.Helper()
	if resp == nil {
		t.Fatalf("%s: no response (err %v), want status %d", what, err, code)
	}
	if resp.StatusCode != code {
		t.Fatalf("%s: status %d (err %v), want %d", what, resp.StatusCode, err, code)
	}
}

// recent fails unless ts is set and within a minute of the store's clock.
func recent(t *testing.T, e *env, what string, ts *time.Time) {
	t.Helper()
	if ts == nil {
		t.Fatalf("%s: created_at is missing", what)
	}
	if d := ts.Sub(e.clock.Now()); d > time.Minute || d < -time.Minute {
		t.Fatalf("%s: created_at %v is not near now (%v)", what, ts, e.clock.Now())
	}
}

func TestGitLabClientSSHKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin := newGitLabClient(t, e, adminSecret)
	alice, aliceToken := e.newUser(t, "alice")
	bob, _ := e.newUser(t, "bob")
	c := newGitLabClient(t, e, aliceToken)

	expires := dateFromNow(e, 365*24*time.Hour)
	authLine, authPub := newKey(t, "alice@laptop")
	authKey, resp, err := c.Users.AddSSHKey(&gitlab.AddSSHKeyOptions{
		Title: gitlab.Ptr("laptop"), Key: gitlab.Ptr(authLine),
		ExpiresAt: gitlab.Ptr(gitlab.ISOTime(expires)), UsageType: gitlab.Ptr("auth"),
	})
	if err != nil {
		t.Fatalf("AddSSHKey: %v", err)
	}
	expectStatus(t, "AddSSHKey", resp, err, http.StatusCreated)
	if authKey.ID <= 0 || authKey.Title != "laptop" || authKey.Key != authLine || authKey.UsageType != "auth" {
		t.Fatalf("AddSSHKey returned %+v; want title laptop, key %q, usage auth", authKey, authLine)
	}
	recent(t, e, "AddSSHKey", authKey.CreatedAt)
	if authKey.ExpiresAt == nil || !authKey.ExpiresAt.Equal(expires) {
		t.Fatalf("AddSSHKey expires_at = %v, want %v", authKey.ExpiresAt, expires)
	}

	// Defaults: no expiry, auth_and_signing.
	plainLine, _ := newKey(t, "")
	plain, _, err := c.Users.AddSSHKey(&gitlab.AddSSHKeyOptions{Title: gitlab.Ptr("desktop"), Key: gitlab.Ptr(plainLine)})
	if err != nil {
		t.Fatalf("AddSSHKey(defaults): %v", err)
	}
	if plain.ExpiresAt != nil || plain.UsageType != "auth_and_signing" || plain.Key != plainLine {
		t.Fatalf("AddSSHKey(defaults) = %+v; want no expiry, auth_and_signing", plain)
	}
	signLine, _ := newKey(t, "signing")
	signing, _, err := c.Users.AddSSHKey(&gitlab.AddSSHKeyOptions{Title: gitlab.Ptr("signer"), Key: gitlab.Ptr(signLine),
		UsageType: gitlab.Ptr("signing")})
	if err != nil || signing.UsageType != "signing" {
		t.Fatalf("AddSSHKey(signing) = %+v, %v", signing, err)
	}

	list, resp, err := c.Users.ListSSHKeys(nil)
	if err != nil {
		t.Fatalf("ListSSHKeys: %v", err)
	}
	if resp.TotalItems != 3 || len(list) != 3 {
		t.Fatalf("ListSSHKeys: %d keys (X-Total %d), want 3", len(list), resp.TotalItems)
	}
	for i, want := range []*gitlab.SSHKey{authKey, plain, signing} {
		got := list[i]
		if got.ID != want.ID || got.Title != want.Title || got.Key != want.Key || got.UsageType != want.UsageType ||
			!got.CreatedAt.Equal(*want.CreatedAt) {
			t.Errorf("ListSSHKeys[%d] = %+v, want %+v", i, got, want)
		}
	}

	got, _, err := c.Users.GetSSHKey(authKey.ID)
	if err != nil {
		t.Fatalf("GetSSHKey: %v", err)
	}
	if got.ID != authKey.ID || got.Key != authLine || got.UsageType != "auth" || got.ExpiresAt == nil || !got.ExpiresAt.Equal(expires) {
		t.Fatalf("GetSSHKey = %+v, want %+v", got, authKey)
	}

	// The same key again, by the same user or another: 400, GitLab's body.
	_, resp, err = c.Users.AddSSHKey(&gitlab.AddSSHKeyOptions{Title: gitlab.Ptr("again"), Key: gitlab.Ptr(authLine)})
	er := errorResponse(t, "duplicate AddSSHKey", err)
	expectStatus(t, "duplicate AddSSHKey", resp, err, http.StatusBadRequest)
	if !jsonEqual(t, er.Body, `{"message":{"fingerprint":["has already been taken"],"fingerprint_sha256":["has already been taken"],"key":["has already been taken"]}}`) {
		t.Fatalf("duplicate AddSSHKey body = %s", er.Body)
	}
	_, resp, err = admin.Users.AddSSHKeyForUser(bob.ID, &gitlab.AddSSHKeyOptions{Title: gitlab.Ptr("stolen"), Key: gitlab.Ptr(authLine)})
	er = errorResponse(t, "duplicate AddSSHKeyForUser", err)
	expectStatus(t, "duplicate AddSSHKeyForUser", resp, err, http.StatusBadRequest)
	if !jsonEqual(t, er.Body, `{"message":{"fingerprint":["has already been taken"],"fingerprint_sha256":["has already been taken"],"key":["has already been taken"]}}`) {
		t.Fatalf("duplicate AddSSHKeyForUser body = %s", er.Body)
	}

	// Admin lookups by key id and by fingerprint, with the key's user.
	kw, _, err := admin.Keys.GetKeyWithUser(authKey.ID)
	if err != nil {
		t.Fatalf("GetKeyWithUser: %v", err)
	}
	if kw.ID != authKey.ID || kw.Title != "laptop" || kw.Key != authLine || kw.User.ID != alice.ID || kw.User.Username != "alice" {
		t.Fatalf("GetKeyWithUser = %+v (user %+v), want key %d of alice", kw, kw.User, authKey.ID)
	}
	recent(t, e, "GetKeyWithUser", kw.CreatedAt)
	for _, fp := range []string{gossh.FingerprintSHA256(authPub), gossh.FingerprintLegacyMD5(authPub)} {
		k, _, err := admin.Keys.GetKeyByFingerprint(&gitlab.GetKeyByFingerprintOptions{Fingerprint: fp})
		if err != nil {
			t.Fatalf("GetKeyByFingerprint(%s): %v", fp, err)
		}
		if k.ID != authKey.ID || k.User.Username != "alice" {
			t.Fatalf("GetKeyByFingerprint(%s) = key %d of %q, want key %d of alice", fp, k.ID, k.User.Username, authKey.ID)
		}
	}
	_, otherPub := newKey(t, "")
	_, resp, err = admin.Keys.GetKeyByFingerprint(&gitlab.GetKeyByFingerprintOptions{Fingerprint: gossh.FingerprintSHA256(otherPub)})
	expectStatus(t, "GetKeyByFingerprint(unknown)", resp, err, http.StatusNotFound)
	_, resp, err = c.Keys.GetKeyWithUser(authKey.ID)
	expectStatus(t, "GetKeyWithUser as non-admin", resp, err, http.StatusForbidden)

	// Admin manages another user's keys.
	bobLine, _ := newKey(t, "bob@host")
	bk, resp, err := admin.Users.AddSSHKeyForUser(bob.ID, &gitlab.AddSSHKeyOptions{Title: gitlab.Ptr("bob's"), Key: gitlab.Ptr(bobLine),
		ExpiresAt: gitlab.Ptr(gitlab.ISOTime(expires)), UsageType: gitlab.Ptr("auth_and_signing")})
	if err != nil {
		t.Fatalf("AddSSHKeyForUser: %v", err)
	}
	expectStatus(t, "AddSSHKeyForUser", resp, err, http.StatusCreated)
	if bk.Title != "bob's" || bk.Key != bobLine || bk.UsageType != "auth_and_signing" || bk.ExpiresAt == nil || !bk.ExpiresAt.Equal(expires) {
		t.Fatalf("AddSSHKeyForUser = %+v", bk)
	}
	for _, uid := range []any{bob.ID, "bob"} {
		bl, _, err := admin.Users.ListSSHKeysForUser(uid, nil)
		if err != nil || len(bl) != 1 || bl[0].ID != bk.ID {
			t.Fatalf("ListSSHKeysForUser(%v) = %+v, %v; want only key %d", uid, bl, err, bk.ID)
		}
	}
	gk, _, err := admin.Users.GetSSHKeyForUser(bob.ID, bk.ID)
	if err != nil || gk.ID != bk.ID || gk.Key != bobLine {
		t.Fatalf("GetSSHKeyForUser = %+v, %v", gk, err)
	}
	_, resp, err = admin.Users.GetSSHKeyForUser(bob.ID, authKey.ID) // alice's key under bob
	expectStatus(t, "GetSSHKeyForUser(other user's key)", resp, err, http.StatusNotFound)
	resp, err = admin.Users.DeleteSSHKeyForUser(bob.ID, authKey.ID) // alice's key under bob
	expectStatus(t, "DeleteSSHKeyForUser(other user's key)", resp, err, http.StatusNotFound)
	resp, err = admin.Users.DeleteSSHKeyForUser(bob.ID, bk.ID)
	expectStatus(t, "DeleteSSHKeyForUser", resp, err, http.StatusNoContent)
	if bl, _, err := admin.Users.ListSSHKeysForUser(bob.ID, nil); err != nil || len(bl) != 0 {
		t.Fatalf("after DeleteSSHKeyForUser: %+v, %v", bl, err)
	}
	_, resp, err = c.Users.AddSSHKeyForUser(bob.ID, &gitlab.AddSSHKeyOptions{Title: gitlab.Ptr("x"), Key: gitlab.Ptr(bobLine)})
	expectStatus(t, "AddSSHKeyForUser as non-admin", resp, err, http.StatusForbidden)

	// Delete one's own key; it is gone, and not deletable twice.
	resp, err = c.Users.DeleteSSHKey(authKey.ID)
	expectStatus(t, "DeleteSSHKey", resp, err, http.StatusNoContent)
	_, resp, err = c.Users.GetSSHKey(authKey.ID)
	expectStatus(t, "GetSSHKey after delete", resp, err, http.StatusNotFound)
	if !errors.Is(err, gitlab.ErrNotFound) {
		t.Fatalf("GetSSHKey after delete: err %v, want gitlab.ErrNotFound", err)
	}
	resp, err = c.Users.DeleteSSHKey(authKey.ID)
	expectStatus(t, "DeleteSSHKey twice", resp, err, http.StatusNotFound)
	if _, err := e.store.KeyByFingerprint(e.ctx, gossh.FingerprintSHA256(authPub)); err == nil {
		t.Fatal("deleted key is still in the store")
	}
}

func TestGitLabClientPagination(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, token := e.newUser(t, "paginator")
	c := newGitLabClient(t, e, token)
	created := map[int64]bool{}
	for i := 0; i < 25; i++ {
		line, _ := newKey(t, "")
		k, _, err := c.Users.AddSSHKey(&gitlab.AddSSHKeyOptions{Title: gitlab.Ptr("key"), Key: gitlab.Ptr(line)})
		if err != nil {
			t.Fatalf("AddSSHKey #%d: %v", i, err)
		}
		created[k.ID] = true
	}
	seen := map[int64]bool{}
	opt := &gitlab.ListSSHKeysOptions{ListOptions: gitlab.ListOptions{PerPage: 10, Page: 1}}
	pages := 0
	for {
		keys, resp, err := c.Users.ListSSHKeys(opt)
		if err != nil {
			t.Fatalf("ListSSHKeys page %d: %v", opt.Page, err)
		}
		pages++
		if resp.TotalItems != 25 || resp.TotalPages != 3 || resp.ItemsPerPage != 10 || resp.CurrentPage != opt.Page {
			t.Fatalf("page %d: total %d, pages %d, per page %d, current %d; want 25, 3, 10, %d",
				opt.Page, resp.TotalItems, resp.TotalPages, resp.ItemsPerPage, resp.CurrentPage, opt.Page)
		}
		wantLen := 10
		if opt.Page == 3 {
			wantLen = 5
		}
		if len(keys) != wantLen {
			t.Fatalf("page %d has %d keys, want %d", opt.Page, len(keys), wantLen)
		}
		if opt.Page > 1 && resp.PreviousPage != opt.Page-1 {
			t.Fatalf("page %d: previous page %d", opt.Page, resp.PreviousPage)
		}
		for _, k := range keys {
			if seen[k.ID] {
				t.Fatalf("key %d listed twice", k.ID)
			}
			seen[k.ID] = true
		}
		if resp.NextPage == 0 {
			break
		}
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		opt.Page = resp.NextPage
	}
	if pages != 3 || len(seen) != 25 {
		t.Fatalf("followed %d pages and saw %d distinct keys, want 3 and 25", pages, len(seen))
	}
	for id := range seen {
		if !created[id] {
			t.Fatalf("listed key %d was not created by this user", id)
		}
	}
}

// newGPGEntity makes an ed25519 OpenPGP key and returns it armored (public).
func newGPGEntity(t *testing.T, name, email string) (*openpgp.Entity, string) {
	t.Helper()
	ent, err := openpgp.NewEntity(name, "", email, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatalf("openpgp.NewEntity: %v", err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ent.Serialize(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return ent, buf.String()
}

// armoredPrivate armors ent's private key.
func armoredPrivate(t *testing.T, ent *openpgp.Entity) string {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PrivateKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ent.SerializePrivate(w, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestGitLabClientGPGKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin := newGitLabClient(t, e, adminSecret)
	_, aliceToken := e.newUser(t, "alice")
	bob, _ := e.newUser(t, "bob")
	c := newGitLabClient(t, e, aliceToken)

	aliceEnt, aliceArmored := newGPGEntity(t, "Alice", "alice@example.com")
	g, resp, err := c.Users.AddGPGKey(&gitlab.AddGPGKeyOptions{Key: gitlab.Ptr(aliceArmored)})
	if err != nil {
		t.Fatalf("AddGPGKey: %v", err)
	}
	expectStatus(t, "AddGPGKey", resp, err, http.StatusCreated)
	if g.ID <= 0 || strings.TrimSpace(g.Key) != strings.TrimSpace(aliceArmored) {
		t.Fatalf("AddGPGKey = id %d key %q, want the armored key back", g.ID, g.Key)
	}
	recent(t, e, "AddGPGKey", g.CreatedAt)

	list, _, err := c.Users.ListGPGKeys()
	if err != nil || len(list) != 1 || list[0].ID != g.ID || list[0].Key != g.Key {
		t.Fatalf("ListGPGKeys = %+v, %v; want only %d", list, err, g.ID)
	}
	got, _, err := c.Users.GetGPGKey(g.ID)
	if err != nil || got.ID != g.ID || got.Key != g.Key || !got.CreatedAt.Equal(*g.CreatedAt) {
		t.Fatalf("GetGPGKey = %+v, %v; want %+v", got, err, g)
	}
	// The fingerprint GitLab also returns, checked against go-crypto's.
	raw := e.do(t, "GET", "/api/v4/user/gpg_keys/"+itoa(g.ID), aliceToken, nil)
	expect(t, "GET gpg key", raw, http.StatusOK)
	if fp := raw.Object(t)["fingerprint"]; !strings.EqualFold(fp.(string), hexUpper(aliceEnt.PrimaryKey.Fingerprint)) {
		t.Fatalf("fingerprint %v, want %X", fp, aliceEnt.PrimaryKey.Fingerprint)
	}

	_, resp, err = c.Users.AddGPGKey(&gitlab.AddGPGKeyOptions{Key: gitlab.Ptr(aliceArmored)})
	expectStatus(t, "duplicate AddGPGKey", resp, err, http.StatusBadRequest)
	privEnt, _ := newGPGEntity(t, "Mallory", "mallory@example.com")
	priv := armoredPrivate(t, privEnt)
	_, resp, err = c.Users.AddGPGKey(&gitlab.AddGPGKeyOptions{Key: gitlab.Ptr(priv)})
	expectStatus(t, "AddGPGKey(private key)", resp, err, http.StatusBadRequest)
	if er := errorResponse(t, "AddGPGKey(private key)", err); !strings.Contains(string(er.Body), "private key") {
		t.Fatalf("AddGPGKey(private key) body %s does not say it is a private key", er.Body)
	}

	// Admin: another user's GPG keys.
	_, bobArmored := newGPGEntity(t, "Bob", "bob@example.com")
	bg, resp, err := admin.Users.AddGPGKeyForUser(bob.ID, &gitlab.AddGPGKeyOptions{Key: gitlab.Ptr(bobArmored)})
	if err != nil {
		t.Fatalf("AddGPGKeyForUser: %v", err)
	}
	expectStatus(t, "AddGPGKeyForUser", resp, err, http.StatusCreated)
	if strings.TrimSpace(bg.Key) != strings.TrimSpace(bobArmored) {
		t.Fatalf("AddGPGKeyForUser key = %q", bg.Key)
	}
	bl, _, err := admin.Users.ListGPGKeysForUser(bob.ID)
	if err != nil || len(bl) != 1 || bl[0].ID != bg.ID {
		t.Fatalf("ListGPGKeysForUser = %+v, %v", bl, err)
	}
	bgot, _, err := admin.Users.GetGPGKeyForUser(bob.ID, bg.ID)
	if err != nil || bgot.ID != bg.ID || bgot.Key != bg.Key {
		t.Fatalf("GetGPGKeyForUser = %+v, %v", bgot, err)
	}
	// Public: anyone may read a user's GPG keys.
	pub := e.do(t, "GET", "/api/v4/users/"+itoa(bob.ID)+"/gpg_keys", "", nil)
	expect(t, "anonymous GET /users/:id/gpg_keys", pub, http.StatusOK)
	if l := pub.List(t); len(l) != 1 || int64(l[0]["id"].(float64)) != bg.ID {
		t.Fatalf("anonymous list = %s", pub.Body)
	}
	_, resp, err = admin.Users.GetGPGKeyForUser(bob.ID, g.ID) // alice's key under bob
	expectStatus(t, "GetGPGKeyForUser(other user's key)", resp, err, http.StatusNotFound)
	resp, err = c.Users.DeleteGPGKeyForUser(bob.ID, bg.ID)
	expectStatus(t, "DeleteGPGKeyForUser as non-admin", resp, err, http.StatusForbidden)
	resp, err = admin.Users.DeleteGPGKeyForUser(bob.ID, bg.ID)
	expectStatus(t, "DeleteGPGKeyForUser", resp, err, http.StatusNoContent)
	if bl, _, err := admin.Users.ListGPGKeysForUser(bob.ID); err != nil || len(bl) != 0 {
		t.Fatalf("after DeleteGPGKeyForUser: %+v, %v", bl, err)
	}

	resp, err = c.Users.DeleteGPGKey(g.ID)
	expectStatus(t, "DeleteGPGKey", resp, err, http.StatusNoContent)
	_, resp, err = c.Users.GetGPGKey(g.ID)
	expectStatus(t, "GetGPGKey after delete", resp, err, http.StatusNotFound)
	if list, _, err := c.Users.ListGPGKeys(); err != nil || len(list) != 0 {
		t.Fatalf("ListGPGKeys after delete = %+v, %v", list, err)
	}
}

func TestGitLabClientGroupSSHCertificates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, ownerToken := e.newUser(t, "owner")
	c := newGitLabClient(t, e, ownerToken)
	g, resp, err := c.Groups.CreateGroup(&gitlab.CreateGroupOptions{Name: gitlab.Ptr("Acme"), Path: gitlab.Ptr("acme")})
	if err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	expectStatus(t, "CreateGroup", resp, err, http.StatusCreated)

	certs, _, err := c.GroupSSHCertificates.ListGroupSSHCertificates(g.ID)
	if err != nil || len(certs) != 0 {
		t.Fatalf("ListGroupSSHCertificates on a new group = %+v, %v", certs, err)
	}
	caLine, _ := newKey(t, "acme-ca")
	ca, resp, err := c.GroupSSHCertificates.CreateGroupSSHCertificate(g.ID, &gitlab.CreateGroupSSHCertificateOptions{
		Title: gitlab.Ptr("Acme CA"), Key: gitlab.Ptr(caLine)})
	if err != nil {
		t.Fatalf("CreateGroupSSHCertificate: %v", err)
	}
	expectStatus(t, "CreateGroupSSHCertificate", resp, err, http.StatusCreated)
	if ca.ID <= 0 || ca.Title != "Acme CA" || ca.Key != caLine {
		t.Fatalf("CreateGroupSSHCertificate = %+v, want title Acme CA and key %q", ca, caLine)
	}
	recent(t, e, "CreateGroupSSHCertificate", ca.CreatedAt)

	// By id and by path: the same list.
	for _, gid := range []any{g.ID, "acme"} {
		certs, _, err = c.GroupSSHCertificates.ListGroupSSHCertificates(gid)
		if err != nil || len(certs) != 1 || certs[0].ID != ca.ID || certs[0].Key != caLine || certs[0].Title != "Acme CA" {
			t.Fatalf("ListGroupSSHCertificates(%v) = %+v, %v", gid, certs, err)
		}
	}
	resp, err = c.GroupSSHCertificates.DeleteGroupSSHCertificate(g.ID, ca.ID)
	expectStatus(t, "DeleteGroupSSHCertificate", resp, err, http.StatusNoContent)
	certs, _, err = c.GroupSSHCertificates.ListGroupSSHCertificates(g.ID)
	if err != nil || len(certs) != 0 {
		t.Fatalf("after DeleteGroupSSHCertificate: %+v, %v", certs, err)
	}
	resp, err = c.GroupSSHCertificates.DeleteGroupSSHCertificate(g.ID, ca.ID)
	expectStatus(t, "DeleteGroupSSHCertificate twice", resp, err, http.StatusNotFound)
}

func TestGitLabClientUsersAndTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin := newGitLabClient(t, e, adminSecret)

	u, resp, err := admin.Users.CreateUser(&gitlab.CreateUserOptions{Username: gitlab.Ptr("carol"),
		Email: gitlab.Ptr("carol@example.com"), Name: gitlab.Ptr("Carol C")})
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	expectStatus(t, "CreateUser", resp, err, http.StatusCreated)
	if u.ID <= 0 || u.Username != "carol" || u.Email != "carol@example.com" || u.Name != "Carol C" || u.State != "active" || u.IsAdmin {
		t.Fatalf("CreateUser = %+v", u)
	}
	_, resp, err = admin.Users.CreateUser(&gitlab.CreateUserOptions{Username: gitlab.Ptr("Carol"), Email: gitlab.Ptr("c2@example.com")})
	expectStatus(t, "CreateUser(username taken, other case)", resp, err, http.StatusBadRequest)

	expires := dateFromNow(e, 30*24*time.Hour)
	pat, resp, err := admin.Users.CreatePersonalAccessToken(u.ID, &gitlab.CreatePersonalAccessTokenOptions{
		Name: gitlab.Ptr("ci"), Scopes: &[]string{"api"}, ExpiresAt: gitlab.Ptr(gitlab.ISOTime(expires))})
	if err != nil {
		t.Fatalf("CreatePersonalAccessToken: %v", err)
	}
	expectStatus(t, "CreatePersonalAccessToken", resp, err, http.StatusCreated)
	if pat.ID <= 0 || pat.Name != "ci" || pat.UserID != u.ID || !pat.Active || pat.Revoked ||
		len(pat.Scopes) != 1 || pat.Scopes[0] != "api" || pat.ExpiresAt == nil || !time.Time(*pat.ExpiresAt).Equal(expires) {
		t.Fatalf("CreatePersonalAccessToken = %+v (expires %v), want name ci, api, expiring %v", pat, pat.ExpiresAt, expires)
	}
	if !strings.HasPrefix(pat.Token, "kgpat-") || len(pat.Token) < len("kgpat-")+20 ||
		strings.Trim(pat.Token[len("kgpat-"):], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		t.Fatalf("token %q is not kgpat- and 20+ URL-safe characters", pat.Token)
	}

	cc := newGitLabClient(t, e, pat.Token)
	me, _, err := cc.Users.CurrentUser()
	if err != nil || me.ID != u.ID {
		t.Fatalf("CurrentUser with the new token = %+v, %v", me, err)
	}
	self, _, err := cc.PersonalAccessTokens.GetSinglePersonalAccessToken()
	if err != nil {
		t.Fatalf("GetSinglePersonalAccessToken: %v", err)
	}
	if self.ID != pat.ID || self.Name != "ci" || self.Token != "" || self.ExpiresAt == nil || !time.Time(*self.ExpiresAt).Equal(expires) {
		t.Fatalf("personal_access_tokens/self = %+v; want token %d without its secret", self, pat.ID)
	}
	byID, _, err := cc.PersonalAccessTokens.GetSinglePersonalAccessTokenByID(pat.ID)
	if err != nil || byID.ID != pat.ID {
		t.Fatalf("GetSinglePersonalAccessTokenByID = %+v, %v", byID, err)
	}
	mine, _, err := cc.PersonalAccessTokens.ListPersonalAccessTokens(nil)
	if err != nil || len(mine) != 1 || mine[0].ID != pat.ID {
		t.Fatalf("ListPersonalAccessTokens as carol = %+v, %v; want only her token", mine, err)
	}
	all, _, err := admin.PersonalAccessTokens.ListPersonalAccessTokens(nil)
	if err != nil || len(all) != 2 { // root's bootstrap token and carol's
		t.Fatalf("ListPersonalAccessTokens as admin = %d tokens, %v; want 2", len(all), err)
	}

	// Block: the token stops working with 403; unblock: it works again.
	if err := admin.Users.BlockUser(u.ID); err != nil {
		t.Fatalf("BlockUser: %v", err)
	}
	bu, _, err := admin.Users.GetUser(u.ID, gitlab.GetUsersOptions{})
	if err != nil || bu.State != "blocked" {
		t.Fatalf("after BlockUser: %+v, %v", bu, err)
	}
	_, resp, err = cc.Users.CurrentUser()
	expectStatus(t, "CurrentUser while blocked", resp, err, http.StatusForbidden)
	if err := admin.Users.UnblockUser(u.ID); err != nil {
		t.Fatalf("UnblockUser: %v", err)
	}
	if me, _, err := cc.Users.CurrentUser(); err != nil || me.State != "active" {
		t.Fatalf("CurrentUser after unblock = %+v, %v", me, err)
	}
	if err := cc.Users.BlockUser(e.admin.ID); err == nil {
		t.Fatal("a non-admin blocked root")
	}

	// Revoke self: the token stops working (401).
	resp, err = cc.PersonalAccessTokens.RevokePersonalAccessTokenSelf()
	expectStatus(t, "RevokePersonalAccessTokenSelf", resp, err, http.StatusNoContent)
	_, resp, err = cc.Users.CurrentUser()
	expectStatus(t, "CurrentUser with a revoked token", resp, err, http.StatusUnauthorized)
	tk, err := e.store.Token(e.ctx, pat.ID)
	if err != nil || !tk.Revoked {
		t.Fatalf("store token after revoke = %+v, %v", tk, err)
	}

	// GitLab's list filters: revoked, state, search, user_id, dates.
	deploy, _, err := admin.Users.CreatePersonalAccessToken(u.ID, &gitlab.CreatePersonalAccessTokenOptions{
		Name: gitlab.Ptr("Deploy bot"), Scopes: &[]string{"read_api"}})
	if err != nil {
		t.Fatalf("CreatePersonalAccessToken(deploy): %v", err)
	}
	ids := func(name string, opt *gitlab.ListPersonalAccessTokensOptions) []int64 {
		t.Helper()
		list, _, err := admin.PersonalAccessTokens.ListPersonalAccessTokens(opt)
		if err != nil {
			t.Fatalf("ListPersonalAccessTokens(%s): %v", name, err)
		}
		var out []int64
		for _, tk := range list {
			out = append(out, tk.ID)
		}
		return out
	}
	want := func(name string, got []int64, ids ...int64) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(ids) {
			t.Errorf("ListPersonalAccessTokens(%s) = %v, want %v", name, got, ids)
		}
	}
	carol := gitlab.Ptr(u.ID)
	want("user_id", ids("user_id", &gitlab.ListPersonalAccessTokensOptions{UserID: carol}), pat.ID, deploy.ID)
	want("revoked=true", ids("revoked=true", &gitlab.ListPersonalAccessTokensOptions{UserID: carol, Revoked: gitlab.Ptr(true)}), pat.ID)
	want("revoked=false", ids("revoked=false", &gitlab.ListPersonalAccessTokensOptions{UserID: carol, Revoked: gitlab.Ptr(false)}), deploy.ID)
	want("state=inactive", ids("state=inactive", &gitlab.ListPersonalAccessTokensOptions{UserID: carol, State: gitlab.Ptr("inactive")}), pat.ID)
	want("state=active", ids("state=active", &gitlab.ListPersonalAccessTokensOptions{UserID: carol, State: gitlab.Ptr("active")}), deploy.ID)
	want("search=BOT", ids("search=BOT", &gitlab.ListPersonalAccessTokensOptions{Search: gitlab.Ptr("BOT")}), deploy.ID)
	want("expires_before", ids("expires_before", &gitlab.ListPersonalAccessTokensOptions{UserID: carol,
		ExpiresBefore: gitlab.Ptr(gitlab.ISOTime(expires.Add(24 * time.Hour)))}), pat.ID)
	want("created_after tomorrow", ids("created_after", &gitlab.ListPersonalAccessTokensOptions{
		CreatedAfter: gitlab.Ptr(gitlab.ISOTime(e.clock.Now().Add(24 * time.Hour)))}))
	_, resp, err = admin.PersonalAccessTokens.ListPersonalAccessTokens(&gitlab.ListPersonalAccessTokensOptions{State: gitlab.Ptr("sleeping")})
	expectStatus(t, "ListPersonalAccessTokens(state=sleeping)", resp, err, http.StatusBadRequest)
}

func TestGitLabClientGroupsAndMembers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, ownerToken := e.newUser(t, "owner")
	dev, devToken := e.newUser(t, "dev")
	outsider, _ := e.newUser(t, "outsider")
	c := newGitLabClient(t, e, ownerToken)
	dc := newGitLabClient(t, e, devToken)

	g, _, err := c.Groups.CreateGroup(&gitlab.CreateGroupOptions{Name: gitlab.Ptr("Platform Team"), Path: gitlab.Ptr("platform")})
	if err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	if g.ID <= 0 || g.Name != "Platform Team" || g.Path != "platform" || g.FullPath != "platform" || g.ParentID != 0 {
		t.Fatalf("CreateGroup = %+v", g)
	}
	sub, resp, err := c.Groups.CreateGroup(&gitlab.CreateGroupOptions{Name: gitlab.Ptr("Infra"), Path: gitlab.Ptr("infra"), ParentID: gitlab.Ptr(g.ID)})
	if err != nil {
		t.Fatalf("CreateGroup(subgroup): %v", err)
	}
	expectStatus(t, "CreateGroup(subgroup)", resp, err, http.StatusCreated)
	if sub.FullPath != "platform/infra" || sub.ParentID != g.ID || sub.FullName != "Platform Team / Infra" {
		t.Fatalf("subgroup = %+v", sub)
	}

	m, resp, err := c.GroupMembers.AddGroupMember(g.ID, &gitlab.AddGroupMemberOptions{UserID: gitlab.Ptr(dev.ID),
		AccessLevel: gitlab.Ptr(gitlab.DeveloperPermissions)})
	if err != nil {
		t.Fatalf("AddGroupMember: %v", err)
	}
	expectStatus(t, "AddGroupMember", resp, err, http.StatusCreated)
	if m.ID != dev.ID || m.Username != "dev" || m.AccessLevel != gitlab.DeveloperPermissions {
		t.Fatalf("AddGroupMember = %+v", m)
	}
	recent(t, e, "AddGroupMember", m.CreatedAt)
	_, resp, err = c.GroupMembers.AddGroupMember(g.ID, &gitlab.AddGroupMemberOptions{UserID: gitlab.Ptr(dev.ID),
		AccessLevel: gitlab.Ptr(gitlab.DeveloperPermissions)})
	if resp == nil || resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Fatalf("adding a member twice: %v", err)
	}

	members, _, err := c.Groups.ListGroupMembers(g.ID, nil)
	if err != nil || len(members) != 2 {
		t.Fatalf("ListGroupMembers = %+v, %v; want owner and dev", members, err)
	}
	levels := map[string]gitlab.AccessLevelValue{}
	for _, m := range members {
		levels[m.Username] = m.AccessLevel
	}
	if levels["owner"] != gitlab.OwnerPermissions || levels["dev"] != gitlab.DeveloperPermissions {
		t.Fatalf("member levels = %v", levels)
	}

	// The developer sees the group and (inherited) its subgroup, but may not add members.
	if got, _, err := dc.Groups.GetGroup(g.ID, nil); err != nil || got.ID != g.ID {
		t.Fatalf("GetGroup as developer = %+v, %v", got, err)
	}
	if got, _, err := dc.Groups.GetGroup("platform/infra", nil); err != nil || got.ID != sub.ID {
		t.Fatalf("GetGroup(platform/infra) as developer = %+v, %v", got, err)
	}
	_, resp, err = dc.GroupMembers.AddGroupMember(g.ID, &gitlab.AddGroupMemberOptions{UserID: gitlab.Ptr(outsider.ID),
		AccessLevel: gitlab.Ptr(gitlab.GuestPermissions)})
	expectStatus(t, "AddGroupMember as developer", resp, err, http.StatusForbidden)
}
