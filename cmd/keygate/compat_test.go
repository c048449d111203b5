package main

import (
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The client compatibility suite: real admin clients against a real
// keygate serving HTTPS with its own certificate (--tls-cert). .ci/run
// installs the clients (Debian python3-gitlab, gitlab-cli, gh); run it
// alone with
//
//	go test ./cmd/keygate -run TestCompat -v

// compatServer starts keygate over TLS and returns it, its admin token and
// the CA file clients trust.
func compatServer(t *testing.T) (*proc, string, string) {
	t.Helper()
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.pem")
	ca.issue(t, "keygate-compat", certFile, keyFile)
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	token := randomToken("kgadmin-")
	p := startServe(t, serveOpts{Env: []string{"KEYGATE_ADMIN_TOKEN=" + token},
		Args: []string{"--tls-cert", certFile, "--tls-key", keyFile}, TLS: &tls.Config{RootCAs: ca.pool}})
	return p, token, caFile
}

// systemPython is Debian's python3 (where python3-gitlab is installed),
// not whatever python3 a version manager puts first on PATH.
func systemPython(t *testing.T, module string) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(py); err == nil && exec.Command(path, "-c", "import "+module).Run() == nil {
			return path
		}
	}
	t.Skipf("python3 with the %s module not installed (Debian python3-gitlab; .ci/run installs it)", module)
	return ""
}

func TestCompatPythonGitlab(t *testing.T) {
	t.Parallel()
	py := systemPython(t, "gitlab")
	p, token, caFile := compatServer(t)
	dir := t.TempDir()
	var keys []string
	for i := 0; i < 4; i++ {
		keys = append(keys, sshKeyLine("compat"))
	}
	keysFile, gpgFile := filepath.Join(dir, "keys"), filepath.Join(dir, "gpg.asc")
	os.WriteFile(keysFile, []byte(strings.Join(keys, "\n")), 0o600)
	os.WriteFile(gpgFile, []byte(newGPGKey(t, "User 3", "u03@example.com")), 0o600)
	cmd := exec.Command(py, "../../compat/python_gitlab.py")
	cmd.Env = append(os.Environ(), "KEYGATE_URL="+p.URL(""), "KEYGATE_TOKEN="+token, "KEYGATE_CA="+caFile,
		"KEYGATE_SSH_KEYS="+keysFile, "KEYGATE_GPG_KEY="+gpgFile, "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python-gitlab suite: %v\n%s\nkeygate stderr:\n%s", err, out, p.Stderr)
	}
	if !strings.Contains(string(out), "checks passed") {
		t.Fatalf("python-gitlab suite did not finish:\n%s", out)
	}
	t.Log(strings.TrimSpace(string(out)))
}
