package httpapi

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/keygate/keygate/keystore"
)

// GitHub clients look at more than the key routes: gh reads X-OAuth-Scopes
// from GET /api/v3/ when a token is added, octokit and go-github show the
// message of an error body. These answer in GitHub's shapes.

// ghScopes names a keygate token's scopes as the GitHub scopes it grants on
// /api/v3: api can read and write keys and signing keys, read_api only read
// them. GitHub clients check these names (gh: "missing required scope").
func ghScopes(tk *keystore.Token) string {
	var out []string
	switch {
	case tk.HasScope(keystore.ScopeAPI):
		out = []string{"admin:public_key", "admin:ssh_signing_key", "read:org", "repo", "user"}
	case tk.HasScope(keystore.ScopeReadAPI):
		out = []string{"read:org", "read:public_key", "read:ssh_signing_key", "read:user"}
	}
	return strings.Join(out, ", ")
}

// ghRoot is GET /api/v3/: the API's entry point, which gh calls to check a
// token (and its X-OAuth-Scopes) before it stores it.
func (a *API) ghRoot(w http.ResponseWriter, r *http.Request) error {
	b := baseURL(r) + "/api/v3"
	writeJSON(w, http.StatusOK, map[string]string{
		"current_user_url":           b + "/user",
		"current_user_keys_url":      b + "/user/keys",
		"user_keys_url":              b + "/users/{user}/keys",
		"ssh_signing_keys_url":       b + "/user/ssh_signing_keys",
		"user_ssh_signing_keys_url":  b + "/users/{user}/ssh_signing_keys",
		"repository_deploy_keys_url": b + "/repos/{owner}/{repo}/keys",
	})
	return nil
}

// ghUser is GET /api/v3/user: the token's user, GitHub-shaped.
func (a *API) ghUser(w http.ResponseWriter, r *http.Request) error {
	u := me(r)
	var email *string
	if u.Email != "" {
		email = &u.Email // the caller's own address
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"login": u.Username, "id": u.ID, "type": "User", "site_admin": u.IsAdmin,
		"name": u.Name, "email": email, "url": baseURL(r) + "/api/v3/users/" + u.Username,
		"html_url": baseURL(r) + "/" + u.Username, "created_at": ghTime(u.CreatedAt),
	})
	return nil
}

// ghNotFound answers unknown /api/v3 routes as GitHub does.
func (a *API) ghNotFound(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found", "documentation_url": ghDocs})
}

// publicKeysText is GET /USERNAME.keys, as GitLab and GitHub serve it:
// the user's authentication keys, one OpenSSH line each, for
// `curl https://HOST/alice.keys >> ~/.ssh/authorized_keys`. Signing-only
// keys are left out (they do not log in), and so is what is not public
// (keystore.PublicKey: expired keys, every key of a blocked user). Public,
// like GitLab's.
func (a *API) publicKeysText(w http.ResponseWriter, r *http.Request) error {
	name := pathParam(r, "username")
	u, err := a.store.UserByUsername(r.Context(), name)
	if err != nil {
		return err // ErrNotFound is 404
	}
	var b strings.Builder
	keys, _, err := a.keysOf(r, u, authUsages, true, keystore.Page{PerPage: 1 << 30})
	if err != nil {
		return err
	}
	for _, k := range keys {
		b.WriteString(ghKeyText(k))
		b.WriteByte('\n')
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(b.String()))
	return nil
}

// viewerQuery matches the one GraphQL query keygate answers: the viewer's
// login, name and id, as `gh auth status` and `gh api user` helpers ask.
var viewerQuery = regexp.MustCompile(`^\s*(query\s*[A-Za-z_]*\s*)?\{\s*viewer\s*\{([\sA-Za-z,]*)\}\s*\}\s*$`)

// ghGraphQL is POST /api/graphql with only { viewer { login name id
// databaseId } }: enough for gh to learn whose token it holds. Anything else
// answers GraphQL's error shape naming what is supported.
func (a *API) ghGraphQL(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Query string `json:"query"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return errStatus(http.StatusBadRequest, "Problems parsing JSON")
	}
	m := viewerQuery.FindStringSubmatch(req.Query)
	unsupported := func() error {
		writeJSON(w, http.StatusOK, map[string]any{"errors": []map[string]string{{
			"type": "NOT_SUPPORTED", "message": "keygate answers only the GraphQL query { viewer { login name id databaseId } }"}}})
		return nil
	}
	if m == nil {
		return unsupported()
	}
	u := me(r)
	viewer := map[string]any{}
	for _, f := range strings.FieldsFunc(m[2], func(c rune) bool { return c == ',' || unicode.IsSpace(c) }) {
		switch f {
		case "login":
			viewer[f] = u.Username
		case "name":
			viewer[f] = u.Name
		case "id":
			viewer[f] = "U_" + strconv.FormatInt(u.ID, 10)
		case "databaseId":
			viewer[f] = u.ID
		default:
			return unsupported()
		}
	}
	return respond(w, http.StatusOK, map[string]any{"data": map[string]any{"viewer": viewer}})
}
