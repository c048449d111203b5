package httpapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/httpapi"
	"github.com/keygate/keygate/internal/testutil"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/pgtest"
)

// adminSecret is the bootstrap admin token of every test server.
const adminSecret = "kgpat-some-fixed-admin-token-123"

// fixtureDir holds the fixtures of this package's tests (see its README).
var fixtureDir = filepath.Join("..", "testdata", "httpapi")

var update = flag.Bool("update", false, "regenerate the fixtures in testdata/httpapi")

// env is one keygate REST server on a fresh SQLite store.
type env struct {
	ctx   context.Context
	clock *testutil.Clock
	store *keystore.Store
	api   *httpapi.API
	srv   *httptest.Server
	admin *keystore.User
	logs  *testutil.SyncBuffer
	dir   string // holds keygate.db (SQLite)
	dsn   string // the store's DSN (SQLite file or PostgreSQL URL)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	c := testutil.NewClock(time.Now().UTC())
	dir := t.TempDir()
	dsn := filepath.Join(dir, "keygate.db")
	if os.Getenv("KEYGATE_TEST_BACKEND") == "postgres" {
		dsn = pgtest.NewDatabase(t)
	}
	store, err := keystore.Open(ctx, keystore.Config{DSN: dsn, Now: c.Now, CAKey: testCAKey})
	if err != nil {
		t.Fatalf("keystore.Open: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	secret, err := store.EnsureAdmin(ctx, adminSecret)
	if err != nil || secret != adminSecret {
		t.Fatalf("EnsureAdmin = %q, %v", secret, err)
	}
	admin, err := store.UserByUsername(ctx, "root")
	if err != nil {
		t.Fatalf("root: %v", err)
	}
	logs := &testutil.SyncBuffer{}
	api, err := httpapi.New(httpapi.Config{Store: store, Version: "test",
		Log:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Repos: keystore.Repos{Root: filepath.Join(t.TempDir(), "repositories")}})
	if err != nil {
		t.Fatalf("httpapi.New: %v", err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &env{ctx: ctx, clock: c, store: store, api: api, srv: srv, admin: admin, logs: logs, dir: dir, dsn: dsn}
}

// newUser creates an active user (through the store) and an api token for it.
func (e *env) newUser(t *testing.T, username string) (*keystore.User, string) {
	t.Helper()
	email := username + "@example.com"
	u, err := e.store.CreateUser(e.ctx, keystore.Actor{}, keystore.UserInput{Username: &username, Email: &email})
	if err != nil {
		t.Fatalf("CreateUser(%s): %v", username, err)
	}
	return u, e.newToken(t, u.ID, nil, keystore.ScopeAPI)
}

// newToken creates a token for userID with the given scopes and expiry.
func (e *env) newToken(t *testing.T, userID int64, expires *time.Time, scopes ...string) string {
	t.Helper()
	_, secret, err := e.store.CreateToken(e.ctx, keystore.Actor{}, userID,
		keystore.TokenInput{Name: "test", Scopes: scopes, ExpiresAt: expires})
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	return secret
}

// response is a buffered HTTP response.
type response struct {
	Code   int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a generic value.
func (r response) JSON(t *testing.T) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("body is not JSON (%v): %q", err, r.Body)
	}
	return v
}

// Object decodes the body as a JSON object.
func (r response) Object(t *testing.T) map[string]any {
	t.Helper()
	m, ok := r.JSON(t).(map[string]any)
	if !ok {
		t.Fatalf("body is not a JSON object: %s", r.Body)
	}
	return m
}

// List decodes the body as a JSON array of objects.
func (r response) List(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatalf("body is not a JSON array of objects (%v): %s", err, r.Body)
	}
	return out
}

// raw sends a request with exactly these headers and body.
func (e *env) raw(t *testing.T, method, path string, hdr http.Header, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, method, e.srv.URL+path, body)
	if err != nil {
		t.Fatalf("NewRequest(%s %s): %v", method, path, err)
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return response{Code: res.StatusCode, Header: res.Header, Body: b}
}

// do sends body (nil: none; otherwise JSON-encoded) with the token in
// PRIVATE-TOKEN (none if token is "").
func (e *env) do(t *testing.T, method, path, token string, body any) response {
	t.Helper()
	hdr := http.Header{}
	if token != "" {
		hdr.Set("PRIVATE-TOKEN", token)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
		hdr.Set("Content-Type", "application/json")
	}
	return e.raw(t, method, path, hdr, rd)
}

// expect fails unless r has status code.
func expect(t *testing.T, what string, r response, code int) {
	t.Helper()
	if r.Code != code {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.Code, code, r.Body)
	}
}

// jsonEqual reports whether two JSON documents are equal as values.
func jsonEqual(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation %q: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

// expectBody fails unless r has status code and exactly the JSON body want.
func expectBody(t *testing.T, what string, r response, code int, want string) {
	t.Helper()
	if r.Code != code || !jsonEqual(t, r.Body, want) {
		t.Fatalf("%s: got %d %s, want %d %s", what, r.Code, bytes.TrimSpace(r.Body), code, want)
	}
}

// newSigner returns a fresh ed25519 key pair as an ssh.Signer.
func newSigner(t testing.TB) gossh.Signer { return testutil.NewSigner(t) }

// authorizedKey renders pub as an authorized_keys line with a comment.
func authorizedKey(pub gossh.PublicKey, comment string) string {
	line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pub)))
	if comment != "" {
		line += " " + comment
	}
	return line
}

