package sshd

import (
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// TestEnvRequestsBounded: an authenticated client sends 2,000 env requests
// of 32 KB with made-up names: each is answered false and none is kept (the
// heap does not grow by their 64 MB, the session's environment holds none).
// GIT_PROTOCOL is accepted, up to 256 bytes and a few times per session.
// Not parallel: it measures the heap while no other test runs.
func TestEnvRequestsBounded(t *testing.T) {
	environs := make(chan []string, 1)
	_, addr, cc := limitsServer(t, func(c *Config) {
		c.testSession = func(sess ssh.Session) { environs <- sess.Environ() }
	})
	c := dial(t, addr, cc)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	big := strings.Repeat("x", 32<<10)
	const n = 2000
	for i := range n {
		name := "JUNK_" + strings.Repeat("A", i%50)
		if err := sess.Setenv(name, big); err == nil {
			t.Fatalf("env request %d (%s, 32 KB) accepted", i+1, name)
		}
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap after %d refused env requests of 32 KB: %+d KB", n, grown>>10)
	if grown > 16<<20 {
		t.Fatalf("heap grew by %d MB while the session is open: env requests are being kept", grown>>20)
	}

	for _, tc := range []struct {
		name, value string
		ok          bool
	}{
		{"GIT_PROTOCOL", strings.Repeat("v", 257), false}, // too long
		{"LANG", "C", false},                              // not a name keygate uses
		{"GIT_PROTOCOL", "version=2", true},
		{"GIT_PROTOCOL", "version=2", true},
		{"GIT_PROTOCOL", "version=2", true},
		{"GIT_PROTOCOL", strings.Repeat("v", 256), true},
		{"GIT_PROTOCOL", "version=2", false}, // the fifth: over the per-session cap
	} {
		if err := sess.Setenv(tc.name, tc.value); (err == nil) != tc.ok {
			t.Errorf("env %s (%d bytes): accepted = %v, want %v", tc.name, len(tc.value), err == nil, tc.ok)
		}
	}
	// A malformed env request is refused, not stored.
	if ok, err := sessionRequest(sess, "env", []byte{0, 0, 0, 9, 'G'}); err != nil || ok {
		t.Errorf("malformed env request: ok = %v, %v", ok, err)
	}

	if out, err := sess.Output(""); err != nil || !strings.Contains(string(out), "Welcome") {
		t.Fatalf("session after the env requests: %q, %v", out, err)
	}
	got := <-environs
	want := []string{"GIT_PROTOCOL=version=2", "GIT_PROTOCOL=version=2", "GIT_PROTOCOL=version=2", "GIT_PROTOCOL=" + strings.Repeat("v", 256)}
	if !slices.Equal(got, want) {
		t.Fatalf("the session's environment holds %d entries, want only the 4 accepted GIT_PROTOCOL values", len(got))
	}
}

// sessionRequest sends a raw channel request on a session (x/crypto's
// Session has no method for arbitrary requests; Setenv marshals properly).
func sessionRequest(sess *gossh.Session, typ string, payload []byte) (bool, error) {
	return sess.SendRequest(typ, true, payload)
}
