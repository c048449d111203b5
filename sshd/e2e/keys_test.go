package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
)

const welcomeAlice = "Welcome to keygate, @alice!\n"

// fingerprintOf is the "SHA256:…" fingerprint of an authorized_keys line.
func fingerprintOf(t *testing.T, pubText string) string {
	t.Helper()
	pk, _, _, _, err := gossh.ParseAuthorizedKey([]byte(pubText))
	if err != nil {
		t.Fatalf("parsing %q: %v", pubText, err)
	}
	return gossh.FingerprintSHA256(pk)
}

// newAlice starts keygate with user alice (developer of eng, which holds
// the seeded eng/api) and returns her id and api token.
func newAlice(t *testing.T) (*env, int64, string) {
	t.Helper()
	e := newEnv(t)
	id, token := e.createUser(t, "alice")
	g := e.createGroup(t, "eng", e.adminToken)
	e.addMember(t, g, id, keystore.Developer)
	e.createProject(t, g, "api")
	e.seedRepo(t, "eng/api")
	return e, id, token
}

func TestKeyUsageType(t *testing.T) {
	t.Parallel()
	e, aliceID, _ := newAlice(t)
	signKey, signPub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, aliceID, signPub, keystore.UsageSigning, "")
	authKey, authPub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, aliceID, authPub, keystore.UsageAuth, "")
	banner := "keygate: key " + fingerprintOf(t, signPub) + " is a signing key and cannot be used to log in"

	for _, tc := range []struct {
		name        string
		keys        []string
		wantWelcome bool
	}{
		{"signing-only-key-is-rejected", []string{signKey}, false},
		{"client-then-succeeds-with-its-next-key", []string{signKey, authKey}, true},
		{"auth-only-key-logs-in", []string{authKey}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := e.ssh(t, tc.keys, "git", "-v")
			if tc.keys[0] == signKey {
				// The server accepted the offer, checked the signature,
				// then said why it refused.
				if !strings.Contains(stderr, "Server accepts key: "+signKey) || !strings.Contains(stderr, banner) {
					t.Errorf("stderr lacks the signing-key refusal %q:\n%s", banner, stderr)
				}
			}
			if tc.wantWelcome {
				if code != 0 || stdout != welcomeAlice {
					t.Errorf("exit %d, stdout %q; want exit 0 and %q\nstderr: %s", code, stdout, welcomeAlice, stderr)
				}
				return
			}
			if code != 255 || stdout != "" || !strings.Contains(stderr, "Permission denied (publickey)") {
				t.Errorf("exit %d, stdout %q; want exit 255 and permission denied\nstderr: %s", code, stdout, stderr)
			}
		})
	}
}

func TestExpiredKeyIsRefusedWithABanner(t *testing.T) {
	t.Parallel()
	e, aliceID, _ := newAlice(t)
	key, pub := e.sshKeygen(t, "ed25519", 0)

	// The API refuses a date in the past, so the key expires in an hour
	// and the server's clock is moved past it.
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	if code, body := e.api(t, http.MethodPost, "/users/"+itoa(aliceID)+"/keys", e.adminToken,
		url.Values{"title": {"old"}, "key": {pub}, "expires_at": {past}}); code != http.StatusBadRequest {
		t.Fatalf("adding a key that expired an hour ago = %d %s, want 400", code, body)
	}
	expires := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	e.addKey(t, aliceID, pub, "", expires.Format(time.RFC3339))

	if stdout, stderr, code := e.ssh(t, []string{key}, "git"); code != 0 || stdout != welcomeAlice {
		t.Fatalf("before expiry: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	e.clock.Advance(2 * time.Hour)
	stdout, stderr, code := e.ssh(t, []string{key}, "git", "-v")
	if code != 255 || stdout != "" {
		t.Errorf("after expiry: exit %d, stdout %q; want exit 255 and no session", code, stdout)
	}
	banner := "keygate: key " + fingerprintOf(t, pub) + " expired on " + expires.Format("2006-01-02")
	if !strings.Contains(stderr, banner) {
		t.Errorf("after expiry, stderr lacks %q:\n%s", banner, stderr)
	}
}

func TestDeletedKeyIsRefusedOnTheNextConnection(t *testing.T) {
	t.Parallel()
	e, aliceID, aliceToken := newAlice(t)
	for _, tc := range []struct {
		name  string
		route func(keyID int64) string
		token string
	}{
		{"deleted-by-admin", func(id int64) string { return "/users/" + itoa(aliceID) + "/keys/" + itoa(id) }, e.adminToken},
		{"deleted-by-owner", func(id int64) string { return "/user/keys/" + itoa(id) }, aliceToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key, pub := e.sshKeygen(t, "ed25519", 0)
			keyID := e.addKey(t, aliceID, pub, "", "")
			if stdout, stderr, code := e.ssh(t, []string{key}, "git"); code != 0 || stdout != welcomeAlice {
				t.Fatalf("before delete: exit %d, stdout %q, stderr %q", code, stdout, stderr)
			}
			e.mustAPI(t, http.MethodDelete, tc.route(keyID), tc.token, nil, http.StatusNoContent, nil)
			stdout, stderr, code := e.ssh(t, []string{key}, "git")
			if code != 255 || stdout != "" || !strings.Contains(stderr, "Permission denied (publickey)") {
				t.Errorf("right after delete: exit %d, stdout %q, stderr %q; want permission denied", code, stdout, stderr)
			}
		})
	}
}

func TestBlockedUserIsRefusedWithABanner(t *testing.T) {
	t.Parallel()
	e, aliceID, _ := newAlice(t)
	key, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, aliceID, pub, "", "")

	e.mustAPI(t, http.MethodPost, "/users/"+itoa(aliceID)+"/block", e.adminToken, nil, http.StatusCreated, nil)
	stdout, stderr, code := e.ssh(t, []string{key}, "git")
	if code != 255 || stdout != "" || !strings.Contains(stderr, "keygate: your account is blocked") {
		t.Errorf("blocked: exit %d, stdout %q, stderr %q; want exit 255 and the blocked banner", code, stdout, stderr)
	}

	e.mustAPI(t, http.MethodPost, "/users/"+itoa(aliceID)+"/unblock", e.adminToken, nil, http.StatusCreated, nil)
	if stdout, stderr, code := e.ssh(t, []string{key}, "git"); code != 0 || stdout != welcomeAlice {
		t.Errorf("unblocked: exit %d, stdout %q, stderr %q; want the welcome", code, stdout, stderr)
	}
}

