package e2e

import (
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// TestMemberExpiryEndsGitAccess: a member added over REST with GitLab's
// expires_at clones with the real git until the start of that day (UTC)
// and not from then on: the server's clock passing the date is enough,
// nothing is written.
func TestMemberExpiryEndsGitAccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, _ := e.createUser(t, "alice")
	key, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, id, pub, "", "")
	g := e.createGroup(t, "eng", e.adminToken)
	e.createProject(t, g, "api")
	e.seedRepo(t, "eng/api")
	expires := time.Now().UTC().Add(48 * time.Hour).Format(time.DateOnly)
	e.mustAPI(t, http.MethodPost, "/groups/"+itoa(g)+"/members", e.adminToken, url.Values{
		"user_id": {itoa(id)}, "access_level": {strconv.Itoa(keystore.Developer)}, "expires_at": {expires},
	}, http.StatusCreated, nil)

	clone := func() (string, int) {
		_, stderr, code := e.git(t, "", []string{key}, "clone", "--quiet", e.cloneURL("eng/api"), filepath.Join(t.TempDir(), "api"))
		return stderr, code
	}
	if stderr, code := clone(); code != 0 {
		t.Fatalf("clone before the expiry date: exit %d\n%s", code, stderr)
	}
	e.clock.Advance(72 * time.Hour) // past the start of the expiry date
	stderr, code := clone()
	if code == 0 || !strings.Contains(stderr, "could not be found or you don't have permission") {
		t.Fatalf("clone after the expiry date: exit %d, stderr:\n%s", code, stderr)
	}
}
