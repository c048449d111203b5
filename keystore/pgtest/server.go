package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// EnvScript names the variable holding the absolute path of
// scripts/pg-test-server.sh (scripts/test.sh sets it).
const EnvScript = "KEYGATE_TEST_PG_SCRIPT"

// Server is a PostgreSQL cluster of one test's own, for tests that stop or
// restart the server: doing that to the shared test server would break the
// tests of other packages running at the same time.
type Server struct {
	// URL is the admin URL (database postgres, user postgres, trust auth).
	URL    string
	script string
	env    []string
}

// PrivateServer starts a throwaway cluster with scripts/pg-test-server.sh
// in its own directory on a free loopback port, destroyed when t ends. It
// skips t when PostgreSQL is not available (see Require).
func PrivateServer(t testing.TB) *Server {
	t.Helper()
	Require(t)
	script := os.Getenv(EnvScript)
	if script == "" {
		t.Skip(EnvScript + " is not set (scripts/test.sh sets it when PostgreSQL is installed)")
	}
	// Not t.TempDir(): the server may run as the postgres user, which
	// must be able to reach the directory.
	dir, err := os.MkdirTemp("", "keygate-pg-private-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &Server{script: script, env: append(os.Environ(),
		"KEYGATE_PG_TEST_DIR="+dir, "KEYGATE_PG_TEST_PORT="+strconv.Itoa(port))}
	t.Cleanup(func() {
		if out, err := s.run("destroy"); err != nil {
			t.Errorf("pg-test-server.sh destroy: %v\n%s", err, out)
		}
		os.RemoveAll(dir)
	})
	out, err := s.run("start")
	if err != nil {
		t.Fatalf("pg-test-server.sh start: %v\n%s", err, out)
	}
	s.URL = strings.TrimSpace(out)
	return s
}

func (s *Server) run(args ...string) (string, error) {
	cmd := exec.Command(s.script, args...)
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Stop shuts the server down (fast mode: connections are cut).
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if out, err := s.run("stop"); err != nil {
		t.Fatalf("pg-test-server.sh stop: %v\n%s", err, out)
	}
}

// Start starts it again, with its data.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	if out, err := s.run("start"); err != nil {
		t.Fatalf("pg-test-server.sh start: %v\n%s", err, out)
	}
}

// Restart stops the server, waits pause, and starts it again.
func (s *Server) Restart(t testing.TB, pause time.Duration) {
	t.Helper()
	secs := fmt.Sprintf("%.3f", pause.Seconds())
	if out, err := s.run("restart", secs); err != nil {
		t.Fatalf("pg-test-server.sh restart %s: %v\n%s", secs, err, out)
	}
}