// newKey returns a fresh ed25519 public key line and its parsed form.
func newKey(t testing.TB, comment string) (string, gossh.PublicKey) {
	t.Helper()
	pub := newSigner(t).PublicKey()
	return authorizedKey(pub, comment), pub
}

// keyBase64 returns the base64 blob of an authorized_keys line.
func keyBase64(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

// readFixture reads a file of testdata/httpapi.
func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatalf("fixture %s: %v (regenerate with: go test ./httpapi -run TestFixtures -update)", name, err)
	}
	return strings.TrimSpace(string(b))
}

// counts is a snapshot of how much the store holds.
type counts struct {
	Users, Keys, Groups, Tokens, ActiveTokens, AuditEvents, GPGKeys, CAs, Members int
	Blocked                                                                       int
}

func (e *env) counts(t *testing.T) counts {
	t.Helper()
	one := keystore.Page{Page: 1, PerPage: 1}
	var c counts
	var err error
	check := func(what string) {
		if err != nil {
			t.Fatalf("counting %s: %v", what, err)
		}
	}
	_, c.Users, err = e.store.ListUsers(e.ctx, keystore.UserFilter{}, one)
	check("users")
	blocked := true
	_, c.Blocked, err = e.store.ListUsers(e.ctx, keystore.UserFilter{Blocked: &blocked}, one)
	check("blocked users")
	_, c.Keys, err = e.store.ListKeys(e.ctx, keystore.KeyFilter{}, one)
	check("keys")
	groups, n, err := e.store.ListGroups(e.ctx, keystore.GroupFilter{}, keystore.Page{PerPage: 1 << 20})
	check("groups")
	c.Groups = n
	for _, g := range groups {
		var m int
		_, m, err = e.store.ListMembers(e.ctx, g.ID, one)
		check("members")
		c.Members += m
	}
	toks, n, err := e.store.ListTokens(e.ctx, 0, keystore.Page{PerPage: 1 << 20})
	check("tokens")
	c.Tokens = n
	for _, tk := range toks {
		if tk.Active(e.clock.Now()) {
			c.ActiveTokens++
		}
	}
	_, c.AuditEvents, err = e.store.ListAuditEvents(e.ctx, keystore.AuditFilter{}, one)
	check("audit events")
	_, c.CAs, err = e.store.ListCAs(e.ctx, 0, one)
	check("CAs")
	users, err := e.store.AllUsers(e.ctx)
	check("all users")
	for _, u := range users {
		var m int
		_, m, err = e.store.ListGPGKeys(e.ctx, u.ID, one)
		check("GPG keys")
		c.GPGKeys += m
	}
	return c
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func hexUpper(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

// rsaKey generates an RSA key of bits.
func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatalf("rsa.GenerateKey(%d): %v", bits, err)
	}
	return k
}

// rsaKeyLine returns a fresh RSA public key line of bits.
func rsaKeyLine(t testing.TB, bits int) string {
	t.Helper()
	pub, err := gossh.NewPublicKey(&rsaKey(t, bits).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return authorizedKey(pub, "rsa")
}
