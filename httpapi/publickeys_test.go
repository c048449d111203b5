package httpapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPublicKeyListingsOneRule: every route that shows a person's keys to
// others (GET /USERNAME.keys; GitHub's /users/:username/keys and
// ssh_signing_keys; GitLab's /users/:id/keys and /users/:id/gpg_keys, the
// lists and the single keys) applies one rule: a blocked user's keys, an
// expired SSH key and a revoked GPG key are not shown, to anonymous
// clients and other users alike. The user and admins still see all of
// theirs through GitLab's routes. Which usages a listing shows stays its
// own: authentication keys in .keys and /keys, signing keys in
// ssh_signing_keys, every usage in GitLab's list.
func TestPublicKeyListingsOneRule(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, aliceTok := e.newUser(t, "alice")
	_, bobTok := e.newUser(t, "bob")
	aid := itoa(alice.ID)

	ids := map[string]string{}    // SSH key name -> id
	gpgIDs := map[string]string{} // GPG key name -> id
	lines := map[string]string{}
	add := func(name, usage string, expires *time.Time) {
		line, _ := newKey(t, name)
		body := map[string]any{"title": name, "key": line, "usage_type": usage}
		if expires != nil {
			body["expires_at"] = expires.Format(time.RFC3339)
		}
		r := e.do(t, "POST", "/api/v4/user/keys", aliceTok, body)
		expect(t, "add "+name, r, http.StatusCreated)
		ids[name] = itoa(int64(r.Object(t)["id"].(float64)))
		f := strings.Fields(line)
		lines[f[0]+" "+f[1]] = name
	}
	soon := e.clock.Now().Add(48 * time.Hour)
	add("auth", "auth", nil)
	add("sign", "signing", nil)
	add("both", "auth_and_signing", nil)
	add("expiring", "auth_and_signing", &soon)
	addGPG := func(name string) string {
		_, armored := newGPGEntity(t, name, name+"@example.com")
		r := e.do(t, "POST", "/api/v4/user/gpg_keys", aliceTok, map[string]any{"key": armored})
		expect(t, "add gpg "+name, r, http.StatusCreated)
		id := itoa(int64(r.Object(t)["id"].(float64)))
		gpgIDs["gpg-"+name] = id
		return id
	}
	addGPG("kept")
	revoked := addGPG("revoked")
	expect(t, "revoke gpg", e.do(t, "POST", "/api/v4/user/gpg_keys/"+revoked+"/revoke", aliceTok, nil), http.StatusAccepted)

	names := func(ids map[string]string, idList []string) []string {
		var out []string
		for _, id := range idList {
			for n, v := range ids {
				if v == id {
					out = append(out, n)
				}
			}
		}
		slices.Sort(out)
		return out
	}
	listIDs := func(r response) []string {
		var out []string
		for _, o := range r.List(t) {
			out = append(out, itoa(int64(o["id"].(float64))))
		}
		return out
	}
	// Each listing, as one viewer sees it: the names of the keys shown.
	type viewer struct{ name, token string }
	anon, bob, self, admin := viewer{"anonymous", ""}, viewer{"bob", bobTok}, viewer{"alice", aliceTok}, viewer{"admin", adminSecret}
	listings := []struct {
		name    string
		viewers []viewer
		public  bool // shown as the public sees it to every viewer
		get     func(v viewer) []string
		usages  []string // which keys the listing shows when nothing is hidden
	}{
		{"/alice.keys", []viewer{anon}, true, func(v viewer) []string {
			r := e.do(t, "GET", "/alice.keys", v.token, nil)
			expect(t, "alice.keys", r, http.StatusOK)
			var out []string
			for _, l := range strings.Split(strings.TrimSpace(string(r.Body)), "\n") {
				if l != "" {
					out = append(out, lines[l])
				}
			}
			slices.Sort(out)
			return out
		}, []string{"auth", "both", "expiring"}},
		{"v3 /users/alice/keys", []viewer{anon, bob, self}, true, func(v viewer) []string {
			r := e.gh(t, "GET", "/api/v3/users/alice/keys", v.token, nil)
			expect(t, "v3 keys", r, http.StatusOK)
			return names(ids, listIDs(r))
		}, []string{"auth", "both", "expiring"}},
		{"v3 /users/alice/ssh_signing_keys", []viewer{anon, bob, self}, true, func(v viewer) []string {
			r := e.gh(t, "GET", "/api/v3/users/alice/ssh_signing_keys", v.token, nil)
			expect(t, "v3 signing keys", r, http.StatusOK)
			return names(ids, listIDs(r))
		}, []string{"both", "expiring", "sign"}},
		{"v4 /users/:id/keys", []viewer{bob, self, admin}, false, func(v viewer) []string {
			r := e.do(t, "GET", "/api/v4/users/"+aid+"/keys", v.token, nil)
			expect(t, "v4 keys", r, http.StatusOK)
			return names(ids, listIDs(r))
		}, []string{"auth", "both", "expiring", "sign"}},
		{"v4 /users/alice/keys", []viewer{bob}, false, func(v viewer) []string {
			r := e.do(t, "GET", "/api/v4/users/alice/keys", v.token, nil)
			expect(t, "v4 keys by username", r, http.StatusOK)
			return names(ids, listIDs(r))
		}, []string{"auth", "both", "expiring", "sign"}},
		{"v4 /users/:id/keys/:key_id", []viewer{bob, self, admin}, false, func(v viewer) []string {
			var out []string
			for _, n := range []string{"auth", "both", "expiring", "sign"} {
				r := e.do(t, "GET", "/api/v4/users/"+aid+"/keys/"+ids[n], v.token, nil)
				switch r.Code {
				case http.StatusOK:
					out = append(out, n)
				case http.StatusNotFound:
				default:
					t.Fatalf("GET key %s as %s: %d %s", n, v.name, r.Code, r.Body)
				}
			}
			return out
		}, []string{"auth", "both", "expiring", "sign"}},
		{"v4 /users/:id/gpg_keys", []viewer{anon, bob, self, admin}, false, func(v viewer) []string {
			r := e.do(t, "GET", "/api/v4/users/"+aid+"/gpg_keys", v.token, nil)
			expect(t, "v4 gpg keys", r, http.StatusOK)
			return names(gpgIDs, listIDs(r))
		}, []string{"gpg-kept", "gpg-revoked"}},
		{"v4 /users/:id/gpg_keys/:key_id", []viewer{anon, bob, self, admin}, false, func(v viewer) []string {
			var out []string
			for _, n := range []string{"gpg-kept", "gpg-revoked"} {
				r := e.do(t, "GET", "/api/v4/users/"+aid+"/gpg_keys/"+gpgIDs[n], v.token, nil)
				switch r.Code {
				case http.StatusOK:
					out = append(out, n)
				case http.StatusNotFound:
				default:
					t.Fatalf("GET gpg key %s as %s: %d %s", n, v.name, r.Code, r.Body)
				}
			}
			return out
		}, []string{"gpg-kept", "gpg-revoked"}},
	}
	// hidden is what the public does not see in each phase.
	check := func(phase string, hidden ...string) {
		t.Helper()
		for _, l := range listings {
			for _, v := range l.viewers {
				want := []string{}
				for _, n := range l.usages {
					private := v == self || v == admin
					if l.public || !private {
						if slices.Contains(hidden, n) || slices.Contains(hidden, "*") {
							continue
						}
					}
					want = append(want, n)
				}
				got := l.get(v)
				if got == nil {
					got = []string{}
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s: %s as %s shows %v, want %v", phase, l.name, v.name, got, want)
				}
			}
		}
	}
	check("at first", "gpg-revoked")
	e.clock.Advance(72 * time.Hour)
	check("after expiry", "gpg-revoked", "expiring")

	// Blocked: nothing of alice's is public any more (she cannot log in
	// to read her own; admins still read all of it).
	expect(t, "block", e.do(t, "POST", "/api/v4/users/"+aid+"/block", adminSecret, nil), http.StatusCreated)
	for i := range listings {
		listings[i].viewers = slices.DeleteFunc(listings[i].viewers, func(v viewer) bool { return v == self })
	}
	check("blocked", "*")
}
