package main

import (
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDebianPackage (issue 21 §5): scripts/build-deb.sh builds
// dist/keygate_VERSION_ARCH.deb; dpkg -i installs it (the binary, the unit,
// a 0600 conffile, the system user and its 0700 state directory);
// `keygate version` says the package's version; systemd-analyze verify
// passes on the installed unit; the installed binary serves as the
// package's user from /var/lib/keygate; dpkg -r and --purge remove it
// cleanly. It installs a package, so it runs as root only (CI does) and
// never on a machine that already has keygate installed.
func TestDebianPackage(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("installing a package needs root (CI runs as root)")
	}
	for _, bin := range []string{"dpkg", "dpkg-deb", "systemd-analyze", "git"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (.ci/run installs it)", bin)
		}
	}
	if exec.Command("dpkg", "-s", "keygate").Run() == nil || fileExists("/usr/bin/keygate") {
		t.Skip("keygate is installed on this machine: not touching it")
	}
	if _, err := user.Lookup("keygate"); err == nil {
		t.Skip("a user keygate exists on this machine: not touching it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = filepath.Join("..", "..")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	out := run("scripts/build-deb.sh")
	deb := out[strings.LastIndex(out, "\n")+1:] // relative to the repository, where run runs
	debVersion := run("dpkg-deb", "-f", deb, "Version")
	arch := run("dpkg", "--print-architecture")
	if filepath.Base(deb) != "keygate_"+debVersion+"_"+arch+".deb" || !strings.HasPrefix(deb, "dist/") {
		t.Fatalf("package %s, version %s, arch %s: want dist/keygate_VERSION_ARCH.deb", deb, debVersion, arch)
	}
	t.Cleanup(func() {
		exec.Command("dpkg", "--purge", "keygate").Run()
		os.RemoveAll("/var/lib/keygate")
		exec.Command("userdel", "keygate").Run()
		exec.Command("groupdel", "keygate").Run()
	})
	run("dpkg", "-i", deb)

	got := run("/usr/bin/keygate", "version")
	want := "keygate " + strings.Replace(debVersion, "~", "-", 1) + " "
	if !strings.HasPrefix(got+" ", want) {
		t.Fatalf("keygate version = %q, want it to start with %q", got, want)
	}
	if fi, err := os.Stat("/etc/keygate/keygate.env"); err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("/etc/keygate/keygate.env: %v %v; want root's, mode 0600", fi, err)
	}
	if conf := run("dpkg-query", "-W", "-f=${Conffiles}", "keygate"); !strings.Contains(conf, "/etc/keygate/keygate.env") {
		t.Fatalf("conffiles: %q", conf)
	}
	u, err := user.Lookup("keygate")
	if err != nil {
		t.Fatalf("the package created no user keygate: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if fi, err := os.Stat("/var/lib/keygate"); err != nil || fi.Mode().Perm() != 0o700 || int(fi.Sys().(*syscall.Stat_t).Uid) != uid {
		t.Fatalf("/var/lib/keygate: %v %v; want keygate's, mode 0700", fi, err)
	}
	if out, err := exec.Command("systemd-analyze", "verify", "/usr/lib/systemd/system/keygate.service").CombinedOutput(); err != nil || strings.Contains(string(out), "keygate.service") {
		t.Fatalf("systemd-analyze verify of the installed unit: %v\n%s", err, out)
	}
	unit, _ := os.ReadFile("/usr/lib/systemd/system/keygate.service")
	for _, w := range []string{"ExecStart=/usr/bin/keygate serve\n", "User=keygate\n", "Type=notify\n"} {
		if !strings.Contains(string(unit), w) {
			t.Errorf("the installed unit lacks %q", w)
		}
	}

	// The installed binary serves as the package's user from its state dir.
	p := startServe(t, serveOpts{DataDir: "/var/lib/keygate", Bin: "/usr/bin/keygate",
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}})
	p.stop()
	if fi, err := os.Stat("/var/lib/keygate/admin-token"); err != nil || fi.Mode().Perm() != 0o600 || int(fi.Sys().(*syscall.Stat_t).Uid) != uid {
		t.Fatalf("admin-token: %v %v", fi, err)
	}

	run("dpkg", "-r", "keygate")
	for _, gone := range []string{"/usr/bin/keygate", "/usr/lib/systemd/system/keygate.service"} {
		if fileExists(gone) {
			t.Errorf("dpkg -r left %s", gone)
		}
	}
	if !fileExists("/etc/keygate/keygate.env") {
		t.Error("dpkg -r removed the conffile (only --purge should)")
	}
	run("dpkg", "--purge", "keygate")
	if fileExists("/etc/keygate/keygate.env") {
		t.Error("dpkg --purge left /etc/keygate/keygate.env")
	}
	if exec.Command("dpkg", "-s", "keygate").Run() == nil {
		t.Error("keygate is still installed after --purge")
	}
	if !fileExists("/var/lib/keygate/keygate.db") {
		t.Error("purging the package deleted the keystore in /var/lib/keygate (the data must stay)")
	}
}
