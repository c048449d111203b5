package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// The example requests of the three API documents keygate starts from
// (../shared/seeds: GitLab's "User SSH and GPG keys API" and "Group SSH
// certificates API", GitHub's "REST API endpoints for SSH signing keys"),
// held here as the documents print them, run with the real curl against
// keygate, each answer compared field by field with the document's
// example response: every field the document shows is there, with the
// same JSON type, and timestamps in the same layout (GitLab's with
// milliseconds, GitHub's whole seconds). keygate may answer more fields.
//
// Only placeholders change: the host, the token, ids, and the key (the
// documents' keys are truncated or "REDACTED"). Where a document shows no
// request (adding and deleting SSH keys), the request is built from its
// attribute table in the style of its other examples; where a document is
// wrong about its own API, the note says so and what GitLab really does.

type seedExample struct {
	doc, section string
	// request is a curl command line as the document prints it, with
	// {placeholders} for what the test fills in.
	request string
	status  int
	// response is the document's example response ("" when it shows none).
	response string
	// as: "object", "list", "element" (the document shows an array but
	// the API answers one object of that shape) or "" (no body).
	as   string
	note string
}

const (
	docGitLabKeys = "user-ssh-and-gpg-keys-api.md"
	docGroupCerts = "group-ssh-certificates-api.md"
	docGitHub     = "github-ssh-signing-keys-api.txt"
)

