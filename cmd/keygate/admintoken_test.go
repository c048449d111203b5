package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdminTokenOnlyOnFirstStart: KEYGATE_ADMIN_TOKEN makes root on a
// keystore's first start, and a restart with it set undoes nothing an
// admin did since (the token revoked, root blocked); keygate
// reset-admin-token is the explicit way back, with the configured token
// or a generated one, and works while keygate serves.
func TestAdminTokenOnlyOnFirstStart(t *testing.T) {
	t.Parallel()
	token := randomToken("first-start-admin-token-")
	dir := t.TempDir()
	env := []string{"KEYGATE_ADMIN_TOKEN=" + token}

	p := startServe(t, serveOpts{DataDir: dir, Env: env})
	rootID := requireRoot(t, p, token)
	// A second admin revokes the bootstrap token and blocks root.
	bossID := id(t, p.must("POST", "/api/v4/users", token, map[string]any{
		"username": "boss", "email": "boss@example.com", "admin": true}, 201).Object(t))
	boss := p.must("POST", fmt.Sprintf("/api/v4/users/%d/personal_access_tokens", bossID), token,
		map[string]any{"name": "boss", "scopes": []string{"api"}}, 201).Object(t)["token"].(string)
	bootID := id(t, p.must("GET", "/api/v4/personal_access_tokens/self", token, nil, 200).Object(t))
	p.must("DELETE", fmt.Sprintf("/api/v4/personal_access_tokens/%d", bootID), boss, nil, 204)
	p.must("POST", fmt.Sprintf("/api/v4/users/%d/block", rootID), boss, nil, 201)
	p.must("GET", "/api/v4/user", token, nil, 401)
	p.stop()

	// Restarted with the same environment: still revoked, still blocked.
	p = startServe(t, serveOpts{DataDir: dir, Env: env})
	p.must("GET", "/api/v4/user", token, nil, 401)
	if st := p.must("GET", fmt.Sprintf("/api/v4/users/%d", rootID), boss, nil, 200).Object(t)["state"]; st != "blocked" {
		t.Fatalf("after a restart with KEYGATE_ADMIN_TOKEN, root is %v; want still blocked", st)
	}

	// The explicit reset, with the configured token, while keygate serves.
	code, out, errOut := runKeygate(t, env, "reset-admin-token", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "root is an active admin") || strings.Contains(out+errOut, token) {
		t.Fatalf("reset-admin-token: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if got := requireRoot(t, p, token); got != rootID {
		t.Fatalf("after reset-admin-token, the token is user %d's, want root %d", got, rootID)
	}
	if _, err := os.Stat(filepath.Join(dir, "admin-token")); !os.IsNotExist(err) {
		t.Fatalf("reset-admin-token with KEYGATE_ADMIN_TOKEN wrote admin-token (stat: %v)", err)
	}
	p.stop()
	if !strings.Contains(p.Stderr.String(), "KEYGATE_ADMIN_TOKEN is not applied") {
		t.Errorf("the restart did not warn that KEYGATE_ADMIN_TOKEN was not applied; stderr:\n%s", p.Stderr)
	}

	// Without KEYGATE_ADMIN_TOKEN: a new token, printed once and saved.
	p = startServe(t, serveOpts{DataDir: dir})
	code, out, errOut = runKeygate(t, nil, "reset-admin-token", "--data-dir", dir)
	printed := generatedToken.FindAllString(out, -1)
	if code != 0 || len(printed) != 1 {
		t.Fatalf("reset-admin-token without KEYGATE_ADMIN_TOKEN: exit %d, tokens %q\nstdout: %s\nstderr: %s", code, printed, out, errOut)
	}
	file, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil || strings.TrimSpace(string(file)) != printed[0] {
		t.Fatalf("admin-token holds %q (%v), want the printed %q", file, err, printed[0])
	}
	if fi, err := os.Stat(filepath.Join(dir, "admin-token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin-token: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	requireRoot(t, p, printed[0])
	requireRoot(t, p, token) // the earlier token stays valid
	p.stop()

	// An empty keystore: nothing to reset.
	if code, _, errOut := runKeygate(t, nil, "reset-admin-token", "--data-dir", t.TempDir()); code == 0 || !strings.Contains(errOut, "no keystore") {
		t.Fatalf("reset-admin-token on no keystore: exit %d, stderr %s", code, errOut)
	}
}
