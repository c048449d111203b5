package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
	"github.com/keygate/keygate/sshd"
)

// server is an in-process keygate: SQLite keystore in dir, index
// (Load + Follow), SSH server on 127.0.0.1:0.
type server struct {
	dir   string
	addr  string
	store *keystore.Store
	index *authindex.Index
}

func newSigner(t *testing.T) (gossh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, priv
}

// startServer starts keygate on the keystore in dir (created if missing).
func startServer(t *testing.T, dir string) *server {
	t.Helper()
	ctx := context.Background()
	store, err := keystore.Open(ctx, keystore.Config{DSN: filepath.Join(dir, "keygate.db")})
	if err != nil {
		t.Fatalf("keystore.Open: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	index := authindex.New(store)
	if err := index.Load(ctx); err != nil {
		t.Fatalf("index.Load: %v", err)
	}
	index.Follow()
	hostKey, _ := newSigner(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sshd.New(sshd.Config{
		Addr: ln.Addr().String(), HostKeys: []gossh.Signer{hostKey}, Hostname: "localhost", GitUser: "git",
		ReposDir: filepath.Join(dir, "repositories"), Auth: index, Projects: store, Usage: store, Events: store,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		ln.Close()
		t.Fatalf("sshd.New: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Errorf("sshd Serve did not return after Shutdown")
		}
	})
	return &server{dir: dir, addr: ln.Addr().String(), store: store, index: index}
}

// addUser creates a user with an auth key and returns the key's signer.
func (s *server) addUser(t *testing.T, name string) gossh.Signer {
	t.Helper()
	ctx := context.Background()
	email := name + "@example.com"
	u, err := s.store.CreateUser(ctx, keystore.Actor{}, keystore.UserInput{Username: &name, Email: &email})
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	signer, _ := newSigner(t)
	line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey())))
	if _, err := s.store.CreateKey(ctx, keystore.Actor{}, u.ID, keystore.KeyInput{Title: "k", Key: line, UsageType: "auth"}); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	return signer
}

func writeKey(t *testing.T, priv ed25519.PrivateKey) string {
	t.Helper()
	blk, err := gossh.MarshalPrivateKey(priv, "test")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(p, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func checkLatency(t *testing.T, name string, l Latency) {
	t.Helper()
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max && l.Max < 30000) {
		t.Errorf("%s latency not sane: %+v", name, l)
	}
}

func TestRunCountAgainstKeygate(t *testing.T) {
	s := startServer(t, t.TempDir())
	signer := s.addUser(t, "alice")
	res, err := runLoad(context.Background(), runOptions{Addr: s.addr, User: "git", Signer: signer, Concurrency: 4, Count: 50})
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 50 || res.Handshakes != 50 || res.TotalErrors() != 0 {
		t.Fatalf("attempts %d handshakes %d errors %v (%v), want 50/50/0", res.Attempts, res.Handshakes, res.Errors, res.ErrorSamples)
	}
	if res.HandshakesPerS <= 0 || res.ElapsedSeconds <= 0 {
		t.Errorf("rate %v elapsed %v", res.HandshakesPerS, res.ElapsedSeconds)
	}
	checkLatency(t, "auth", res.AuthLatency)
	if res.CommandLatency != nil {
		t.Errorf("command latency without --cmd: %+v", res.CommandLatency)
	}
}

func TestRunCLIJSONWithCommand(t *testing.T) {
	s := startServer(t, t.TempDir())
	s.addUser(t, "bob")
	// A key file on disk, through the CLI as a user would.
	_, priv := newSigner(t)
	signer, _ := gossh.NewSignerFromKey(priv)
	u, err := s.store.UserByUsername(context.Background(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey())))
	if _, err := s.store.CreateKey(context.Background(), keystore.Actor{}, u.ID, keystore.KeyInput{Title: "k2", Key: line, UsageType: "auth"}); err != nil {
		t.Fatal(err)
	}
	keyPath := writeKey(t, priv)

	// A command keygate refuses (exit 1): counted as command errors, with
	// the exit status, after a successful handshake.
	var out, errb bytes.Buffer
	code := cli(context.Background(), []string{"run", "--addr", s.addr, "--key", keyPath, "--count", "8", "--concurrency", "2",
		"--cmd", "uname -a", "--json", "--host-key-check=false"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errb.String())
	}
	var res Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("json: %v: %s", err, out.String())
	}
	if res.Handshakes != 8 || res.Errors[errCommand] != 8 || res.ExitStatuses["1"] != 8 || res.CommandsOK != 0 {
		t.Fatalf("result %+v", res)
	}
	checkLatency(t, "auth", res.AuthLatency)

	// Text output names every field.
	out.Reset()
	code = cli(context.Background(), []string{"run", "--addr", s.addr, "--key", keyPath, "--count", "4", "--host-key-check=false"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errb.String())
	}
	for _, want := range []string{"handshakes        4", "handshakes/s", "p50", "p90", "p99", "max", "dial 0  handshake 0  auth 0  command 0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunWrongKeyCountsAuthErrors(t *testing.T) {
	s := startServer(t, t.TempDir())
	s.addUser(t, "carol")
	stranger, _ := newSigner(t)
	res, err := runLoad(context.Background(), runOptions{Addr: s.addr, Signer: stranger, Concurrency: 2, Count: 10})
	if err != nil {
		t.Fatal(err)
	}
	if res.Handshakes != 0 || res.Errors[errAuth] != 10 || res.TotalErrors() != 10 {
		t.Fatalf("handshakes %d errors %v, want 10 auth errors", res.Handshakes, res.Errors)
	}
	if !strings.Contains(res.ErrorSamples[errAuth], "unable to authenticate") {
		t.Errorf("auth sample %q", res.ErrorSamples[errAuth])
	}
}