var seedExamples = []seedExample{
	// GitLab: User SSH and GPG keys API.
	{doc: docGitLabKeys, section: "List your SSH keys", request: `curl --header "PRIVATE-TOKEN: <your_access_token>" \
--url "https://gitlab.example.com/api/v4/user/keys"`, status: 200, as: "list", response: `[
{
"id": 1,
"title": "Public key",
"key": "ssh-rsa AAAAB3NzaC1yc2EAAAABJQAAAIEAiPWx6WM4lhHNedGfBpPJNPpZ7yKu+dnn1SJejgt4596k6YjzGGphH2TUxwKzxcKDKKezwkpfnxPkSMkuEspGRt/aZZ9wa++Oi7Qkr8prgHc4soW6NUlfDzpvZK2H5E7eQaSeP3SAwGmQKUFHCddNaP0L+hM7zhFNzjFvpaMgJw0=",
"created_at": "2014-08-01T14:47:39.080Z"
},
{
"id": 3,
"title": "Another Public key",
"key": "ssh-rsa AAAAB3NzaC1yc2EAAAABJQAAAIEAiPWx6WM4lhHNedGfBpPJNPpZ7yKu+dnn1SJejgt4596k6YjzGGphH2TUxwKzxcKDKKezwkpfnxPkSMkuEspGRt/aZZ9wa++Oi7Qkr8prgHc4soW6NUlfDzpvZK2H5E7eQaSeP3SAwGmQKUFHCddNaP0L+hM7zhFNzjFvpaMgJw0=",
"created_at": "2014-08-01T14:47:39.080Z"
}
]`},
	{doc: docGitLabKeys, section: "List SSH keys for a user", request: `curl --header "PRIVATE-TOKEN: <your_access_token>" \
--url "https://gitlab.example.com/api/v4/users/{user_id}/keys"`, status: 200, as: "list"},
	{doc: docGitLabKeys, section: "Get a single SSH key", request: `curl --header "PRIVATE-TOKEN: <your_access_token>" \
--url "https://gitlab.example.com/api/v4/user/keys/{key_id}"`, status: 200, as: "object", response: `{
"id": 1,
"title": "Public key",
"key": "<SSH_KEY>",
"created_at": "2014-08-01T14:47:39.080Z"
}`},
	{doc: docGitLabKeys, section: "Get a single SSH key for a user", request: `curl --header "PRIVATE-TOKEN: <your_access_token>" \
--url "https://gitlab.example.com/users/{user_id}/keys/{key_id}"`, status: 404, as: "object", response: `{"error":"404 Not Found"}`,
		note: "the document's URL lacks /api/v4: GitLab answers it as an unknown route, and so does keygate; the next example is the route"},
	{doc: docGitLabKeys, section: "Get a single SSH key for a user", request: `curl --header "PRIVATE-TOKEN: <your_access_token>" \
--url "https://gitlab.example.com/api/v4/users/{user_id}/keys/{key_id}"`, status: 200, as: "object", response: `{
"id": 1,
"title": "Public key",
"key": "<SSH_KEY>",
"created_at": "2014-08-01T14:47:39.080Z"
}`},
	{doc: docGitLabKeys, section: "Add an SSH key to your account", request: `curl --request POST --header "PRIVATE-TOKEN: <your_access_token>" \
--data-urlencode "title=ABC" --data-urlencode "key=<SSH_KEY>" --data-urlencode "expires_at={expires_at}" --data-urlencode "usage_type=auth" \
--url "https://gitlab.example.com/api/v4/user/keys"`, status: 201, as: "object", response: `{
"title": "ABC",
"key": "<SSH_KEY>",
"expires_at": "2016-01-21T00:00:00.000Z",
"usage_type": "auth"
}`, note: "no request shown: built from the attribute table; expires_at in the future (the example's 2016 is refused as expired)"},
	{doc: docGitLabKeys, section: "Add an SSH key to your account (the same key again)", request: `curl --request POST --header "PRIVATE-TOKEN: <your_access_token>" \
--data-urlencode "title=ABC" --data-urlencode "key=<SSH_KEY>" --data-urlencode "expires_at={expires_at}" --data-urlencode "usage_type=auth" \
--url "https://gitlab.example.com/api/v4/user/keys"`, status: 400, as: "object", response: `{
"message": {
"fingerprint": [
"has already been taken"
],
"key": [
"has already been taken"
]
}
}`},
	{doc: docGitLabKeys, section: "Add an SSH key for a user", request: `curl --request POST --header "PRIVATE-TOKEN: <admin_token>" \
--data-urlencode "title=ABC" --data-urlencode "key=<SSH_KEY_2>" --data-urlencode "expires_at={expires_at}" --data-urlencode "usage_type=auth" \
--url "https://gitlab.example.com/api/v4/users/{user_id}/keys"`, status: 201, as: "object", response: `{
"title": "ABC",
"key": "<SSH_KEY>",
"expires_at": "2016-01-21T00:00:00.000Z",
"usage_type": "auth"
}`, note: "no request shown: built from the attribute table"},
	{doc: docGitLabKeys, section: "Add an SSH key for a user (the same key again)", request: `curl --request POST --header "PRIVATE-TOKEN: <admin_token>" \
--data-urlencode "title=ABC" --data-urlencode "key=<SSH_KEY_2>" \
--url "https://gitlab.example.com/api/v4/users/{user_id}/keys"`, status: 400, as: "object", response: `{
"message": {
"fingerprint": [
"has already been taken"
],
"key": [
"has already been taken"
]
}
}`},
	{doc: docGitLabKeys, section: "Delete an SSH key from your account", request: `curl --request DELETE --header "PRIVATE-TOKEN: <your_access_token>" \
--url "https://gitlab.example.com/api/v4/user/keys/{key_id}"`, status: 204, note: "no request shown: built from the attribute table"},
	{doc: docGitLabKeys, section: "Delete an SSH key from your account (not found)", request: `curl --request DELETE --header "PRIVATE-TOKEN: <your_access_token>" \
--url "https://gitlab.example.com/api/v4/user/keys/{key_id}"`, status: 404, as: "object", response: `{"message":"404 Key Not Found"}`},
	{doc: docGitLabKeys, section: "Delete an SSH key for a user", request: `curl --request DELETE --header "PRIVATE-TOKEN: <admin_token>" \
--url "https://gitlab.example.com/api/v4/users/{user_id}/keys/{key_id_2}"`, status: 204, note: "no request shown: built from the attribute table"},
	{doc: docGitLabKeys, section: "List your GPG keys", request: `curl --header "PRIVATE-TOKEN: <your_access_token>" \
--url "https://gitlab.example.com/api/v4/user/gpg_keys"`, status: 200, as: "list", response: `[
{
"id": 1,
"key": "<PGP_PUBLIC_KEY_BLOCK>",
"created_at": "2017-09-05T09:17:46.264Z"
}
]`},
	{doc: docGitLabKeys, section: "List GPG keys for a user", request: `curl --header "PRIVATE-TOKEN: <your_access_token>" \
--url "https://gitlab.example.com/api/v4/users/{user_id}/gpg_keys"`, status: 200, as: "list", response: `[
{
"id": 1,
"key": "<PGP_PUBLIC_KEY_BLOCK>",
"created_at": "2017-09-05T09:17:46.264Z"
}
]`},
	{doc: docGitLabKeys, section: "Get a single GPG key", request: `curl --header "PRIVATE-TOKEN: <your_access_token>" \
--url "https://gitlab.example.com/api/v4/user/gpg_keys/{gpg_key_id}"`, status: 200, as: "object", response: `{
"id": 1,
"key": "<PGP_PUBLIC_KEY_BLOCK>",
"created_at": "2017-09-05T09:17:46.264Z"
}`},
	{doc: docGitLabKeys, section: "Get a single GPG key for a user", request: `curl --header "PRIVATE-TOKEN: <your_access_token>" \
--url "https://gitlab.example.com/api/v4/users/{user_id}/gpg_keys/{gpg_key_id}"`, status: 200, as: "object", response: `{
"id": 1,
"key": "<PGP_PUBLIC_KEY_BLOCK>",
"created_at": "2017-09-05T09:17:46.264Z"
}`},
	{doc: docGitLabKeys, section: "Add a GPG key to your account", request: `curl --data-urlencode "key=<PGP_PUBLIC_KEY_BLOCK>" \
--header "PRIVATE-TOKEN: <your_access_token>" "https://gitlab.example.com/api/v4/user/gpg_keys"`, status: 201, as: "element", response: `[
{
"id": 1,
"key": "<PGP_PUBLIC_KEY_BLOCK>",
"created_at": "2017-09-05T09:17:46.264Z"
}
]`, note: "the document shows an array; GitLab's API (and its Go client) answer the one key as an object, and so does keygate"},
	{doc: docGitLabKeys, section: "Add a GPG key for a user", request: `curl --data-urlencode "key=<PGP_PUBLIC_KEY_BLOCK_2>" \
--header "PRIVATE-TOKEN: <admin_token>" "https://gitlab.example.com/api/v4/users/{user_id}/gpg_keys"`, status: 201, as: "element", response: `[
{
"id": 1,
"key": "<PGP_PUBLIC_KEY_BLOCK>",
"created_at": "2017-09-05T09:17:46.264Z"
}
]`, note: "as above: one object"},
	{doc: docGitLabKeys, section: "Delete a GPG key from your account", request: `curl --request DELETE --header "PRIVATE-TOKEN: <your_access_token>" \
--url "https://gitlab.example.com/api/v4/user/gpg_keys/{gpg_key_id}"`, status: 204, note: "no request shown: built from the attribute table"},
	{doc: docGitLabKeys, section: "Delete a GPG key from your account (not found)", request: `curl --request DELETE --header "PRIVATE-TOKEN: <your_access_token>" \
--url "https://gitlab.example.com/api/v4/user/gpg_keys/{gpg_key_id}"`, status: 404, as: "object", response: `{"message":"404 GPG Key Not Found"}`},
	{doc: docGitLabKeys, section: "Delete a GPG key for a user", request: `curl --request DELETE --header "PRIVATE-TOKEN: <admin_token>" \
--url "https://gitlab.example.com/api/v4/users/{user_id}/gpg_keys/{gpg_key_id_2}"`, status: 204, note: "no request shown: built from the attribute table"},

	// GitLab: Group SSH certificates API.
	{doc: docGroupCerts, section: "Get all SSH certificates for a particular group", request: `curl --header "PRIVATE-TOKEN: <your_access_token>" \
  --url "https://primary.example.com/api/v4/groups/{group_id}/ssh_certificates"`, status: 200, as: "list", response: `[
  {
    "id": 12345,
    "title": "SSH Title 1",
    "key": "ssh-rsa AAAAB3NzaC1ea2dAAAADAQABAAAAgQDGbLkF44ScxRQi2FfA7VsHgGqptguSbmW26jkJhEiRZpGS4/+UzaaSqc8Psw2OhSsKc5QwfrB/ANpO4LhOjDzhf2FuD8ACkv3R7XtaJ+rN6PlyzoBfLAiSyzxhEoMFDBprTgaiZKgg2yQ9dRH55w3f6XMZ4hnaUae53nQgfQLxFw== example@gitlab.com",
    "created_at": "2023-09-08T12:39:00.172Z"
  },
  {
    "id":12346,
    "title":"SSH Title 2",
    "key": "ssh-rsa AAAAB3NzaC1ac2EAAAADAQABAAAAgQDTl/hHfu1F/KlR+QfgM2wUmyxcN5YeiaWluEGIrfXUeJuI+bK6xjpE3+2afHDYtE9VQkeL32KRjefX2d72Jeoa68ewt87Vn8CcGkUTOTpHNzeL8pHMKFs3m7ArSBxNg5vTdgAsq5dbDGNtat7b2WCHTNvtWoON1Jetne30uW2EwQ== example@gitlab.com",
    "created_at": "2023-09-08T12:39:00.244Z"
  }
]`},
	{doc: docGroupCerts, section: "Create SSH Certificate", request: `curl --request POST \
  --header "PRIVATE-TOKEN: <your_access_token>" \
  --url "https://gitlab.example.com/api/v4/groups/{group_id}/ssh_certificates?title=newtitle&key=ssh-rsa+REDACTED+example%40gitlab.com"`,
		status: 201, as: "object", response: `{
  "id": 54321,
  "title": "newtitle",
  "key": "ssh-rsa ssh-rsa AAAAB3NzaC1ea2dAAAADAQABAAAAgQDGbLkF44ScxRQi2FfA7VsHgGqptguSbmW26jkJhEiRZpGS4/+UzaaSqc8Psw2OhSsKc5QwfrB/ANpO4LhOjDzhf2FuD8ACkv3R7XtaJ+rN6PlyzoBfLAiSyzxhEoMFDBprTgaiZKgg2yQ9dRH55w3f6XMZ4hnaUae53nQgfQLxFw== example@gitlab.com",
  "created_at": "2023-09-08T12:39:00.172Z"
}`, note: "REDACTED is a real CA key's base64, URL-encoded (a raw + would arrive as a space)"},
	{doc: docGroupCerts, section: "Delete group SSH certificate", request: `curl --request DELETE \
  --header "PRIVATE-TOKEN: <your_access_token>" \
  --url "https://gitlab.example.com/api/v4/groups/{group_id}/ssh_certificates/{cert_id}"`, status: 204},

	// GitHub: REST API endpoints for SSH signing keys. curl -d sends the
	// JSON body with a form content type, which GitHub reads as JSON.
	{doc: docGitHub, section: "Create a SSH signing key for the authenticated user", request: `curl -L \
-X POST \
-H "Accept: application/vnd.github+json" \
-H "Authorization: Bearer <YOUR-TOKEN>" \
-H "X-GitHub-Api-Version: 2022-11-28" \
http(s)://HOSTNAME/api/v3/user/ssh_signing_keys \
-d '{"key":"2Sg8iYjAxxmI2LvUXpJjkYrMxURPc8r+dB7TJyvv1234","title":"ssh-rsa AAAAB3NzaC1yc2EAAA"}'`, status: 201, as: "object", response: `{
"key": "2Sg8iYjAxxmI2LvUXpJjkYrMxURPc8r+dB7TJyvv1234",
"id": 2,
"url": "https://HOSTNAME/user/keys/2",
"title": "ssh-rsa AAAAB3NzaC1yc2EAAA",
"created_at": "2020-06-11T21:31:57Z"
}`},
	{doc: docGitHub, section: "List SSH signing keys for the authenticated user", request: `curl -L \
-H "Accept: application/vnd.github+json" \
-H "Authorization: Bearer <YOUR-TOKEN>" \
-H "X-GitHub-Api-Version: 2022-11-28" \
http(s)://HOSTNAME/api/v3/user/ssh_signing_keys`, status: 200, as: "list", response: `[
{
"key": "2Sg8iYjAxxmI2LvUXpJjkYrMxURPc8r+dB7TJyvv1234",
"id": 2,
"url": "https://HOSTNAME/user/keys/2",
"title": "ssh-rsa AAAAB3NzaC1yc2EAAA",
"created_at": "2020-06-11T21:31:57Z"
},
{
"key": "2Sg8iYjAxxmI2LvUXpJjkYrMxURPc8r+dB7TJy931234",
"id": 3,
"url": "https://HOSTNAME/user/keys/3",
"title": "ssh-rsa AAAAB3NzaC1yc2EAAB",
"created_at": "2020-07-11T21:31:57Z"
}
]`},
	{doc: docGitHub, section: "Get an SSH signing key for the authenticated user", request: `curl -L \
-H "Accept: application/vnd.github+json" \
-H "Authorization: Bearer <YOUR-TOKEN>" \
-H "X-GitHub-Api-Version: 2022-11-28" \
http(s)://HOSTNAME/api/v3/user/ssh_signing_keys/SSH_SIGNING_KEY_ID`, status: 200, as: "object", response: `{
"key": "2Sg8iYjAxxmI2LvUXpJjkYrMxURPc8r+dB7TJyvv1234",
"id": 2,
"url": "https://HOSTNAME/user/keys/2",
"title": "ssh-rsa AAAAB3NzaC1yc2EAAA",
"created_at": "2020-06-11T21:31:57Z"
}`},
	{doc: docGitHub, section: "List SSH signing keys for a user", request: `curl -L \
-H "Accept: application/vnd.github+json" \
-H "Authorization: Bearer <YOUR-TOKEN>" \
-H "X-GitHub-Api-Version: 2022-11-28" \
http(s)://HOSTNAME/api/v3/users/USERNAME/ssh_signing_keys`, status: 200, as: "list", response: `[
{
"key": "2Sg8iYjAxxmI2LvUXpJjkYrMxURPc8r+dB7TJyvv1234",
"id": 2,
"url": "https://HOSTNAME/user/keys/2",
"title": "ssh-rsa AAAAB3NzaC1yc2EAAA",
"created_at": "2020-06-11T21:31:57Z"
}
]`},
	{doc: docGitHub, section: "Delete an SSH signing key for the authenticated user", request: `curl -L \
-X DELETE \
-H "Accept: application/vnd.github+json" \
-H "Authorization: Bearer <YOUR-TOKEN>" \
-H "X-GitHub-Api-Version: 2022-11-28" \
http(s)://HOSTNAME/api/v3/user/ssh_signing_keys/SSH_SIGNING_KEY_ID`, status: 204},
}

