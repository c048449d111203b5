package httpapi_test

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireBinaries skips the test when a binary it needs is not installed
// (CI installs them all).
func requireBinaries(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not installed: %v", n, err)
		}
	}
}

// sigTools runs git, ssh-keygen and curl in a home of their own: never
// the user's configuration (HOME, GIT_CONFIG_GLOBAL, no system file), UTC.
type sigTools struct {
	dir string
	env []string
}

func newSigTools(t *testing.T) *sigTools {
	dir := t.TempDir()
	env := []string{"HOME=" + dir, "GIT_CONFIG_GLOBAL=" + filepath.Join(dir, "gitconfig"), "GIT_CONFIG_NOSYSTEM=1",
		"TZ=UTC", "LC_ALL=C", "PATH=" + os.Getenv("PATH")}
	return &sigTools{dir: dir, env: env}
}

// run runs a command in dir (the tools' home if "") with extra env; it
// returns the combined output and whether it exited 0.
func (s *sigTools) run(t *testing.T, dir string, extra []string, stdin []byte, name string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if dir == "" {
		cmd.Dir = s.dir
	}
	cmd.Env = append(append([]string{}, s.env...), extra...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if _, isExit := err.(*exec.ExitError); err != nil && !isExit {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out), err == nil
}

func (s *sigTools) must(t *testing.T, dir string, extra []string, name string, args ...string) string {
	t.Helper()
	out, ok := s.run(t, dir, extra, nil, name, args...)
	if !ok {
		t.Fatalf("%s %v failed:\n%s", name, args, out)
	}
	return out
}

// keygen makes an ed25519 key pair and returns its private key's path and
// its public key line.
func (s *sigTools) keygen(t *testing.T, name string) (string, string) {
	t.Helper()
	path := filepath.Join(s.dir, name)
	s.must(t, "", nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path)
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return path, strings.TrimSpace(string(pub))
}

// fetch downloads path with curl, as a person configures git with it.
func (s *sigTools) fetch(t *testing.T, e *env, token, path, file string) string {
	t.Helper()
	out := filepath.Join(s.dir, file)
	s.must(t, "", nil, "curl", "-sSf", "-H", "PRIVATE-TOKEN: "+token, "-o", out, e.srv.URL+path)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// gitTime is a commit date git reads exactly (seconds, UTC).
func gitTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// TestSignaturesVerifyHistory: git's check of SSH signatures against the
// files keygate serves, with the real git verify-commit and ssh-keygen -Y
// verify, for a key that is valid, expired, deleted (rotation) and revoked
// (compromise): signatures made while a key was registered keep
// verifying after it expires or is deleted, later ones do not, and every
// signature of a revoked key fails.
func TestSignaturesVerifyHistory(t *testing.T) {
	t.Parallel()
	requireBinaries(t, "git", "ssh-keygen", "curl")
	e := newEnv(t)
	_, token := e.newUser(t, "alice")
	_, bobToken := e.newUser(t, "bob")
	s := newSigTools(t)

	type signer struct {
		name, path, line string
		id               int64
	}
	add := func(name string, expires *time.Time) *signer {
		path, line := s.keygen(t, name)
		body := map[string]any{"title": name, "key": line, "usage_type": "signing"}
		if expires != nil {
			body["expires_at"] = expires.UTC().Format(time.RFC3339)
		}
		r := e.do(t, http.MethodPost, "/api/v4/user/keys", token, body)
		expect(t, "add "+name, r, http.StatusCreated)
		return &signer{name: name, path: path, line: line, id: idOf(t, r.Object(t))}
	}
	// Times are whole seconds: git's commit dates and ssh-keygen's
	// verify-time have no finer resolution than valid-before.
	now := e.clock.Now()
	e.clock.Advance(now.Truncate(time.Second).Add(time.Second).Sub(now))
	expiry := e.clock.Now().Add(time.Hour)
	valid, expiring, rotated, stolen := add("valid", nil), add("expiring", &expiry), add("rotated", nil), add("stolen", nil)

	repo := filepath.Join(s.dir, "repo")
	s.must(t, "", nil, "git", "init", "-q", repo)
	for _, kv := range [][2]string{{"user.name", "Alice"}, {"user.email", "alice@example.com"}, {"gpg.format", "ssh"}} {
		s.must(t, repo, nil, "git", "config", kv[0], kv[1])
	}
	n := 0
	commit := func(k *signer, at time.Time) string {
		t.Helper()
		n++
		if err := os.WriteFile(filepath.Join(repo, "f"), []byte(strings.Repeat("x", n)), 0o644); err != nil {
			t.Fatal(err)
		}
		s.must(t, repo, nil, "git", "add", "f")
		date := []string{"GIT_COMMITTER_DATE=" + gitTime(at), "GIT_AUTHOR_DATE=" + gitTime(at)}
		s.must(t, repo, date, "git", "-c", "user.signingKey="+k.path, "commit", "-q", "-S", "-m", k.name)
		return strings.TrimSpace(s.must(t, repo, nil, "git", "rev-parse", "HEAD"))
	}
	// ssh-keygen -Y sign: the same message signed by each key.
	msg := []byte("release v1.2.3\n")
	if err := os.WriteFile(filepath.Join(s.dir, "msg"), msg, 0o644); err != nil {
		t.Fatal(err)
	}
	sig := func(k *signer) string {
		t.Helper()
		if err := os.WriteFile(filepath.Join(s.dir, k.name+".msg"), msg, 0o644); err != nil {
			t.Fatal(err)
		}
		s.must(t, "", nil, "ssh-keygen", "-q", "-Y", "sign", "-n", "git", "-f", k.path, filepath.Join(s.dir, k.name+".msg"))
		return filepath.Join(s.dir, k.name+".msg.sig")
	}

	// Everything is signed while every key is registered and valid.
	t1 := e.clock.Now()
	signedBefore := map[string]string{}
	for _, k := range []*signer{valid, expiring, rotated, stolen} {
		signedBefore[k.name] = commit(k, t1)
	}
	// What a verifier fetched before the compromise was known.
	beforeRevocation := s.fetch(t, e, token, "/-/allowed_signers", "allowed_signers.before")
	if !strings.Contains(beforeRevocation, strings.Join(strings.Fields(stolen.line)[:2], " ")) {
		t.Fatalf("allowed_signers before the revocation lacks the stolen key:\n%s", beforeRevocation)
	}

	// The expiring key expires; the rotated one is deleted and the stolen
	// one revoked an hour later; then each signs again.
	e.clock.Advance(2 * time.Hour)
	deleted := e.clock.Now()
	expect(t, "delete rotated", e.do(t, http.MethodDelete, "/api/v4/user/keys/"+itoa(rotated.id), token, nil), http.StatusNoContent)
	expect(t, "bob revokes alice's key", e.do(t, http.MethodPost, "/api/v4/user/keys/"+itoa(stolen.id)+"/revoke", bobToken, nil), http.StatusNotFound)
	r := e.do(t, http.MethodPost, "/api/v4/user/keys/"+itoa(stolen.id)+"/revoke", token, nil)
	expect(t, "revoke stolen", r, http.StatusAccepted)
	if len(r.Body) != 0 {
		t.Fatalf("revoke answered a body, GitLab's GPG revoke answers none: %s", r.Body)
	}
	e.clock.Advance(time.Hour)
	t3 := e.clock.Now()
	signedAfter := map[string]string{"expiring": commit(expiring, t3), "rotated": commit(rotated, t3), "stolen": commit(stolen, t3)}

	allowed := s.fetch(t, e, token, "/-/allowed_signers", "allowed_signers")
	revoked := s.fetch(t, e, bobToken, "/-/allowed_signers/revoked", "revoked") // complete for anyone
	vb := func(at time.Time) string { return `,valid-before="` + at.UTC().Format("20060102150405") + `Z"` }
	wantAllowed := `alice@example.com namespaces="git" ` + valid.line + "\n" +
		`alice@example.com namespaces="git"` + vb(expiry) + " " + expiring.line + "\n" +
		`alice@example.com namespaces="git"` + vb(deleted) + " " + rotated.line + "\n"
	if allowed != wantAllowed {
		t.Fatalf("allowed_signers =\n%s\nwant\n%s", allowed, wantAllowed)
	}
	if want := strings.Join(strings.Fields(stolen.line)[:2], " ") + "\n"; !strings.HasSuffix(revoked, "\n"+want) || strings.Count(revoked, "ssh-") != 1 {
		t.Fatalf("revocation file =\n%s\nwant one line: %s", revoked, want)
	}

	verifyCommit := func(sha, allowedFile, revokedFile string) (string, bool) {
		args := []string{"-c", "gpg.ssh.allowedSignersFile=" + filepath.Join(s.dir, allowedFile)}
		if revokedFile != "" {
			args = append(args, "-c", "gpg.ssh.revocationFile="+filepath.Join(s.dir, revokedFile))
		}
		return s.run(t, repo, nil, nil, "git", append(args, "verify-commit", sha)...)
	}
	verifySig := func(k *signer, at time.Time, allowedFile, revokedFile string) (string, bool) {
		args := []string{"-Y", "verify", "-n", "git", "-I", "alice@example.com", "-f", filepath.Join(s.dir, allowedFile),
			"-s", sig(k), "-Overify-time=" + at.UTC().Format("20060102150405")}
		if revokedFile != "" {
			args = append(args, "-r", filepath.Join(s.dir, revokedFile))
		}
		return s.run(t, "", nil, msg, "ssh-keygen", args...)
	}
	cases := []struct {
		name    string
		k       *signer
		sha     string
		at      time.Time
		allowed string
		revoked string
		want    bool
	}{
		{"valid", valid, signedBefore["valid"], t1, "allowed_signers", "revoked", true},
		{"expired-signed-before", expiring, signedBefore["expiring"], t1, "allowed_signers", "revoked", true},
		{"expired-signed-after", expiring, signedAfter["expiring"], t3, "allowed_signers", "revoked", false},
		{"deleted-signed-before", rotated, signedBefore["rotated"], t1, "allowed_signers", "revoked", true},
		{"deleted-signed-after", rotated, signedAfter["rotated"], t3, "allowed_signers", "revoked", false},
		{"revoked-signed-before", stolen, signedBefore["stolen"], t1, "allowed_signers", "revoked", false},
		{"revoked-signed-after", stolen, signedAfter["stolen"], t3, "allowed_signers", "revoked", false},
		// A verifier still holding the old allowed signers file: the
		// revocation file alone fails the key's signatures...
		{"revoked-old-allowed-signers", stolen, signedBefore["stolen"], t1, "allowed_signers.before", "revoked", false},
		// ...which, without it, would still verify.
		{"control-old-allowed-signers-no-revocation-file", stolen, signedBefore["stolen"], t1, "allowed_signers.before", "", true},
	}
	for _, c := range cases {
		out, ok := verifyCommit(c.sha, c.allowed, c.revoked)
		if ok != c.want {
			t.Errorf("%s: git verify-commit ok=%v, want %v:\n%s", c.name, ok, c.want, out)
		}
		out, ok = verifySig(c.k, c.at, c.allowed, c.revoked)
		if ok != c.want {
			t.Errorf("%s: ssh-keygen -Y verify ok=%v, want %v:\n%s", c.name, ok, c.want, out)
		}
	}
}

// TestRevokeKey: who may revoke, what a revoked key becomes (not a key,
// not addable again in v4 or v3, a line of the revocation file for every
// authenticated user), and a deleted key revoked by the id it had.
func TestRevokeKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, token := e.newUser(t, "alice")
	_, bobToken := e.newUser(t, "bob")
	add := func() (int64, string) {
		line, _ := newKey(t, "alice")
		r := e.do(t, http.MethodPost, "/api/v4/user/keys", token, map[string]any{"title": "k", "key": line})
		expect(t, "add", r, http.StatusCreated)
		return idOf(t, r.Object(t)), line
	}
	live, liveLine := add()
	gone, goneLine := add()
	byAdmin, byAdminLine := add()
	expect(t, "delete", e.do(t, http.MethodDelete, "/api/v4/user/keys/"+itoa(gone), token, nil), http.StatusNoContent)

	expect(t, "anonymous revoke", e.do(t, http.MethodPost, "/api/v4/user/keys/"+itoa(live)+"/revoke", "", nil), http.StatusUnauthorized)
	expectBody(t, "bob revokes alice's key", e.do(t, http.MethodPost, "/api/v4/user/keys/"+itoa(live)+"/revoke", bobToken, nil),
		http.StatusNotFound, `{"message":"404 Key Not Found"}`)
	expect(t, "bob revokes through the admin route", e.do(t, http.MethodPost, "/api/v4/users/"+itoa(alice.ID)+"/keys/"+itoa(live)+"/revoke", bobToken, nil), http.StatusForbidden)
	expect(t, "not a number", e.do(t, http.MethodPost, "/api/v4/user/keys/abc/revoke", token, nil), http.StatusNotFound)
	expect(t, "revoke", e.do(t, http.MethodPost, "/api/v4/user/keys/"+itoa(live)+"/revoke", token, nil), http.StatusAccepted)
	expect(t, "revoke again", e.do(t, http.MethodPost, "/api/v4/user/keys/"+itoa(live)+"/revoke", token, nil), http.StatusNotFound)
	expect(t, "revoked key is gone", e.do(t, http.MethodGet, "/api/v4/user/keys/"+itoa(live), token, nil), http.StatusNotFound)
	expect(t, "revoke a deleted key by its id", e.do(t, http.MethodPost, "/api/v4/user/keys/"+itoa(gone)+"/revoke", token, nil), http.StatusAccepted)
	expect(t, "admin revokes for another user", e.do(t, http.MethodPost, "/api/v4/users/"+itoa(alice.ID+1)+"/keys/"+itoa(byAdmin)+"/revoke", adminSecret, nil), http.StatusNotFound)
	expect(t, "admin revokes", e.do(t, http.MethodPost, "/api/v4/users/"+itoa(alice.ID)+"/keys/"+itoa(byAdmin)+"/revoke", adminSecret, nil), http.StatusAccepted)

	expect(t, "anonymous revocation file", e.do(t, http.MethodGet, "/-/allowed_signers/revoked", "", nil), http.StatusUnauthorized)
	r := e.do(t, http.MethodGet, "/-/allowed_signers/revoked", bobToken, nil)
	expect(t, "revocation file", r, http.StatusOK)
	if ct := r.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Fatalf("Content-Type = %q", ct)
	}
	var want []string
	for _, l := range []string{liveLine, goneLine, byAdminLine} {
		want = append(want, strings.Join(strings.Fields(l)[:2], " "))
	}
	lines := strings.Split(strings.TrimSpace(string(r.Body)), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "#") || strings.Join(lines[1:], "\n") != strings.Join(want, "\n") {
		t.Fatalf("revocation file:\n%s\nwant a comment, then:\n%s", r.Body, strings.Join(want, "\n"))
	}

	// Never again, as any kind of key.
	expectBody(t, "re-add in v4", e.do(t, http.MethodPost, "/api/v4/user/keys", bobToken, map[string]any{"title": "k", "key": liveLine}),
		http.StatusBadRequest, `{"message":{"key":["has been revoked (its private key is compromised) and cannot be used again; generate a new key"]}}`)
	r = e.do(t, http.MethodPost, "/api/v3/user/ssh_signing_keys", token, map[string]any{"title": "k", "key": goneLine})
	expect(t, "re-add in v3", r, http.StatusUnprocessableEntity)
	if !strings.Contains(string(r.Body), `"field":"key"`) || !strings.Contains(string(r.Body), "has been revoked") {
		t.Fatalf("v3 re-add body: %s", r.Body)
	}
	// Audited.
	r = e.do(t, http.MethodGet, "/api/v4/audit_events?entity_type=key&entity_id="+itoa(byAdmin), adminSecret, nil)
	expect(t, "audit", r, http.StatusOK)
	if !strings.Contains(string(r.Body), `"key_revoked"`) {
		t.Fatalf("no key_revoked audit event: %s", r.Body)
	}
}
