package e2e

import (
	"strconv"
	"strings"
	"testing"
)

// TestScannerWithoutKeyIsCutOff: from an address nobody logged in from,
// the real ssh with no key (it finishes key exchange, then has nothing to
// offer) is refused before key exchange once the source's failure budget
// (10 a minute) is spent — and then so is a registered key from there, as
// the README says of scanners. ssh-keyscan, which takes the host keys and
// aborts the key exchange, is not counted: run 10 times first, it leaves
// the budget whole.
func TestScannerWithoutKeyIsCutOff(t *testing.T) {
	t.Parallel()
	requireBinaries(t, "ssh-keyscan")
	e := newEnv(t)
	id, _ := e.createUser(t, "alice")
	key, pub := e.sshKeygen(t, "ed25519", 0)
	e.addKey(t, id, pub, "", "")

	for i := range 10 {
		out, stderr, code := e.run(t, "", nil, nil, "ssh-keyscan", "-p", strconv.Itoa(e.sshPort), "127.0.0.1")
		if code != 0 || !strings.Contains(out, "ssh-ed25519") {
			t.Fatalf("ssh-keyscan run %d: exit %d, %q, %q", i+1, code, out, stderr)
		}
	}

	refusedAt := 0
	var last string
	for i := 1; i <= 20 && refusedAt == 0; i++ {
		_, stderr, code := e.ssh(t, nil, "git")
		if code == 0 {
			t.Fatal("ssh without a key logged in")
		}
		last = stderr
		if !strings.Contains(stderr, "Permission denied") {
			refusedAt = i // cut off before key exchange: no auth exchange at all
		}
	}
	t.Logf("ssh without a key: refused before key exchange from attempt %d: %q", refusedAt, last)
	// The 10 keyscans spent nothing, the 10 keyless logins the budget: the
	// 11th is refused (up to the 13th: the server counts a connection when
	// it closes it, which may come after the client's next one).
	if refusedAt < 11 || refusedAt > 13 {
		t.Fatalf("ssh without a key first refused before key exchange at attempt %d (0: never in 20), want the 11th; last stderr %q", refusedAt, last)
	}
	if _, stderr, code := e.ssh(t, []string{key}, "git"); code == 0 || strings.Contains(stderr, "Welcome") {
		t.Fatalf("a registered key from the penalised source logged in: %q", stderr)
	}
}
