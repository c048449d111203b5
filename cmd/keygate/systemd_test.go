package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnitVerifies runs `systemd-analyze verify` on
// contrib/keygate.service (with ExecStart pointing at the binary under
// test), and checks the hardening it promises.
func TestSystemdUnitVerifies(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (.ci/run installs systemd)")
	}
	unit, err := os.ReadFile(filepath.Join("..", "..", "contrib", "keygate.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DynamicUser=yes", "StateDirectory=keygate", "ProtectSystem=strict", "NoNewPrivileges=yes",
		"AmbientCapabilities=CAP_NET_BIND_SERVICE", "Restart=on-failure", "ExecStart=/usr/local/bin/keygate serve",
		"Type=notify", "NotifyAccess=main", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains(string(unit), want+"\n") {
			t.Errorf("unit lacks %s", want)
		}
	}
	text := strings.Replace(string(unit), "ExecStart=/usr/local/bin/keygate serve", "ExecStart="+keygateBin+" serve", 1)
	path := filepath.Join(t.TempDir(), "keygate.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "keygate.service") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
