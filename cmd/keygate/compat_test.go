package main

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The client compatibility suite: real admin clients against a real
// keygate serving HTTPS with its own certificate (--tls-cert). .ci/run
// installs the clients (Debian python3-gitlab, gitlab-cli, gh); run it
// alone with
//
//	go test ./cmd/keygate -run TestCompat -v

// compatServer starts keygate over TLS and returns it, its admin token and
// the CA file clients trust.
func compatServer(t *testing.T) (*proc, string, string) {
	t.Helper()
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.pem")
	ca.issue(t, "keygate-compat", certFile, keyFile)
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	token := randomToken("kgadmin-")
	p := startServe(t, serveOpts{Env: []string{"KEYGATE_ADMIN_TOKEN=" + token},
		Args: []string{"--tls-cert", certFile, "--tls-key", keyFile}, TLS: &tls.Config{RootCAs: ca.pool}})
	return p, token, caFile
}

// systemPython is Debian's python3 (where python3-gitlab is installed),
// not whatever python3 a version manager puts first on PATH.
func systemPython(t *testing.T, module string) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(py); err == nil && exec.Command(path, "-c", "import "+module).Run() == nil {
			return path
		}
	}
	t.Skipf("python3 with the %s module not installed (Debian python3-gitlab; .ci/run installs it)", module)
	return ""
}

func TestCompatPythonGitlab(t *testing.T) {
	t.Parallel()
	py := systemPython(t, "gitlab")
	p, token, caFile := compatServer(t)
	dir := t.TempDir()
	var keys []string
	for i := 0; i < 4; i++ {
		keys = append(keys, sshKeyLine("compat"))
	}
	keysFile, gpgFile := filepath.Join(dir, "keys"), filepath.Join(dir, "gpg.asc")
	os.WriteFile(keysFile, []byte(strings.Join(keys, "\n")), 0o600)
	os.WriteFile(gpgFile, []byte(newGPGKey(t, "User 3", "u03@example.com")), 0o600)
	cmd := exec.Command(py, "../../compat/python_gitlab.py")
	cmd.Env = append(os.Environ(), "KEYGATE_URL="+p.URL(""), "KEYGATE_TOKEN="+token, "KEYGATE_CA="+caFile,
		"KEYGATE_SSH_KEYS="+keysFile, "KEYGATE_GPG_KEY="+gpgFile, "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python-gitlab suite: %v\n%s\nkeygate stderr:\n%s", err, out, p.Stderr)
	}
	if !strings.Contains(string(out), "checks passed") {
		t.Fatalf("python-gitlab suite did not finish:\n%s", out)
	}
	t.Log(strings.TrimSpace(string(out)))
}