var (
	gitlabTimeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
	githubTimeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
)

// shapeDiff lists where got differs in shape from the document's want:
// a field it lacks, another JSON type, another timestamp layout.
func shapeDiff(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: an object in the document, %T here", path, got)}
		}
		var out []string
		names := make([]string, 0, len(w))
		for k := range w {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			gv, ok := g[k]
			if !ok {
				out = append(out, fmt.Sprintf("%s.%s: missing", path, k))
				continue
			}
			out = append(out, shapeDiff(path+"."+k, w[k], gv)...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: an array in the document, %T here", path, got)}
		}
		if len(w) > 0 && len(g) == 0 {
			return []string{path + ": empty, the document shows elements"}
		}
		var out []string
		for i, gv := range g {
			if len(w) > 0 {
				out = append(out, shapeDiff(fmt.Sprintf("%s[%d]", path, i), w[0], gv)...)
			}
		}
		return out
	case string:
		g, ok := got.(string)
		if !ok {
			return []string{fmt.Sprintf("%s: a string in the document, %T here", path, got)}
		}
		for _, re := range []*regexp.Regexp{gitlabTimeRE, githubTimeRE} {
			if re.MatchString(w) && !re.MatchString(g) {
				return []string{fmt.Sprintf("%s: %q is not in the document's layout (%q)", path, g, w)}
			}
		}
	case float64:
		if _, ok := got.(float64); !ok {
			return []string{fmt.Sprintf("%s: a number in the document, %T here", path, got)}
		}
	case bool:
		if _, ok := got.(bool); !ok {
			return []string{fmt.Sprintf("%s: a boolean in the document, %T here", path, got)}
		}
	}
	return nil
}