// TestOpenSessionsEndWhenIdentityIsRevoked: a git session left waiting on
// its client is closed within seconds of the key's deletion or the user's
// blocking; another user's session stays open.
func TestOpenSessionsEndWhenIdentityIsRevoked(t *testing.T) {
	t.Parallel()
	e, aliceID, _ := newAlice(t)
	engID := e.groupID(t, "eng")
	for _, tc := range []struct {
		name   string
		revoke func(t *testing.T, userID, keyID int64)
	}{
		{"key-deleted", func(t *testing.T, userID, keyID int64) {
			e.mustAPI(t, http.MethodDelete, "/users/"+itoa(userID)+"/keys/"+itoa(keyID), e.adminToken, nil, http.StatusNoContent, nil)
		}},
		{"user-blocked", func(t *testing.T, userID, _ int64) {
			e.mustAPI(t, http.MethodPost, "/users/"+itoa(userID)+"/block", e.adminToken, nil, http.StatusCreated, nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			victimID, _ := e.createUser(t, "victim-"+tc.name)
			e.addMember(t, engID, victimID, keystore.Reporter)
			victimKey, pub := e.sshKeygen(t, "ed25519", 0)
			victimKeyID := e.addKey(t, victimID, pub, "", "")
			aliceKey, pub := e.sshKeygen(t, "ed25519", 0)
			e.addKey(t, aliceID, pub, "", "")

			const advertised = " refs/heads/main\n0000"
			victim := e.startSession(t, []string{victimKey}, "git", "git-upload-pack 'eng/api.git'")
			bystander := e.startSession(t, []string{aliceKey}, "git", "git-upload-pack 'eng/api.git'")
			for who, s := range map[string]*session{"victim": victim, "bystander": bystander} {
				if !s.waitOutput(advertised, 30*time.Second) {
					t.Fatalf("%s: no ref advertisement; stdout %q, stderr %q", who, s.stdout.String(), s.stderr.String())
				}
			}

			tc.revoke(t, victimID, victimKeyID)
			if !victim.waitExit(10 * time.Second) {
				t.Fatalf("the victim's session is still open 10s after the API call returned")
			}
			// Several revalidation rounds later the bystander is still connected.
			if bystander.waitExit(time.Second) {
				t.Errorf("another user's session was closed too; stderr %q", bystander.stderr.String())
			}
		})
	}
}

// groupID looks a group up by full path (as admin).
func (e *env) groupID(t *testing.T, fullPath string) int64 {
	t.Helper()
	var g idJSON
	e.mustAPI(t, http.MethodGet, "/groups/"+url.PathEscape(fullPath), e.adminToken, nil, http.StatusOK, &g)
	return g.ID
}
