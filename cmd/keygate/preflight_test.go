package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPreflightFailsBeforeChangingAnything: a port clash, a mistyped --db
// or a missing git stop keygate with one clear line, before a data dir,
// an admin token or a database is created.
func TestPreflightFailsBeforeChangingAnything(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })
	busyAddr := busy.Addr().String()
	for _, c := range []struct {
		name     string
		env      []string
		args     []string
		code     int
		stderr   string
		noGit    bool
		makesDir bool
	}{
		{name: "ssh-port-in-use", args: []string{"--ssh-addr", busyAddr, "--http-addr", "127.0.0.1:0"}, code: 1,
			stderr: "--ssh-addr " + busyAddr + ": address already in use"},
		{name: "http-port-in-use", args: []string{"--ssh-addr", "127.0.0.1:0", "--http-addr", busyAddr}, code: 1,
			stderr: "--http-addr " + busyAddr + ": address already in use"},
		{name: "metrics-port-in-use", args: []string{"--ssh-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--metrics-addr", busyAddr}, code: 1,
			stderr: "--metrics-addr " + busyAddr + ": address already in use"},
		{name: "mistyped-db-scheme", args: []string{"--db", "postgress://keygate:secret@db/keygate"}, code: 2,
			stderr: "use postgres://… or postgresql://… for PostgreSQL, sqlite:PATH or file:PATH"},
		{name: "db-env-typo", env: []string{"KEYGATE_DB=postgresql:/db.example/keygate"}, code: 2, stderr: "not a database keygate knows"},
		{name: "no-git", args: []string{"--ssh-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, noGit: true, code: 1,
			stderr: "git not found on PATH"},
		{name: "duration-without-unit", args: []string{"--login-grace-time", "30"}, code: 2, stderr: "durations take a unit: 30s"},
		{name: "unknown-flag", args: []string{"--frobnicate"}, code: 2, stderr: "run 'keygate serve -h' for the flags"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dataDir := filepath.Join(t.TempDir(), "data")
			env := append([]string{"KEYGATE_DATA_DIR=" + dataDir}, c.env...)
			if c.noGit {
				env = append(env, "PATH="+t.TempDir())
			}
			code, _, stderr := runKeygate(t, env, append([]string{"serve"}, c.args...)...)
			if code != c.code || !strings.Contains(stderr, c.stderr) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr, c.code, c.stderr)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") > 2 {
				t.Errorf("more than the error and a pointer:\n%s", stderr)
			}
			if strings.Contains(stderr, "created admin user") || strings.Contains(stderr, "kgpat-") {
				t.Fatalf("an admin token was made before the preflight failed:\n%s", stderr)
			}
			if _, err := os.Stat(filepath.Join(dataDir, "keygate.db")); err == nil {
				t.Fatal("a database was created before the preflight failed")
			}
			if _, err := os.Stat(filepath.Join(dataDir, "admin-token")); err == nil {
				t.Fatal("an admin-token file was written before the preflight failed")
			}
		})
	}
}

// TestMetricsAddrAndHostKeys: --metrics-addr serves /metrics (and the
// health endpoints) on its own listener, and the REST listener no longer
// serves /metrics; keygate hostkeys prints fingerprints and known_hosts
// lines that match the keys the server logged.
func TestMetricsAddrAndHostKeys(t *testing.T) {
	t.Parallel()
	metrics := freeAddr(t)
	p := startServe(t, serveOpts{Args: []string{"--metrics-addr", metrics}})
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("http://" + metrics + "/metrics"); code != 200 || !strings.Contains(body, "keygate_ssh_connections") {
		t.Fatalf("metrics listener /metrics: %d", code)
	}
	if code, _ := get("http://" + metrics + "/-/readiness"); code != 200 {
		t.Fatalf("metrics listener /-/readiness: %d", code)
	}
	if code, _ := get(p.URL("/metrics")); code != 404 {
		t.Fatalf("REST listener still serves /metrics: %d", code)
	}
	if code, _ := get(p.URL("/-/health")); code != 200 {
		t.Fatalf("REST listener /-/health: %d", code)
	}
	_, port, _ := net.SplitHostPort(p.SSHAddr)
	code, out, stderr := runKeygate(t, []string{"KEYGATE_DATA_DIR=" + p.DataDir}, "hostkeys", "--hostname", "git.example.com", "--ssh-addr", ":"+port)
	if code != 0 {
		t.Fatalf("hostkeys: %d %s", code, stderr)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(l, "SHA256:") {
			if !strings.Contains(p.Stderr.String(), "fingerprint="+strings.Fields(l)[0]) {
				t.Errorf("host key %s printed by hostkeys was not logged at start", l)
			}
		}
	}
	if !strings.Contains(out, "[git.example.com]:"+port+" ssh-ed25519 ") || !strings.Contains(out, "ssh-rsa ") {
		t.Fatalf("hostkeys output:\n%s", out)
	}
}

// TestJSONLogDurations: with --log-format json every line is JSON and
// durations are strings ("12ms"), not integer nanoseconds.
func TestJSONLogDurations(t *testing.T) {
	t.Parallel()
	p := startServe(t, serveOpts{Args: []string{"--log-format", "json"}})
	p.stop()
	found := false
	for _, line := range strings.Split(strings.TrimSpace(p.Stderr.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		if m["msg"] == "auth index loaded" {
			took, ok := m["took"].(string)
			if !ok || !strings.HasSuffix(took, "s") {
				t.Fatalf("took = %#v, want a duration string", m["took"])
			}
			found = true
		}
	}
	if !found {
		t.Fatal("no auth index loaded line")
	}
}
