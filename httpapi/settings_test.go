package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/keygate/keygate/keystore"
)

// TestSettingsGitLabClient: the key policy through the official GitLab Go
// client's Settings service; the other settings decode at GitLab's
// defaults.
func TestSettingsGitLabClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	adminTok := e.newToken(t, e.admin.ID, nil, keystore.ScopeAPI)
	gl := newGitLabClient(t, e, adminTok)
	s, _, err := gl.Settings.GetSettings()
	if err != nil {
		t.Fatalf("GetSettings: %v", err)
	}
	if s.RSAKeyRestriction != 0 || s.DSAKeyRestriction != -1 || s.MaxSSHKeyLifetime != 0 || s.DefaultProjectsLimit != 100000 ||
		s.PollingIntervalMultiplier != 1 || s.SignupEnabled {
		t.Fatalf("GetSettings: %+v", s)
	}
	s, _, err = gl.Settings.UpdateSettings(&gitlab.UpdateSettingsOptions{RSAKeyRestriction: gitlab.Ptr(int64(4096)),
		ECDSASKKeyRestriction: gitlab.Ptr(int64(-1)), MaxSSHKeyLifetime: gitlab.Ptr(int64(90))})
	if err != nil {
		t.Fatalf("UpdateSettings: %v", err)
	}
	if s.RSAKeyRestriction != 4096 || s.ECDSASKKeyRestriction != -1 || s.MaxSSHKeyLifetime != 90 || s.UpdatedAt == nil {
		t.Fatalf("UpdateSettings answered %+v", s)
	}
	// A setting keygate does not keep, with another value: 400 naming it.
	_, resp, err := gl.Settings.UpdateSettings(&gitlab.UpdateSettingsOptions{SignupEnabled: gitlab.Ptr(true)})
	expectStatus(t, "UpdateSettings(signup_enabled)", resp, err, http.StatusBadRequest)
	if !strings.Contains(err.Error(), "signup_enabled") {
		t.Fatalf("UpdateSettings(signup_enabled): %v", err)
	}
	// Unknown names: 400 naming each; nothing changes.
	r := e.do(t, http.MethodPut, "/api/v4/application/settings", adminTok, map[string]any{"rsa_key_restriction": 0, "frob": 1, "nicate": "x"})
	expect(t, "PUT unknown settings", r, http.StatusBadRequest)
	if b := string(r.Body); !strings.Contains(b, `"frob":["is not a setting keygate knows"]`) || !strings.Contains(b, `"nicate"`) {
		t.Fatalf("PUT unknown settings: %s", b)
	}
	if s, _, _ := gl.Settings.GetSettings(); s.RSAKeyRestriction != 4096 {
		t.Fatalf("a refused PUT changed rsa_key_restriction to %d", s.RSAKeyRestriction)
	}
	// Non-admins: 403.
	_, tok := e.newUser(t, "alice")
	_, resp, err = newGitLabClient(t, e, tok).Settings.GetSettings()
	expectStatus(t, "GetSettings as a user", resp, err, http.StatusForbidden)
}