// TestCompatGH drives GitHub's gh against keygate's /api/v3 over HTTPS:
// auth login --with-token (which checks GET /api/v3/ and X-OAuth-Scopes),
// ssh-key add/list/delete, and api --paginate (which follows Link).
func TestCompatGH(t *testing.T) {
	t.Parallel()
	gh, err := exec.LookPath("gh")
	if err != nil {
		t.Skip("gh not installed (Debian gh; .ci/run installs it)")
	}
	p, admin, caFile := compatServer(t)
	// gh talks to https://HOST/api/v3/ on port 443 and refuses HOST:PORT, so
	// it reaches keygate as keygate.test through an HTTPS CONNECT proxy
	// (HTTPS_PROXY) that tunnels to keygate's port: TLS end to end.
	host := "keygate.test"
	proxy := connectProxy(t, p.HTTPAddr)
	alice := p.must("POST", "/api/v4/users", admin, map[string]any{"username": "alice", "email": "alice@example.com"}, 201).Object(t)
	tok := p.must("POST", "/api/v4/users/"+strconv.FormatInt(id(t, alice), 10)+"/personal_access_tokens", admin,
		map[string]any{"name": "gh", "scopes": []string{"api"}}, 201).Object(t)["token"].(string)
	dir := t.TempDir()
	env := append(os.Environ(), "GH_CONFIG_DIR="+filepath.Join(dir, "gh"), "SSL_CERT_FILE="+caFile, "GH_HOST="+host, "HTTPS_PROXY=http://"+proxy, "https_proxy=http://"+proxy, "NO_PROXY=", "no_proxy=",
		"GH_NO_UPDATE_NOTIFIER=1", "GH_PROMPT_DISABLED=1", "NO_COLOR=1", "GH_TOKEN=", "GITHUB_TOKEN=", "GH_ENTERPRISE_TOKEN=", "GITHUB_ENTERPRISE_TOKEN=")
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(gh, args...)
		cmd.Env = env
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("gh %s: %v\n%s\nkeygate stderr:\n%s", strings.Join(args, " "), err, out, p.Stderr)
		}
		return string(out)
	}
	checks := 0
	run(tok+"\n", "auth", "login", "--hostname", host, "--with-token")
	if out := run("", "auth", "status", "--hostname", host); !strings.Contains(out, "alice") {
		t.Errorf("gh auth status: %s", out)
	}
	checks++
	var lines []string
	for i := 0; i < 7; i++ {
		line := sshKeyLine("")
		lines = append(lines, line)
		f := filepath.Join(dir, "k"+strconv.Itoa(i)+".pub")
		os.WriteFile(f, []byte(line+"\n"), 0o600)
		run("", "ssh-key", "add", f, "--title", "key-"+strconv.Itoa(i))
	}
	checks++
	out := run("", "ssh-key", "list")
	for i := 0; i < 7; i++ {
		if !strings.Contains(out, "key-"+strconv.Itoa(i)) {
			t.Errorf("gh ssh-key list lacks key-%d:\n%s", i, out)
		}
	}
	checks++
	// --paginate follows the https Link headers page by page.
	out = run("", "api", "--hostname", host, "--paginate", "user/keys?per_page=2", "--jq", ".[].title")
	if got := strings.Fields(out); len(got) != 7 {
		t.Errorf("gh api --paginate user/keys: %q, want 7 titles", got)
	}
	checks++
	keys := p.must("GET", "/api/v4/user/keys?per_page=100", tok, nil, 200)
	var listed []map[string]any
	keys.JSON(t, &listed)
	first := strconv.FormatInt(id(t, listed[0]), 10)
	run("", "ssh-key", "delete", first, "--yes")
	if out := run("", "ssh-key", "list"); strings.Contains(out, listed[0]["title"].(string)+"\t") {
		t.Errorf("gh ssh-key delete left the key:\n%s", out)
	}
	checks++
	// A refused write shows GitHub's message, not "Unknown error".
	ro := p.must("POST", "/api/v4/users/"+strconv.FormatInt(id(t, alice), 10)+"/personal_access_tokens", admin,
		map[string]any{"name": "ro", "scopes": []string{"read_api"}}, 201).Object(t)["token"].(string)
	cmd := exec.Command(gh, "api", "--hostname", host, "-X", "POST", "user/keys", "-f", "title=x", "-f", "key="+sshKeyLine(""))
	cmd.Env = append(env, "GH_ENTERPRISE_TOKEN="+ro)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "read_api") {
		t.Errorf("gh api POST with a read_api token: %v\n%s", err, out)
	}
	checks++
	t.Logf("gh: %d checks passed", checks)
}

