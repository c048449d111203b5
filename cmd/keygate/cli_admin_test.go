package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/internal/testutil"
)

// TestAdminCommandLine (issue 21 §6): keygate users|keys|groups|tokens|cas
// against a running keygate over REST, with the token from the data dir's
// admin-token (on the server) or KEYGATE_URL/KEYGATE_TOKEN (anywhere):
// tables by default, --json for scripts, the API's error text on failure.
// What it creates works: the key logs in, the token authenticates, the CA
// is the group's, a blocked user's key no longer logs in.
func TestAdminCommandLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startServe(t, serveOpts{DataDir: dir})
	url := "http://" + p.HTTPAddr
	onServer := []string{"KEYGATE_URL=" + url, "KEYGATE_DATA_DIR=" + dir}
	kg := func(env []string, args ...string) (string, string) {
		t.Helper()
		code, out, stderr := runKeygate(t, env, args...)
		if code != 0 {
			t.Fatalf("keygate %s: exit %d\n%s%s", strings.Join(args, " "), code, out, stderr)
		}
		return out, stderr
	}
	signer := testutil.NewSigner(t)
	keyFile := filepath.Join(t.TempDir(), "alice.pub")
	if err := os.WriteFile(keyFile, append(gossh.MarshalAuthorizedKey(signer.PublicKey())[:len(gossh.MarshalAuthorizedKey(signer.PublicKey()))-1], " alice@laptop\n"...), 0o644); err != nil {
		t.Fatal(err)
	}

	// A table: a header and one row per user.
	out, _ := kg(onServer, "users", "create", "alice", "--email", "alice@example.com", "--name", "Alice Liddell", "--key", keyFile)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "USERNAME") ||
		!strings.Contains(lines[1], "alice") || !strings.Contains(lines[1], "Alice Liddell") || !strings.Contains(lines[1], "active") {
		t.Fatalf("users create printed:\n%s", out)
	}
	if err := sshLogin(t, p.SSHAddr, signer); err != nil {
		t.Fatalf("the key added with --key does not log in: %v", err)
	}

	// --json: the API's objects.
	out, _ = kg(onServer, "users", "list", "--json")
	var users []map[string]any
	if err := json.Unmarshal([]byte(out), &users); err != nil || len(users) != 2 {
		t.Fatalf("users list --json: %v\n%s", err, out)
	}
	out, _ = kg(onServer, "keys", "list", "--user", "alice")
	if !strings.Contains(out, "alice@laptop") || !strings.Contains(out, "ssh-ed25519") {
		t.Fatalf("keys list:\n%s", out)
	}

	// A token, shown once, that authenticates as alice; then from anywhere
	// with KEYGATE_URL/KEYGATE_TOKEN (an admin's token: root's).
	out, _ = kg(onServer, "tokens", "create", "--user", "alice", "--scope", "api", "--name", "laptop", "--json")
	var tk map[string]any
	if err := json.Unmarshal([]byte(out), &tk); err != nil || !generatedToken.MatchString(fmt.Sprint(tk["token"])) {
		t.Fatalf("tokens create --json: %v\n%s", err, out)
	}
	if u := p.must("GET", "/api/v4/user", tk["token"].(string), nil, 200).Object(t); u["username"] != "alice" {
		t.Fatalf("the new token is %v's", u["username"])
	}
	rootToken, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	anywhere := []string{"KEYGATE_URL=" + url, "KEYGATE_TOKEN=" + strings.TrimSpace(string(rootToken)), "KEYGATE_DATA_DIR=" + t.TempDir()}

	out, _ = kg(anywhere, "groups", "create", "eng")
	if !strings.Contains(out, "eng") {
		t.Fatalf("groups create:\n%s", out)
	}
	out, _ = kg(anywhere, "groups", "create", "eng/backend", "--name", "Backend", "--json")
	var sub map[string]any
	if err := json.Unmarshal([]byte(out), &sub); err != nil || sub["full_path"] != "eng/backend" || sub["parent_id"] == nil {
		t.Fatalf("groups create eng/backend: %v\n%s", err, out)
	}
	caFile := filepath.Join(t.TempDir(), "eng_ca.pub")
	os.WriteFile(caFile, []byte(sshKeyLine("eng-ca")+"\n"), 0o644)
	out, _ = kg(anywhere, "cas", "add", "eng", caFile)
	if !strings.Contains(out, "eng-ca") {
		t.Fatalf("cas add:\n%s", out)
	}
	out, _ = kg(anywhere, "cas", "list", "eng", "--json")
	var cas []map[string]any
	if err := json.Unmarshal([]byte(out), &cas); err != nil || len(cas) != 1 {
		t.Fatalf("cas list --json: %v\n%s", err, out)
	}

	// Block: the key stops logging in; unblock: it works again.
	out, _ = kg(anywhere, "users", "block", "alice")
	if !strings.Contains(out, "blocked") {
		t.Fatalf("users block:\n%s", out)
	}
	if err := sshLogin(t, p.SSHAddr, signer); err == nil {
		t.Fatal("a blocked user's key logged in")
	}
	kg(anywhere, "users", "unblock", "alice")
	if err := sshLogin(t, p.SSHAddr, signer); err != nil {
		t.Fatalf("after unblock: %v", err)
	}

	// Failures carry the API's own text, exit 1; a wrong command line exits 2.
	for _, c := range []struct {
		args []string
		env  []string
		code int
		want string
	}{
		{[]string{"users", "create", "alice", "--email", "other@example.com"}, anywhere, 1, "username has already been taken"},
		{[]string{"keys", "add", "--user", "alice", keyFile}, anywhere, 1, "fingerprint_sha256 has already been taken"},
		{[]string{"keys", "add", "--user", "nobody-here", keyFile}, anywhere, 1, "404 User Not Found"},
		{[]string{"cas", "add", "eng/backend", caFile}, anywhere, 1, "403 Forbidden"},
		{[]string{"users", "list"}, []string{"KEYGATE_URL=" + url, "KEYGATE_TOKEN=kgpat-not-a-valid-token-000000000"}, 1, "401 Unauthorized"},
		{[]string{"users", "list"}, []string{"KEYGATE_URL=" + url, "KEYGATE_DATA_DIR=" + t.TempDir()}, 1, "no token: set KEYGATE_TOKEN"},
		{[]string{"users", "create", "bob"}, anywhere, 2, "--email is required"},
		{[]string{"users", "frobnicate"}, anywhere, 2, `unknown command "frobnicate"`},
		{[]string{"tokens", "create", "--user", "alice"}, anywhere, 2, "--scope are required"},
	} {
		code, out, stderr := runKeygate(t, c.env, c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("keygate %s: exit %d, want %d and %q\nstdout: %s\nstderr: %s", strings.Join(c.args, " "), code, c.code, c.want, out, stderr)
		}
	}
	p.stop()
}