func TestRunDialErrorsAndDuration(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	signer, _ := newSigner(t)
	start := time.Now()
	res, err := runLoad(context.Background(), runOptions{Addr: addr, Signer: signer, Concurrency: 2, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("run took %v, want about 300ms", el)
	}
	if res.Errors[errDial] == 0 || res.Handshakes != 0 {
		t.Fatalf("errors %v handshakes %d", res.Errors, res.Handshakes)
	}
}

func TestRunHandshakeErrorOnUnknownHostKey(t *testing.T) {
	s := startServer(t, t.TempDir())
	signer := s.addUser(t, "dave")
	empty := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	hk, err := hostKeyCallback(true, empty)
	if err != nil {
		t.Fatal(err)
	}
	res, err := runLoad(context.Background(), runOptions{Addr: s.addr, Signer: signer, Count: 3, HostKey: hk})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors[errHandshake] != 3 || res.Handshakes != 0 {
		t.Fatalf("errors %v handshakes %d", res.Errors, res.Handshakes)
	}
}

func TestSeedThenLoadAndAuthenticate(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	// An existing keygate data dir with one user and key.
	before := startServer(t, dir)
	existing := before.addUser(t, "erin")
	baseKeys := before.index.Len()
	before.store.Close()

	keyFile := filepath.Join(t.TempDir(), "seeded")
	var progress bytes.Buffer
	res, err := seed(ctx, seedOptions{DataDir: dir, Keys: 2000, WriteKeys: keyFile, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if res.Users != 2000 || res.FirstUser != "load-user-1" || !strings.Contains(progress.String(), "2000/2000") {
		t.Fatalf("seed result %+v, progress %q", res, progress.String())
	}

	s := startServer(t, dir)
	if got := s.index.Len(); got != baseKeys+2000 {
		t.Fatalf("index has %d keys, want %d", got, baseKeys+2000)
	}
	// Rows are what the keystore itself would have written.
	k, err := s.store.KeyByFingerprint(ctx, mustFP(t, keyFile))
	if err != nil {
		t.Fatalf("seeded key: %v", err)
	}
	pk, err := keystore.ParseUserKey(k.Key)
	if err != nil {
		t.Fatal(err)
	}
	if pk.Normalized != k.Key || pk.Type != k.Type || pk.Bits != k.Bits || pk.FingerprintSHA256 != k.FingerprintSHA256 ||
		pk.FingerprintMD5 != k.FingerprintMD5 || k.UsageType != keystore.UsageAuth || k.CreatedAt.IsZero() {
		t.Fatalf("seeded key %+v differs from parsed %+v", k, pk)
	}
	u, err := s.store.User(ctx, k.UserID)
	if err != nil || u.Username != "load-user-1" || u.Email != "load-user-1@load.invalid" || u.State != keystore.StateActive {
		t.Fatalf("seeded user %+v, %v", u, err)
	}

	// The seeded key and the existing one authenticate.
	code := cli(ctx, []string{"run", "--addr", s.addr, "--key", keyFile, "--count", "5", "--concurrency", "2", "--host-key-check=false", "--json"}, io.Discard, io.Discard)
	if code != 0 {
		t.Fatalf("run with the seeded key: exit %d", code)
	}
	r, err := runLoad(ctx, runOptions{Addr: s.addr, Signer: existing, Count: 2})
	if err != nil || r.Handshakes != 2 {
		t.Fatalf("existing key: %+v %v", r, err)
	}
	s.store.Close()

	// Seeding again keeps everything and continues the numbering.
	res, err = seed(ctx, seedOptions{DataDir: dir, Keys: 10})
	if err != nil {
		t.Fatal(err)
	}
	if res.FirstUser != "load-user-2001" {
		t.Fatalf("second seed starts at %s", res.FirstUser)
	}
	s2 := startServer(t, dir)
	if got := s2.index.Len(); got != baseKeys+2010 {
		t.Fatalf("index has %d keys after second seed, want %d", got, baseKeys+2010)
	}
}

func mustFP(t *testing.T, keyFile string) string {
	t.Helper()
	signer, err := loadSigner(keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	return gossh.FingerprintSHA256(signer.PublicKey())
}

func TestRunWithCertificate(t *testing.T) {
	ctx := context.Background()
	s := startServer(t, t.TempDir())
	s.addUser(t, "alice")
	alice, err := s.store.UserByUsername(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	name, path := "eng", "eng"
	g, err := s.store.CreateGroup(ctx, keystore.Actor{}, keystore.GroupInput{Name: &name, Path: &path}, alice.ID)
	if err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	ca, _ := newSigner(t)
	caLine := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(ca.PublicKey())))
	if _, err := s.store.CreateCA(ctx, keystore.Actor{}, g.ID, keystore.CAInput{Title: "ca", Key: caLine}); err != nil {
		t.Fatalf("CreateCA: %v", err)
	}
	if _, err := s.store.UpdateUser(ctx, keystore.Actor{}, alice.ID, keystore.UserInput{EnterpriseGroupID: &g.ID}); err != nil {
		t.Fatalf("UpdateUser: %v", err)
	}
	// A key keygate does not know, certified by the group CA.
	userKey, priv := newSigner(t)
	now := time.Now()
	c := &gossh.Certificate{
		Key: userKey.PublicKey(), Serial: 7, CertType: gossh.UserCert, KeyId: "alice",
		ValidPrincipals: []string{"git", "alice"},
		ValidAfter:      uint64(now.Add(-5 * time.Minute).Unix()), ValidBefore: uint64(now.Add(time.Hour).Unix()),
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	keyPath := writeKey(t, priv)
	certPath := keyPath + "-cert.pub"
	if err := os.WriteFile(certPath, gossh.MarshalAuthorizedKey(c), 0o644); err != nil {
		t.Fatal(err)
	}

	var out, errb bytes.Buffer
	code := cli(ctx, []string{"run", "--addr", s.addr, "--key", keyPath, "--cert", certPath, "--count", "6", "--concurrency", "2",
		"--json", "--host-key-check=false"}, &out, &errb)
	var res Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("exit %d, json: %v: %s %s", code, err, out.String(), errb.String())
	}
	if code != 0 || res.Handshakes != 6 || res.TotalErrors() != 0 || res.KeyType != gossh.CertAlgoED25519v01 {
		t.Fatalf("exit %d, result %+v", code, res)
	}
	// Without the certificate the bare key is unknown.
	r, err := runLoad(ctx, runOptions{Addr: s.addr, Signer: userKey, Count: 2})
	if err != nil || r.Errors[errAuth] != 2 {
		t.Fatalf("bare key: %+v %v", r, err)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	s := startServer(t, t.TempDir())
	signer := s.addUser(t, "frank")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	res, err := runLoad(ctx, runOptions{Addr: s.addr, Signer: signer, Concurrency: 2, Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 15*time.Second {
		t.Fatalf("run went on for %v after cancel", el)
	}
	if res.Handshakes == 0 || res.Errors[errDial] != 0 {
		t.Fatalf("result %+v", res)
	}
}

func TestRunCancelCutsStalledHandshakes(t *testing.T) {
	// A server that accepts and never speaks: handshakes stall until the
	// per-connection timeout, but Ctrl-C (cancel) ends the run at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	signer, _ := newSigner(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	res, err := runLoad(ctx, runOptions{Addr: ln.Addr().String(), Signer: signer, Concurrency: 3, Duration: time.Hour, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("run went on for %v after cancel", el)
	}
	if res.TotalErrors() != 0 || res.Attempts != 0 {
		t.Fatalf("interrupted attempts counted: %+v", res)
	}
}

// TestSeedRefusesADataDirInUse: while a keygate serves a data dir (it holds
// keygate.lock shared), the seeder refuses it instead of writing keys the
// running index would never see; once keygate stopped, it seeds.
func TestSeedRefusesADataDirInUse(t *testing.T) {
	dir := t.TempDir()
	release, err := keystore.LockDataDir(dir, false) // what keygate serve holds
	if err != nil {
		t.Fatal(err)
	}
	_, err = seed(context.Background(), seedOptions{DataDir: dir, Keys: 10})
	if err == nil || !strings.Contains(err.Error(), "a running keygate holds") {
		t.Fatalf("seed on a data dir in use: %v", err)
	}
	release()
	if _, err := seed(context.Background(), seedOptions{DataDir: dir, Keys: 10}); err != nil {
		t.Fatalf("seed after keygate stopped: %v", err)
	}
}