// TestSeedExamples runs every example request of the seed documents with
// the real curl (see seedExamples).
func TestSeedExamples(t *testing.T) {
	t.Parallel()
	requireBinaries(t, "curl", "sh")
	e := newEnv(t)
	alice, token := e.newUser(t, "alice")
	s := newSigTools(t)

	// What the examples address: alice's keys, GPG keys, a group she owns
	// with a CA. Keys that the examples add are made here too.
	key := func(title string) (int64, string) {
		line, _ := newKey(t, "alice@laptop")
		r := e.do(t, http.MethodPost, "/api/v4/user/keys", token, map[string]any{"title": title, "key": line})
		expect(t, "add "+title, r, http.StatusCreated)
		return idOf(t, r.Object(t)), line
	}
	keyID, _ := key("Public key")
	keyID2, _ := key("Another Public key")
	newLine, _ := newKey(t, "alice@new")
	newLine2, _ := newKey(t, "alice@new2")
	gpg := func() (int64, string) {
		_, armored := newGPGEntity(t, "Alice", "alice@example.com")
		r := e.do(t, http.MethodPost, "/api/v4/user/gpg_keys", token, map[string]any{"key": armored})
		expect(t, "add GPG key", r, http.StatusCreated)
		return idOf(t, r.Object(t)), armored
	}
	gpgID, _ := gpg()
	gpgID2, _ := gpg()
	_, gpgNew := newGPGEntity(t, "Alice", "alice@example.com")
	_, gpgNew2 := newGPGEntity(t, "Alice", "alice@example.com")
	r := e.do(t, http.MethodPost, "/api/v4/groups", token, map[string]any{"name": "Acme", "path": "acme"})
	expect(t, "create group", r, http.StatusCreated)
	groupID := idOf(t, r.Object(t))
	r = e.do(t, http.MethodPost, "/api/v4/groups/"+itoa(groupID)+"/ssh_certificates", token, map[string]any{"title": "SSH Title 1", "key": rsaKeyLine(t, 2048)})
	expect(t, "add CA", r, http.StatusCreated)
	certID := idOf(t, r.Object(t))
	caFields := strings.Fields(rsaKeyLine(t, 2048))
	signingLine, _ := newKey(t, "alice@signing")
	var signingKeyID string

	base := e.srv.URL
	for i, ex := range seedExamples {
		name := ex.doc + ": " + ex.section
		vars := map[string]string{
			"<your_access_token>": token, "<admin_token>": adminSecret, "<YOUR-TOKEN>": token,
			"https://gitlab.example.com": base, "https://primary.example.com": base, "http(s)://HOSTNAME": base,
			"{user_id}": itoa(alice.ID), "{key_id}": itoa(keyID), "{key_id_2}": itoa(keyID2),
			"{gpg_key_id}": itoa(gpgID), "{gpg_key_id_2}": itoa(gpgID2), "{group_id}": itoa(groupID), "{cert_id}": itoa(certID),
			"<SSH_KEY>": newLine, "<SSH_KEY_2>": newLine2, "<PGP_PUBLIC_KEY_BLOCK>": gpgNew, "<PGP_PUBLIC_KEY_BLOCK_2>": gpgNew2,
			"{expires_at}": e.clock.Now().AddDate(1, 0, 0).UTC().Format("2006-01-02T15:04:05.000Z"),
			"REDACTED":     url.QueryEscape(caFields[1]),
			`"key":"2Sg8iYjAxxmI2LvUXpJjkYrMxURPc8r+dB7TJyvv1234"`: `"key":"` + signingLine + `"`,
			"SSH_SIGNING_KEY_ID": signingKeyID, "USERNAME": alice.Username,
		}
		cmd := ex.request
		for k, v := range vars {
			cmd = strings.ReplaceAll(cmd, k, v)
		}
		bodyFile := filepath.Join(s.dir, "body"+strconv.Itoa(i))
		out, ok := s.run(t, "", nil, nil, "sh", "-c", cmd+" -sS -o "+bodyFile+" -w '%{http_code}'")
		if !ok {
			t.Fatalf("%s: curl failed: %s\n%s", name, out, cmd)
		}
		body, _ := os.ReadFile(bodyFile)
		if code, _ := strconv.Atoi(out); code != ex.status {
			t.Errorf("%s: status %s, the document's %d; body %s", name, out, ex.status, body)
			continue
		}
		if ex.as == "" {
			if len(strings.TrimSpace(string(body))) != 0 {
				t.Errorf("%s: body %s, the document shows none", name, body)
			}
			continue
		}
		var got any
		if err := json.Unmarshal(body, &got); err != nil {
			t.Errorf("%s: body is not JSON: %s", name, body)
			continue
		}
		if ex.response != "" {
			var want any
			if err := json.Unmarshal([]byte(ex.response), &want); err != nil {
				t.Fatalf("%s: the held example response is not JSON: %v", name, err)
			}
			if ex.as == "element" {
				want = want.([]any)[0]
			}
			for _, d := range shapeDiff("", want, got) {
				t.Errorf("%s: %s\nkeygate answered: %s", name, d, body)
			}
		} else if _, isList := got.([]any); isList != (ex.as == "list") {
			t.Errorf("%s: answered %s, want a %s", name, body, ex.as)
		}
		// The duplicate key error says what GitLab's document says.
		if ex.status == http.StatusBadRequest {
			m, _ := got.(map[string]any)["message"].(map[string]any)
			for _, f := range []string{"fingerprint", "fingerprint_sha256", "key"} {
				if l, _ := m[f].([]any); len(l) != 1 || l[0] != "has already been taken" {
					t.Errorf("%s: message.%s = %v, want [has already been taken]", name, f, m[f])
				}
			}
		}
		// GitHub's url is the key's own address on this API.
		if ex.doc == docGitHub {
			for _, k := range asList(got) {
				u, _ := k["url"].(string)
				if want := base + "/api/v3/user/ssh_signing_keys/" + strconv.FormatFloat(k["id"].(float64), 'f', -1, 64); u != want {
					t.Errorf("%s: url %q, want %q", name, u, want)
				}
				if r := e.gh(t, http.MethodGet, strings.TrimPrefix(u, base), token, nil); r.Code != http.StatusOK {
					t.Errorf("%s: GET url %s: %d", name, u, r.Code)
				}
			}
			if ex.status == http.StatusCreated {
				signingKeyID = strconv.FormatFloat(got.(map[string]any)["id"].(float64), 'f', -1, 64)
				if got.(map[string]any)["title"] != "ssh-rsa AAAAB3NzaC1yc2EAAA" {
					t.Errorf("%s: the JSON body sent as a form was not read as JSON: %s", name, body)
				}
			}
		}
	}
}

