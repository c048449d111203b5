package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testutil"
)

// TestFleetRecipe runs docs/openssh-fleet.md as written: a real sshd on
// loopback (started as the test's user, with its own config and host key,
// on an unprivileged port) whose sshd_config holds the page's lines,
// reading the files `keygate fleet-sync --once` (the real binary) fetched
// from a running `keygate serve`. Two certificates from the group's CA
// log in as the local account; after a revocation of one serial and one
// refresh, exactly that one is refused; a membership level the user no
// longer meets removes their principals file (refused), restoring it
// admits them; with keygate stopped a refresh fails (exit 1) and leaves
// every file as it was, still enforced.
func TestFleetRecipe(t *testing.T) {
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/sshd"); serr != nil {
			t.Skip("sshd not installed (Debian openssh-server; CI installs it)")
		}
		sshd = "/usr/sbin/sshd"
	}
	for _, b := range []string{"ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed", b)
		}
	}
	t.Parallel()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	local := me.Username
	dir := t.TempDir()
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}

	admin := randomToken("glpat-")
	p := startServe(t, serveOpts{Env: []string{"KEYGATE_ADMIN_TOKEN=" + admin}})
	newUser := func(name string) (int64, string) {
		u := p.must("POST", "/api/v4/users", admin, map[string]any{"username": name, "email": name + "@example.com", "name": name}, 201)
		id := int64(u.Object(t)["id"].(float64))
		tok := p.must("POST", "/api/v4/users/"+strconv.FormatInt(id, 10)+"/personal_access_tokens", admin,
			map[string]any{"name": "fleet", "scopes": []string{"api"}}, 201)
		return id, tok.Object(t)["token"].(string)
	}
	_, ownerTok := newUser("fleet-owner")
	g := p.must("POST", "/api/v4/groups", ownerTok, map[string]any{"name": "fleet", "path": "fleet"}, 201)
	gid := strconv.FormatInt(int64(g.Object(t)["id"].(float64)), 10)
	// The sync's token: a maintainer's read_api token.
	botID, _ := newUser("fleet-bot")
	p.must("POST", "/api/v4/groups/"+gid+"/members", ownerTok, map[string]any{"user_id": botID, "access_level": 40}, 201)
	botTok := p.must("POST", "/api/v4/users/"+strconv.FormatInt(botID, 10)+"/personal_access_tokens", admin,
		map[string]any{"name": "fleet-sync", "scopes": []string{"read_api"}}, 201).Object(t)["token"].(string)
	// The local account is a keygate user (root is keygate's admin).
	var localID int64
	if local == "root" {
		localID = int64(p.must("GET", "/api/v4/user", admin, nil, 200).Object(t)["id"].(float64))
	} else {
		localID, _ = newUser(local)
	}
	member := "/api/v4/groups/" + gid + "/members"
	p.must("POST", member, ownerTok, map[string]any{"user_id": localID, "access_level": 30}, 201)

	// The group's CA (ssh-keygen), two certificates for the local account.
	ca := filepath.Join(dir, "user_ca")
	run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet-ca", "-f", ca)
	caPub, err := os.ReadFile(ca + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	r := p.must("POST", "/api/v4/groups/"+gid+"/ssh_certificates", ownerTok, map[string]any{"title": "fleet CA", "key": string(caPub)}, 201)
	caID := strconv.FormatInt(int64(r.Object(t)["id"].(float64)), 10)
	var ids []string
	for i, serial := range []string{"100", "101"} {
		k := filepath.Join(dir, fmt.Sprintf("id%d", i))
		run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k)
		run("ssh-keygen", "-q", "-s", ca, "-I", local+"-laptop-"+serial, "-n", local, "-z", serial, k+".pub")
		ids = append(ids, k)
	}

	fleet := filepath.Join(dir, "etc-ssh-keygate")
	tokenFile := filepath.Join(dir, "fleet-token")
	if err := os.WriteFile(tokenFile, []byte(botTok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sync := func(extra ...string) (string, int) {
		t.Helper()
		args := append([]string{"fleet-sync", "--once", "--url", p.URL(""), "--group", "fleet", "--token-file", tokenFile,
			"--dir", fleet, "--principals"}, extra...)
		cmd := exec.Command(keygateBin, args...)
		cmd.Env = childEnv()
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	if out, code := sync(); code != 0 {
		t.Fatalf("first sync: exit %d\n%s", code, out)
	}

	// sshd_config: the page's block as written (paths moved into the
	// test's directory), then what a test instance needs.
	doc, err := os.ReadFile("../../docs/openssh-fleet.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```sshd_config\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/openssh-fleet.md has no ```sshd_config block")
	}
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := strings.ReplaceAll(string(m[1]), "/etc/ssh/keygate", fleet) + fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile none
AuthorizedKeysFile none
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
LogLevel VERBOSE
`, port, hostKey)
	cfgFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	run(sshd, "-t", "-f", cfgFile)
	sshdLog := &testutil.SyncBuffer{}
	daemon := exec.Command(sshd, "-D", "-e", "-f", cfgFile)
	daemon.Stderr = sshdLog
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = daemon.Process.Kill()
		_ = daemon.Wait()
		if t.Failed() {
			t.Logf("sshd log:\n%s", sshdLog.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen: %v\n%s", err, sshdLog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	login := func(key string) (bool, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ssh", "-F", "/dev/null", "-p", strconv.Itoa(port), "-i", key,
			"-o", "CertificateFile="+key+"-cert.pub", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
			"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "PasswordAuthentication=no", local+"@127.0.0.1", "echo", "fleet-ok")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return err == nil && strings.Contains(out.String(), "fleet-ok"), out.String()
	}
	want := func(what string, okWant ...bool) {
		t.Helper()
		for i, w := range okWant {
			if ok, out := login(ids[i]); ok != w {
				t.Fatalf("%s: certificate %d logged in = %v, want %v\n%s", what, i, ok, w, out)
			}
		}
	}
	want("before any revocation", true, true)

	p.must("POST", "/api/v4/groups/"+gid+"/ssh_certificates/"+caID+"/revocations", ownerTok,
		map[string]any{"serial": "100", "reason": "laptop stolen"}, 201)
	want("revoked in keygate, not yet refreshed", true, true)
	if out, code := sync(); code != 0 || !strings.Contains(out, "KRL installed") {
		t.Fatalf("refresh after the revocation: exit %d\n%s", code, out)
	}
	want("after one refresh", false, true)
	if !strings.Contains(sshdLog.String(), "revoked") {
		t.Errorf("sshd's log does not name a revocation:\n%s", sshdLog.String())
	}
	// An unchanged KRL is not fetched again (304).
	if out, code := sync(); code != 0 || strings.Contains(out, "KRL installed") {
		t.Errorf("a refresh with nothing new: exit %d\n%s", code, out)
	}

	// Membership: below the configured level no principals file, no login.
	if out, code := sync("--min-access-level", "40"); code != 0 {
		t.Fatalf("sync at level 40: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(fleet, "principals", local)); !os.IsNotExist(err) {
		t.Fatalf("principals/%s after raising the level: %v", local, err)
	}
	want("below the level", false, false)
	if out, code := sync(); code != 0 {
		t.Fatalf("sync at level 30: exit %d\n%s", code, out)
	}
	want("back at the level", false, true)

	// keygate unreachable: the refresh fails, the files stay and apply.
	before := map[string][]byte{}
	for _, f := range []string{"revoked_keys.krl", "trusted_user_ca_keys", "principals/" + local} {
		if before[f], err = os.ReadFile(filepath.Join(fleet, f)); err != nil {
			t.Fatal(err)
		}
	}
	p.stop()
	out, code := sync()
	if code != 1 || !strings.Contains(out, "unchanged") {
		t.Fatalf("sync with keygate stopped: exit %d, want 1\n%s", code, out)
	}
	for f, b := range before {
		if now, err := os.ReadFile(filepath.Join(fleet, f)); err != nil || !bytes.Equal(now, b) {
			t.Errorf("%s changed while keygate was unreachable (%v)", f, err)
		}
	}
	want("keygate unreachable", false, true)
}
