package httpapi

import (
	"net/http"
	"slices"
	"strconv"

	"github.com/keygate/keygate/keystore"
)

// Application settings: GitLab's /application/settings for the subset that
// concerns keys (keygate's key policy), plus the other settings
// python-gitlab's gl.settings.get() reads, with GitLab's defaults (or the
// value that says keygate has no such feature). Only the key policy can be
// changed; anything else given to PUT is a 400 naming it.

// gitlabSettingDefaults are the settings keygate has no use for, as
// GitLab's defaults; those that would claim a feature keygate lacks (sign
// up, passwords, Gravatar) are false.
var gitlabSettingDefaults = map[string]any{
	"id":                     1,
	"default_projects_limit": 100000,
	"signup_enabled":         false,
	"password_authentication_enabled_for_web":          false,
	"gravatar_enabled":                                 false,
	"sign_in_text":                                     nil,
	"home_page_url":                                    nil,
	"default_branch_protection":                        2,
	"restricted_visibility_levels":                     []string{},
	"max_attachment_size":                              100,
	"session_expire_delay":                             10080,
	"default_project_visibility":                       "private",
	"default_snippet_visibility":                       "private",
	"default_group_visibility":                         "private",
	"outbound_local_requests_whitelist":                []string{},
	"disabled_oauth_sign_in_sources":                   []string{},
	"domain_whitelist":                                 nil,
	"domain_blacklist_enabled":                         false,
	"domain_blacklist":                                 nil,
	"domain_allowlist":                                 []string{},
	"domain_denylist_enabled":                          false,
	"domain_denylist":                                  []string{},
	"external_authorization_service_enabled":           false,
	"external_authorization_service_url":               nil,
	"external_authorization_service_default_label":     nil,
	"external_authorization_service_timeout":           0.5,
	"import_sources":                                   []string{},
	"user_oauth_applications":                          false,
	"after_sign_out_path":                              nil,
	"container_registry_token_expire_delay":            5,
	"repository_storages":                              []string{"default"},
	"plantuml_enabled":                                 false,
	"plantuml_url":                                     nil,
	"terminal_max_session_time":                        0,
	"polling_interval_multiplier":                      "1.0",
	"first_day_of_week":                                0,
	"enforce_terms":                                    false,
	"terms":                                            nil,
	"performance_bar_allowed_group_id":                 nil,
	"instance_statistics_visibility_private":           false,
	"user_show_add_ssh_key_message":                    true,
	"file_template_project_id":                         nil,
	"local_markdown_version":                           0,
	"asset_proxy_enabled":                              false,
	"asset_proxy_url":                                  nil,
	"asset_proxy_whitelist":                            []string{},
	"asset_proxy_allowlist":                            []string{},
	"geo_node_allowed_ips":                             "0.0.0.0/0, ::/0",
	"allow_local_requests_from_hooks_and_services":     false,
	"allow_local_requests_from_web_hooks_and_services": false,
	"allow_local_requests_from_system_hooks":           false,
}

// requestOnlyParams are parameters that name who asks, not a setting.
var requestOnlyParams = []string{"private_token", "access_token", "sudo", "page", "per_page"}

func renderSettings(row *keystore.KeyPolicyRow) map[string]any {
	out := make(map[string]any, len(gitlabSettingDefaults)+12)
	for k, v := range gitlabSettingDefaults {
		out[k] = v
	}
	for k, v := range row.Policy.Values() {
		out[k] = v
	}
	var updated *string
	if row.ID != 0 {
		updated = fmtTimePtr(&row.UpdatedAt)
	}
	out["created_at"], out["updated_at"] = updated, updated
	return out
}

func (a *API) getSettings(w http.ResponseWriter, r *http.Request) error {
	row, err := a.store.KeyPolicy(r.Context(), 0)
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, renderSettings(row))
}

// policyParams reads a request's key policy settings over base: unknown
// names are a 400 naming each (a GitLab setting keygate does not keep is
// "not supported", anything else unknown).
func policyParams(r *http.Request, base keystore.KeyPolicy) (keystore.KeyPolicy, bool, error) {
	p, err := readParams(r)
	if err != nil {
		return base, false, err
	}
	given := map[string]string{}
	problems := map[string][]string{}
	for name := range p.v {
		if slices.Contains(requestOnlyParams, name) {
			continue
		}
		v, _ := p.str(name)
		switch def, gitlab := gitlabSettingDefaults[name]; {
		case slices.Contains(keystore.KeyPolicySettings, name):
			given[name] = v
		case name == "created_at" || name == "updated_at":
			// Read-only; clients that save what they read send them back.
		case gitlab && sameSetting(def, p.v[name]):
			// Unchanged (python-gitlab's save() sends back every list it read).
		case gitlab:
			problems[name] = []string{"is a GitLab setting keygate does not support changing; keygate changes only the key settings"}
		default:
			problems[name] = []string{"is not a setting keygate knows"}
		}
	}
	if len(problems) > 0 {
		return base, false, &httpError{Code: http.StatusBadRequest, Body: problems}
	}
	out, err := keystore.ParseKeyPolicy(base, given)
	return out, len(given) > 0, err
}