// asList is a decoded object, or each object of a decoded array.
func asList(v any) []map[string]any {
	switch x := v.(type) {
	case map[string]any:
		return []map[string]any{x}
	case []any:
		var out []map[string]any
		for _, e := range x {
			if m, ok := e.(map[string]any); ok {
				out = append(out, m)
			}
		}
		return out
	}
	return nil
}

// TestFingerprintsAsPasted: wherever a fingerprint is a parameter (GET
// /keys?fingerprint=, a certificate revocation's fingerprint), it is
// accepted in the forms a person pastes with curl: ssh-keygen -l's output
// sent unencoded (its "+" arrives as a space), without "SHA256:", padded,
// the whole ssh-keygen -l line, and for /keys MD5 as GitLab takes it.
func TestFingerprintsAsPasted(t *testing.T) {
	t.Parallel()
	requireBinaries(t, "curl", "sh", "ssh-keygen")
	e := newEnv(t)
	alice, token := e.newUser(t, "alice")
	s := newSigTools(t)
	// Keys whose SHA-256 fingerprint has a "+": about half of all keys.
	plusKey := func(name string) (string, string) {
		for {
			line, pub := newKey(t, name)
			if fp := gossh.FingerprintSHA256(pub); strings.Contains(fp, "+") {
				path := filepath.Join(s.dir, name+".pub")
				if err := os.WriteFile(path, []byte(line+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return line, path
			}
		}
	}
	line, pubPath := plusKey("alice")
	r := e.do(t, http.MethodPost, "/api/v4/users/"+itoa(alice.ID)+"/keys", adminSecret, map[string]any{"title": "k", "key": line})
	expect(t, "add key", r, http.StatusCreated)
	keyID := idOf(t, r.Object(t))
	sh := func(cmd string) (string, string) {
		t.Helper()
		bodyFile := filepath.Join(s.dir, "body")
		out, ok := s.run(t, "", []string{"BASE=" + e.srv.URL, "TOKEN=" + token, "ADMIN=" + adminSecret, "PUB=" + pubPath}, nil,
			"sh", "-c", cmd+" -sS -o "+bodyFile+" -w '%{http_code}'")
		if !ok {
			t.Fatalf("%s: %s", cmd, out)
		}
		body, _ := os.ReadFile(bodyFile)
		return out, string(body)
	}
	for _, c := range []struct{ name, cmd string }{
		{"unencoded, + as a space", `curl -H "PRIVATE-TOKEN: $ADMIN" "$BASE/api/v4/keys?fingerprint=$(ssh-keygen -lf "$PUB" | cut -d' ' -f2)"`},
		{"without the prefix", `curl -H "PRIVATE-TOKEN: $ADMIN" "$BASE/api/v4/keys?fingerprint=$(ssh-keygen -lf "$PUB" | cut -d' ' -f2 | cut -d: -f2)"`},
		{"padded", `curl -H "PRIVATE-TOKEN: $ADMIN" -G --data-urlencode "fingerprint=$(ssh-keygen -lf "$PUB" | cut -d' ' -f2)=" "$BASE/api/v4/keys"`},
		{"the whole ssh-keygen -l line", `curl -H "PRIVATE-TOKEN: $ADMIN" -G --data-urlencode "fingerprint=$(ssh-keygen -lf "$PUB")" "$BASE/api/v4/keys"`},
		{"MD5", `curl -H "PRIVATE-TOKEN: $ADMIN" "$BASE/api/v4/keys?fingerprint=$(ssh-keygen -E md5 -lf "$PUB" | cut -d' ' -f2)"`},
		{"MD5 without colons or prefix", `curl -H "PRIVATE-TOKEN: $ADMIN" "$BASE/api/v4/keys?fingerprint=$(ssh-keygen -E md5 -lf "$PUB" | cut -d' ' -f2 | cut -d: -f2- | tr -d :)"`},
	} {
		code, body := sh(c.cmd)
		if code != "200" || !strings.Contains(body, `"id":`+itoa(keyID)+`,`) {
			t.Errorf("GET /keys, %s: %s %s", c.name, code, body)
		}
	}
	if code, _ := sh(`curl -H "PRIVATE-TOKEN: $ADMIN" "$BASE/api/v4/keys?fingerprint=SHA256:nope"`); code != "404" {
		t.Errorf("GET /keys with a fingerprint of no key: %s, want 404", code)
	}

	// Revocations: the issue's own example, `-d fingerprint=$(…)`.
	r = e.do(t, http.MethodPost, "/api/v4/groups", token, map[string]any{"name": "Acme", "path": "acme"})
	expect(t, "create group", r, http.StatusCreated)
	groupID := idOf(t, r.Object(t))
	caLine, _ := newKey(t, "ca")
	r = e.do(t, http.MethodPost, "/api/v4/groups/"+itoa(groupID)+"/ssh_certificates", token, map[string]any{"title": "CA", "key": caLine})
	expect(t, "add CA", r, http.StatusCreated)
	revocations := "$BASE/api/v4/groups/" + itoa(groupID) + "/ssh_certificates/" + itoa(idOf(t, r.Object(t))) + "/revocations"
	for i, c := range []struct{ name, cmd string }{
		{"-d fingerprint=$(…), + as a space", `curl -H "PRIVATE-TOKEN: $TOKEN" -d fingerprint=$(ssh-keygen -lf "$PUB" | cut -d' ' -f2) ` + revocations},
		{"without the prefix", `curl -H "PRIVATE-TOKEN: $TOKEN" -d fingerprint=$(ssh-keygen -lf "$PUB" | cut -d' ' -f2 | cut -d: -f2) ` + revocations},
		{"padded", `curl -H "PRIVATE-TOKEN: $TOKEN" --data-urlencode "fingerprint=$(ssh-keygen -lf "$PUB" | cut -d' ' -f2)=" ` + revocations},
		{"the whole ssh-keygen -l line", `curl -H "PRIVATE-TOKEN: $TOKEN" --data-urlencode "fingerprint=$(ssh-keygen -lf "$PUB")" ` + revocations},
	} {
		_, path := plusKey("cert" + strconv.Itoa(i))
		cmd := strings.ReplaceAll(c.cmd, `"$PUB"`, `"`+path+`"`)
		code, body := sh(cmd)
		out, _ := s.run(t, "", nil, nil, "ssh-keygen", "-lf", path)
		want := strings.Fields(out)[1]
		if code != "201" || !strings.Contains(body, `"fingerprint":"`+want+`"`) {
			t.Errorf("revocation, %s: %s %s; want 201 with %s", c.name, code, body, want)
		}
	}
	code, body := sh(`curl -H "PRIVATE-TOKEN: $TOKEN" -d fingerprint=$(ssh-keygen -E md5 -lf "$PUB" | cut -d' ' -f2) ` + revocations)
	if code != "400" || !strings.Contains(body, `must be a SHA-256 fingerprint`) {
		t.Errorf("revocation by MD5: %s %s, want 400 asking for SHA-256", code, body)
	}
}