// connectProxy is an HTTP CONNECT proxy that tunnels every request to
// target; it returns its address.
func connectProxy(t *testing.T, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		up, err := net.Dial("tcp", target)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		hj, ok := w.(http.Hijacker)
		if !ok {
			up.Close()
			return
		}
		w.WriteHeader(http.StatusOK)
		c, buf, err := hj.Hijack()
		if err != nil {
			up.Close()
			return
		}
		go func() { io.Copy(up, buf); up.(*net.TCPConn).CloseWrite() }()
		go func() { io.Copy(c, up); c.Close(); up.Close() }()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestCompatGitlabCLI drives the python-gitlab CLI (Debian gitlab-cli)
// with a config file pointing at keygate's HTTPS.
func TestCompatGitlabCLI(t *testing.T) {
	t.Parallel()
	cli, err := exec.LookPath("python-gitlab")
	if err != nil {
		t.Skip("python-gitlab CLI not installed (Debian gitlab-cli; .ci/run installs it)")
	}
	p, admin, caFile := compatServer(t)
	cfg := filepath.Join(t.TempDir(), "python-gitlab.cfg")
	os.WriteFile(cfg, []byte("[global]\ndefault = keygate\nssl_verify = "+caFile+"\n\n[keygate]\nurl = "+p.URL("")+
		"\nprivate_token = "+admin+"\napi_version = 4\n"), 0o600)
	run := func(wantOK bool, args ...string) string {
		t.Helper()
		cmd := exec.Command(cli, append([]string{"-c", cfg, "-o", "json"}, args...)...)
		cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "PYTHONWARNINGS=error::UserWarning")
		out, err := cmd.CombinedOutput()
		if (err == nil) != wantOK {
			t.Fatalf("python-gitlab %s: %v\n%s\nkeygate stderr:\n%s", strings.Join(args, " "), err, out, p.Stderr)
		}
		return string(out)
	}
	jsonOf := func(s string, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(s), v); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, s)
		}
	}
	checks := 0
	var u map[string]any
	jsonOf(run(true, "user", "create", "--username", "carol", "--email", "carol@example.com", "--name", "Carol"), &u)
	uid := strconv.FormatInt(int64(u["id"].(float64)), 10)
	checks++
	key := sshKeyLine("")
	run(true, "user-key", "create", "--user-id", uid, "--title", "laptop", "--key", key)
	var keys []map[string]any
	jsonOf(run(true, "user-key", "list", "--user-id", uid), &keys)
	if len(keys) != 1 || keys[0]["title"] != "laptop" {
		t.Errorf("user-key list = %v", keys)
	}
	checks++
	for i := 0; i < 8; i++ {
		run(true, "user", "create", "--username", "bulk"+strconv.Itoa(i), "--email", "bulk"+strconv.Itoa(i)+"@example.com")
	}
	var users []map[string]any
	jsonOf(run(true, "user", "list", "--get-all", "--per-page", "3"), &users)
	if len(users) != 10 {
		t.Errorf("user list --get-all: %d users, want 10", len(users))
	}
	checks++
	var blocked []map[string]any
	run(true, "user", "block", "--id", uid)
	jsonOf(run(true, "user", "list", "--blocked", "true"), &blocked)
	if len(blocked) != 1 || blocked[0]["username"] != "carol" {
		t.Errorf("user list --blocked true = %v", blocked)
	}
	checks++
	var g map[string]any
	jsonOf(run(true, "group", "create", "--name", "Ops", "--path", "ops"), &g)
	gid := strconv.FormatInt(int64(g["id"].(float64)), 10)
	run(true, "group-member", "create", "--group-id", gid, "--user-id", uid, "--access-level", "30")
	var members []map[string]any
	jsonOf(run(true, "group-member-all", "list", "--group-id", gid), &members)
	if len(members) != 2 {
		t.Errorf("group-member-all list = %v", members)
	}
	checks++
	if out := run(false, "user", "get", "--id", "999999"); !strings.Contains(out, "404") {
		t.Errorf("user get of a missing user: %s", out)
	}
	checks++
	t.Logf("python-gitlab CLI: %d checks passed", checks)
}

// TestCompatJS runs compat/js/suite.mjs: @gitbeaker/rest and
// @octokit/rest, pinned in compat/js/package-lock.json (`npm ci` there;
// .ci/run does it).
func TestCompatJS(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed (.ci/run installs nodejs)")
	}
	if _, err := os.Stat("../../compat/js/node_modules/@octokit/rest"); err != nil {
		t.Skip("compat/js/node_modules missing: run `npm ci` in compat/js (.ci/run does)")
	}
	p, admin, caFile := compatServer(t)
	var keys []string
	for i := 0; i < 10; i++ {
		keys = append(keys, sshKeyLine(""))
	}
	dir := t.TempDir()
	keysFile, gpgFile := filepath.Join(dir, "keys"), filepath.Join(dir, "gpg.asc")
	os.WriteFile(keysFile, []byte(strings.Join(keys, "\n")), 0o600)
	os.WriteFile(gpgFile, []byte(newGPGKey(t, "Alice", "alice@example.com")), 0o600)
	cmd := exec.Command(node, "suite.mjs")
	cmd.Dir = "../../compat/js"
	cmd.Env = append(os.Environ(), "KEYGATE_URL="+p.URL(""), "KEYGATE_TOKEN="+admin, "KEYGATE_SSH_KEYS="+keysFile, "KEYGATE_GPG_KEY="+gpgFile,
		"NODE_EXTRA_CA_CERTS="+caFile, "NO_PROXY=*", "HTTPS_PROXY=", "https_proxy=")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "checks passed") {
		t.Fatalf("octokit/gitbeaker suite: %v\n%s\nkeygate stderr:\n%s", err, out, p.Stderr)
	}
	t.Log(strings.TrimSpace(string(out)))
}
