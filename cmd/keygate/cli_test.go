package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testutil"
)

// runKeygate runs the binary to completion (it must not serve) and returns its
// exit status, stdout and stderr.
func runKeygate(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, keygateBin, args...)
	cmd.Env = childEnv(env...)
	cmd.Dir = t.TempDir() // a stray ./keygate-data lands in a temporary directory
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("keygate %q did not exit; stderr:\n%s", args, stderr.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("keygate %q: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// anyFailure as a wanted exit status accepts any non-zero status.
const anyFailure = -100

func TestCommandLine(t *testing.T) {
	t.Parallel()
	// Listen addresses for the cases that must fail before serving: if one
	// served anyway it would not touch the defaults :8080 and :2222.
	listen := []string{"--http-addr", "127.0.0.1:0", "--ssh-addr", "127.0.0.1:0"}
	tests := []struct {
		name       string
		env        []string
		args       []string
		wantCode   int
		wantStdout *regexp.Regexp
		wantStderr *regexp.Regexp
	}{
		{name: "version", args: []string{"version"}, wantCode: 0,
			wantStdout: regexp.MustCompile(`\Akeygate \d+\.\d+\.\d+(?:-dev\+(?:[0-9a-f]{12}(?:\.dirty)?|unknown))? \(commit (?:[0-9a-f]{12}(?:\+dirty)?|unknown), go\d\S* \S+/\S+\)\n\z`)},
		{name: "unknown-command", args: []string{"frobnicate"}, wantCode: 2,
			wantStderr: regexp.MustCompile(`frobnicate`)},
		{name: "no-command", args: nil, wantCode: 2,
			wantStderr: regexp.MustCompile(`serve`)},
		{name: "bad-log-format", args: append([]string{"serve", "--log-format", "xml"}, listen...), wantCode: 2,
			wantStderr: regexp.MustCompile(`--log-format.*xml|xml.*--log-format`)},
		{name: "bad-log-format-from-env", env: []string{"KEYGATE_LOG_FORMAT=yaml"}, args: append([]string{"serve"}, listen...),
			wantCode: 2, wantStderr: regexp.MustCompile(`log-format.*yaml`)},
		{name: "bad-log-level", args: append([]string{"serve", "--log-level", "loud"}, listen...), wantCode: 2,
			wantStderr: regexp.MustCompile(`--log-level.*loud`)},
		{name: "bad-host-certificate-names", args: append([]string{"serve", "--host-certificate-names", "ok.example,not a name"}, listen...),
			wantCode: 2, wantStderr: regexp.MustCompile(`--host-certificate-names: "not a name" is not a host name`)},
		{name: "bad-host-certificate-names-env", env: []string{"KEYGATE_HOST_CERTIFICATE_NAMES=[h]:22"}, args: append([]string{"serve"}, listen...),
			wantCode: 2, wantStderr: regexp.MustCompile(`--host-certificate-names: "\[h\]:22"`)},
		{name: "unknown-flag", args: append([]string{"serve", "--no-such-flag"}, listen...), wantCode: 2,
			wantStderr: regexp.MustCompile(`no-such-flag`)},
		{name: "serve-help", args: []string{"serve", "-h"}, wantCode: 0,
			wantStderr: regexp.MustCompile(`Listeners:\n  --ssh-addr(.|\n)*--http-addr(.|\n)*Storage:\n  --data-dir(.|\n)*KEYGATE_ADMIN_TOKEN`)},
		{name: "bad-shutdown-grace-env", env: []string{"KEYGATE_SHUTDOWN_GRACE=soon"}, args: append([]string{"serve"}, listen...),
			wantCode: 2, wantStderr: regexp.MustCompile(`KEYGATE_SHUTDOWN_GRACE`)},
		{name: "admin-token-too-short", env: []string{"KEYGATE_ADMIN_TOKEN=short"},
			args:     []string{"serve", "--data-dir", "data", "--http-addr", "127.0.0.1:0", "--ssh-addr", "127.0.0.1:0"},
			wantCode: anyFailure, wantStderr: regexp.MustCompile(`KEYGATE_ADMIN_TOKEN`)},
		{name: "unexpected-argument", args: append([]string{"serve", "extra"}, listen...), wantCode: 2,
			wantStderr: regexp.MustCompile(`extra`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runKeygate(t, tc.env, tc.args...)
			if code != tc.wantCode && (tc.wantCode != anyFailure || code <= 0) {
				t.Errorf("exit status %d, want %d; stdout %q, stderr %q", code, tc.wantCode, stdout, stderr)
			}
			if tc.wantStdout != nil && !tc.wantStdout.MatchString(stdout) {
				t.Errorf("stdout %q does not match %v", stdout, tc.wantStdout)
			}
			if tc.wantStderr != nil && !tc.wantStderr.MatchString(stderr) {
				t.Errorf("stderr %q does not match %v", stderr, tc.wantStderr)
			}
		})
	}
}

// TestFlagsOverrideEnv sets every address and the data dir both ways: the
// flags must win.
func TestFlagsOverrideEnv(t *testing.T) {
	t.Parallel()
	envDir, flagDir := t.TempDir(), t.TempDir()
	envHTTP, envSSH := freeAddr(t), freeAddr(t)
	p := startServe(t, serveOpts{
		DataDir: envDir, // KEYGATE_DATA_DIR
		Env: []string{
			"KEYGATE_HTTP_ADDR=" + envHTTP,
			"KEYGATE_SSH_ADDR=" + envSSH,
			"KEYGATE_LOG_FORMAT=json",
			"KEYGATE_LOG_LEVEL=error",
			"KEYGATE_ADMIN_TOKEN=" + randomToken("flags-override-env-"),
		},
		Args: []string{"--data-dir", flagDir, "--log-format", "text", "--log-level", "info"},
	})
	p.DataDir = flagDir
	for _, a := range []struct{ env, flag string }{{envHTTP, p.HTTPAddr}, {envSSH, p.SSHAddr}} {
		if c, err := net.DialTimeout("tcp", a.env, 5*time.Second); err == nil {
			c.Close()
			t.Errorf("something listens on the environment's %s although the flag said %s", a.env, a.flag)
		}
		c, err := net.DialTimeout("tcp", a.flag, 5*time.Second)
		if err != nil {
			t.Errorf("nothing listens on the flag's %s: %v", a.flag, err)
			continue
		}
		c.Close()
	}
	p.stop()
	if _, err := os.Stat(filepath.Join(flagDir, "keygate.db")); err != nil {
		t.Errorf("--data-dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(envDir, "keygate.db")); !os.IsNotExist(err) {
		t.Errorf("the database was created in KEYGATE_DATA_DIR although --data-dir was given (stat: %v)", err)
	}
	logs := p.Stderr.String()
	if !strings.Contains(logs, "level=INFO") {
		t.Errorf("--log-format text --log-level info should win over the env's json/error; stderr:\n%s", logs)
	}
	if strings.Contains(logs, `{"time"`) {
		t.Errorf("JSON logs although --log-format text was given; stderr:\n%s", logs)
	}
}

// TestEnvAlone checks that the environment is used when no flag is given.
func TestEnvAlone(t *testing.T) {
	t.Parallel()
	httpAddr := freeAddr(t)
	// launchServe always passes --http-addr, so run the binary directly.
	dir := t.TempDir()
	p := &proc{t: t, HTTPAddr: httpAddr, SSHAddr: freeAddr(t), DataDir: dir, Stderr: &testutil.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(keygateBin, "serve", "--ssh-addr", p.SSHAddr)
	p.cmd.Env = childEnv("KEYGATE_DATA_DIR="+dir, "KEYGATE_HTTP_ADDR="+httpAddr, "KEYGATE_LOG_FORMAT=json",
		"KEYGATE_ADMIN_TOKEN="+randomToken("env-alone-admin-token-"))
	p.cmd.Stderr = p.Stderr
	p.start()
	p.waitReady()
	p.stop()
	if _, err := os.Stat(filepath.Join(dir, "keygate.db")); err != nil {
		t.Errorf("KEYGATE_DATA_DIR: %v", err)
	}
	requireJSONLines(t, p.Stderr.String())
}

func TestLogFormatJSON(t *testing.T) {
	t.Parallel()
	// With KEYGATE_ADMIN_TOKEN set, nothing but logs goes to stderr.
	token := randomToken("json-logs-admin-token-")
	p := startServe(t, serveOpts{Env: []string{"KEYGATE_ADMIN_TOKEN=" + token},
		Args: []string{"--log-format", "json", "--log-level", "debug"}})
	p.must("GET", "/api/v4/user", token, nil, 200)
	p.must("GET", "/api/v4/nowhere", token, nil, 404)
	p.stop()
	requireJSONLines(t, p.Stderr.String())
}

// requireJSONLines checks that every line of logs is a JSON object with
// slog's time, level and msg, and that there is at least one.
func requireJSONLines(t *testing.T, logs string) {
	t.Helper()
	n := 0
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		n++
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("stderr line is not JSON: %q (%v)", line, err)
			continue
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := m[k]; !ok {
				t.Errorf("JSON log line without %q: %s", k, line)
			}
		}
	}
	if n == 0 {
		t.Errorf("no log lines on stderr")
	}
}

// TestListenAddressInUse checks that a listener that cannot be opened stops
// keygate with a message naming it, instead of serving half.
func TestListenAddressInUse(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, flag := range []string{"--http-addr", "--ssh-addr"} {
		t.Run(flag, func(t *testing.T) {
			args := []string{"serve", "--data-dir", "data", "--http-addr", freeAddr(t), "--ssh-addr", freeAddr(t),
				flag, busy.Addr().String()}
			code, _, stderr := runKeygate(t, []string{"KEYGATE_ADMIN_TOKEN=" + randomToken("listen-in-use-token-")}, args...)
			if code == 0 || !strings.Contains(stderr, busy.Addr().String()) {
				t.Errorf("%s on a busy port: exit status %d, stderr %q; want a failure naming %s", flag, code, stderr, busy.Addr())
			}
		})
	}
}

// TestLogFormatJSONFirstStart: with JSON logs, the first start says in a
// JSON line where the generated admin token is, and never shows the token.
func TestLogFormatJSONFirstStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startServe(t, serveOpts{DataDir: dir, Args: []string{"--log-format", "json"}})
	p.stop()
	logs := p.Stderr.String()
	requireJSONLines(t, logs)
	content, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(content))
	if token == "" || strings.Contains(logs, token) {
		t.Fatalf("the admin token %q is in the JSON log (or the file is empty):\n%s", token, logs)
	}
	said := 0
	for _, line := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["admin_token_file"] == nil {
			continue
		}
		said++
		if m["admin_token_file"] != filepath.Join(dir, "admin-token") || m["admin_token"] != nil {
			t.Errorf("token line %s, want only where the token is", line)
		}
	}
	if said != 1 {
		t.Errorf("the admin token file was named %d times in JSON, want once; stderr:\n%s", said, logs)
	}
}
