package main

import (
	"io"
	"strings"
	"testing"
)

// TestPrincipalCapFlags is not parallel: it sets the environment.
func TestPrincipalCapFlags(t *testing.T) {
	t.Setenv("KEYGATE_MAX_CONNECTIONS_PER_PRINCIPAL", "")
	t.Setenv("KEYGATE_MAX_GIT_PROCESSES_PER_PRINCIPAL", "")
	c, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxConnectionsPerPrincipal != 100 || c.MaxGitProcessesPerPrincipal != 50 {
		t.Fatalf("defaults: %d connections, %d git processes", c.MaxConnectionsPerPrincipal, c.MaxGitProcessesPerPrincipal)
	}
	t.Setenv("KEYGATE_MAX_CONNECTIONS_PER_PRINCIPAL", "300")
	t.Setenv("KEYGATE_MAX_GIT_PROCESSES_PER_PRINCIPAL", "-1")
	if c, err = parseServe(nil, io.Discard); err != nil || c.MaxConnectionsPerPrincipal != 300 || c.MaxGitProcessesPerPrincipal != -1 {
		t.Fatalf("from env: %+v, %v", c, err)
	}
	if c, err = parseServe([]string{"--max-connections-per-principal", "7", "--max-git-processes-per-principal", "3"}, io.Discard); err != nil ||
		c.MaxConnectionsPerPrincipal != 7 || c.MaxGitProcessesPerPrincipal != 3 {
		t.Fatalf("flags over env: %+v, %v", c, err)
	}
	for _, args := range [][]string{{"--max-connections-per-principal", "0"}, {"--max-git-processes-per-principal", "0"}} {
		_, err := parseServe(args, io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), args[0]+" ") {
			t.Errorf("%v: %v (want an error naming %s)", args, err, args[0])
		}
	}
	t.Setenv("KEYGATE_MAX_GIT_PROCESSES_PER_PRINCIPAL", "lots")
	if _, err := parseServe(nil, io.Discard); err == nil {
		t.Error("KEYGATE_MAX_GIT_PROCESSES_PER_PRINCIPAL=lots accepted")
	}
}
