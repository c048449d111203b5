package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"reflect"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// newGPGKey returns a fresh armored OpenPGP public key (EdDSA) for email.
func newGPGKey(t testing.TB, name, email string) string {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", email, &packet.Config{
		Rand: rand.Reader, Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// withoutURLs drops the fields that name the host the request was sent to
// (they change with the port).
func withoutURLs(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k != "web_url" {
			out[k] = v
		}
	}
	return out
}

// findByID returns the element of a JSON array with the given id.
func findByID(t testing.TB, r *response, want int64) map[string]any {
	t.Helper()
	var list []map[string]any
	r.JSON(t, &list)
	for _, m := range list {
		if id(t, m) == want {
			return m
		}
	}
	return nil
}

func TestRestartKeepsEverything(t *testing.T) {
	t.Parallel()
	token := randomToken("restart-admin-token-")
	opts := serveOpts{DataDir: t.TempDir(), Env: []string{"KEYGATE_ADMIN_TOKEN=" + token}}
	p := startServe(t, opts)

	user := p.must("POST", "/api/v4/users", token, map[string]any{
		"username": "alice", "email": "alice@example.com", "name": "Alice Liddell"}, 201).Object(t)
	uid := id(t, user)
	userKey := sshKeyLine("alice@laptop")
	key := p.must("POST", fmt.Sprintf("/api/v4/users/%d/keys", uid), token, map[string]any{
		"title": "laptop", "key": userKey, "expires_at": "2099-12-31", "usage_type": "auth"}, 201).Object(t)
	rootKeyLine := sshKeyLine("")
	rootKey := p.must("POST", "/api/v4/user/keys", token, map[string]any{
		"title": "root's key", "key": rootKeyLine}, 201).Object(t)
	group := p.must("POST", "/api/v4/groups", token, map[string]any{
		"name": "Platform", "path": "platform", "enforce_ssh_certificates": true}, 201).Object(t)
	gid := id(t, group)
	sub := p.must("POST", "/api/v4/groups", token, map[string]any{
		"name": "Infra", "path": "infra", "parent_id": gid}, 201).Object(t)
	member := p.must("POST", fmt.Sprintf("/api/v4/groups/%d/members", gid), token, map[string]any{
		"user_id": uid, "access_level": 30}, 201).Object(t)
	caLine := sshKeyLine("platform-ca")
	ca := p.must("POST", fmt.Sprintf("/api/v4/groups/%d/ssh_certificates", gid), token, map[string]any{
		"title": "Platform CA", "key": caLine}, 201).Object(t)
	gpg := p.must("POST", fmt.Sprintf("/api/v4/users/%d/gpg_keys", uid), token, map[string]any{
		"key": newGPGKey(t, "Alice Liddell", "alice@example.com")}, 201).Object(t)

	// What each resource looks like through GET, before and after restarts.
	reads := []struct {
		name    string
		path    string
		created map[string]any // the POST's answer
		listID  int64          // when path is a list, the element to compare
	}{
		{name: "user", path: fmt.Sprintf("/api/v4/users/%d", uid), created: user},
		{name: "user-key", path: fmt.Sprintf("/api/v4/users/%d/keys/%d", uid, id(t, key)), created: key},
		{name: "root-key", path: fmt.Sprintf("/api/v4/user/keys/%d", id(t, rootKey)), created: rootKey},
		{name: "group", path: fmt.Sprintf("/api/v4/groups/%d", gid), created: group},
		{name: "subgroup", path: fmt.Sprintf("/api/v4/groups/%d", id(t, sub)), created: sub},
		{name: "member", path: fmt.Sprintf("/api/v4/groups/%d/members/%d", gid, uid), created: member},
		{name: "group-ca", path: fmt.Sprintf("/api/v4/groups/%d/ssh_certificates?per_page=100", gid), created: ca, listID: id(t, ca)},
		{name: "gpg-key", path: fmt.Sprintf("/api/v4/users/%d/gpg_keys/%d", uid, id(t, gpg)), created: gpg},
	}
	read := func(p *proc, path string, listID int64) map[string]any {
		t.Helper()
		r := p.must("GET", path, token, nil, 200)
		if listID == 0 {
			return r.Object(t)
		}
		m := findByID(t, r, listID)
		if m == nil {
			t.Fatalf("GET %s: no element with id %d in %s", path, listID, r.Body)
		}
		return m
	}
	before := map[string]map[string]any{}
	for _, rd := range reads {
		before[rd.name] = withoutURLs(read(p, rd.path, rd.listID))
	}
	p.stop()

	for restart := 1; restart <= 2; restart++ {
		p = startServe(t, opts)
		for _, rd := range reads {
			after := withoutURLs(read(p, rd.path, rd.listID))
			for _, field := range []string{"id", "created_at"} {
				if after[field] != rd.created[field] {
					t.Errorf("restart %d, %s: %s is %v, the POST answered %v", restart, rd.name, field, after[field], rd.created[field])
				}
			}
			if !reflect.DeepEqual(after, before[rd.name]) {
				t.Errorf("restart %d, %s changed:\nbefore %v\nafter  %v", restart, rd.name, before[rd.name], after)
			}
		}
		// The data is not just readable: the user still holds their key, by fingerprint.
		r := p.must("GET", fmt.Sprintf("/api/v4/users/%d/keys", uid), token, nil, 200)
		if findByID(t, r, id(t, key)) == nil {
			t.Errorf("restart %d: GET /users/%d/keys lacks key %d: %s", restart, uid, id(t, key), r.Body)
		}
		p.stop()
	}
}