// sameSetting reports whether request values vs equal a setting's value
// as keygate reports it.
func sameSetting(def any, vs []string) bool {
	switch d := def.(type) {
	case nil:
		return len(vs) == 0 || (len(vs) == 1 && vs[0] == "")
	case []string:
		return slices.Equal(d, vs) || (len(d) == 0 && len(vs) == 1 && vs[0] == "")
	}
	if len(vs) != 1 {
		return false
	}
	switch d := def.(type) {
	case string:
		return vs[0] == d
	case bool:
		b, ok := gitlabBool(vs[0])
		return ok && b == d
	case int:
		n, err := strconv.Atoi(vs[0])
		return err == nil && n == d
	case float64:
		f, err := strconv.ParseFloat(vs[0], 64)
		return err == nil && f == d
	}
	return false
}

func (a *API) updateSettings(w http.ResponseWriter, r *http.Request) error {
	row, err := a.store.KeyPolicy(r.Context(), 0)
	if err != nil {
		return err
	}
	p, changed, err := policyParams(r, row.Policy)
	if err != nil {
		return err
	}
	if changed {
		if row, err = a.store.SetKeyPolicy(r.Context(), actor(r), 0, p); err != nil {
			return err
		}
	}
	return respond(w, http.StatusOK, renderSettings(row))
}

type violationJSON struct {
	Kind        string  `json:"kind"`
	ID          int64   `json:"id"`
	UserID      *int64  `json:"user_id"`
	Username    *string `json:"username"`
	Title       string  `json:"title"`
	Fingerprint string  `json:"fingerprint"`
	KeyType     string  `json:"key_type"`
	Bits        int     `json:"bits"`
	ExpiresAt   *string `json:"expires_at"`
	CreatedAt   *string `json:"created_at"`
	Setting     string  `json:"setting"`
	Reason      string  `json:"reason"`
}

func renderViolation(v *keystore.PolicyViolation) violationJSON {
	out := violationJSON{Kind: v.Kind, ID: v.ID, UserID: v.UserID, Title: v.Title, Fingerprint: v.FingerprintSHA256,
		KeyType: keystore.KindName(keystore.KeyKind(v.Type)), Bits: v.Bits, ExpiresAt: fmtTimePtr(v.ExpiresAt),
		CreatedAt: fmtTimePtr(v.CreatedAt), Setting: v.Setting, Reason: v.Reason}
	if v.Username != "" {
		out.Username = &v.Username
	}
	return out
}

// listPolicyViolations lists the keys that log in today and that the
// instance's key policy refuses — or, with settings in the query string,
// the policy those settings would make (to announce a restriction before
// switching it on).
func (a *API) listPolicyViolations(w http.ResponseWriter, r *http.Request) error {
	row, err := a.store.KeyPolicy(r.Context(), 0)
	if err != nil {
		return err
	}
	p, _, err := policyParams(r, row.Policy)
	if err != nil {
		return err
	}
	return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.PolicyViolation, int, error) {
		return a.store.KeyPolicyViolations(r.Context(), p, pg)
	}, renderViolation)
}

// groupPolicyJSON is a top-level group's own key policy and the one that
// applies to git in its projects (merged with the instance's).
func renderGroupPolicy(own, instance *keystore.KeyPolicyRow) map[string]any {
	out := own.Policy.Values()
	out["group_id"] = own.GroupID
	eff := instance.Policy.Stricter(own.Policy)
	out["effective"] = eff.Values()
	var updated *string
	if own.ID != 0 {
		updated = fmtTimePtr(&own.UpdatedAt)
	}
	out["updated_at"] = updated
	return out
}

func (a *API) getGroupKeyPolicy(w http.ResponseWriter, r *http.Request) error {
	g, err := a.caGroup(r)
	if err != nil {
		return err
	}
	own, err := a.store.KeyPolicy(r.Context(), g.ID)
	if err != nil {
		return err
	}
	inst, err := a.store.KeyPolicy(r.Context(), 0)
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, renderGroupPolicy(own, inst))
}

func (a *API) updateGroupKeyPolicy(w http.ResponseWriter, r *http.Request) error {
	g, err := a.caGroup(r)
	if err != nil {
		return err
	}
	own, err := a.store.KeyPolicy(r.Context(), g.ID)
	if err != nil {
		return err
	}
	p, changed, err := policyParams(r, own.Policy)
	if err != nil {
		return err
	}
	if changed {
		if own, err = a.store.SetKeyPolicy(r.Context(), actor(r), g.ID, p); err != nil {
			return err
		}
	}
	inst, err := a.store.KeyPolicy(r.Context(), 0)
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, renderGroupPolicy(own, inst))
}
