package main

import (
	"strconv"
	"strings"
	"testing"
)

// TestEnterpriseUsersUpgrade: a deployment whose certificate users predate
// enterprise users neither keeps the unsafe grant nor breaks silently:
// keygate serve warns at start naming the CA and its members, `keygate
// enterprise-users` lists them, and --assign makes each member of exactly
// one CA-bearing top-level group its enterprise user (a member of two is
// left for an admin).
func TestEnterpriseUsersUpgrade(t *testing.T) {
	t.Parallel()
	token := randomToken("ent-admin-")
	dataDir := t.TempDir()
	p := startServe(t, serveOpts{DataDir: dataDir, Env: []string{"KEYGATE_ADMIN_TOKEN=" + token}})
	uid := func(name string) int64 {
		return id(t, p.must("POST", "/api/v4/users", token, map[string]any{"username": name, "email": name + "@example.com"}, 201).Object(t))
	}
	alice, bob := uid("alice"), uid("bob")
	eng := id(t, p.must("POST", "/api/v4/groups", token, map[string]any{"name": "eng", "path": "eng"}, 201).Object(t))
	ops := id(t, p.must("POST", "/api/v4/groups", token, map[string]any{"name": "ops", "path": "ops"}, 201).Object(t))
	for _, m := range [][2]int64{{eng, alice}, {eng, bob}, {ops, bob}} {
		p.must("POST", "/api/v4/groups/"+itoa64(m[0])+"/members", token, map[string]any{"user_id": m[1], "access_level": 30}, 201)
	}
	for _, g := range []int64{eng, ops} {
		p.must("POST", "/api/v4/groups/"+itoa64(g)+"/ssh_certificates", token, map[string]any{"title": "ca", "key": sshKeyLine("")}, 201)
	}
	p.stop()

	p2 := startServe(t, serveOpts{DataDir: dataDir, Env: []string{"KEYGATE_ADMIN_TOKEN=" + token}})
	log := p2.Stderr.String()
	if !strings.Contains(log, "group CA certificates are refused for members who are not enterprise users") ||
		!strings.Contains(log, "group=eng") || !strings.Contains(log, "alice") {
		t.Fatalf("no start warning naming eng's CA and alice:\n%s", log)
	}
	p2.stop()

	env := []string{"KEYGATE_DATA_DIR=" + dataDir}
	code, out, stderr := runKeygate(t, env, "enterprise-users")
	if code != 0 || !strings.Contains(out, "of eng") || !strings.Contains(out, "alice, bob") {
		t.Fatalf("enterprise-users: %d %q %s", code, out, stderr)
	}
	code, out, stderr = runKeygate(t, env, "enterprise-users", "--assign")
	if code != 0 || !strings.Contains(out, "assigned alice") || strings.Contains(out, "assigned bob") || !strings.Contains(out, "1 users assigned") {
		t.Fatalf("enterprise-users --assign: %d %q %s", code, out, stderr)
	}
	if !strings.Contains(out, "refused for bob") {
		t.Fatalf("bob (in two CA-bearing groups) is not listed as still refused: %q", out)
	}
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }
