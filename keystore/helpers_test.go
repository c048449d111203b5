package keystore_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"database/sql"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver for rawDB
	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/internal/sealed"
	"github.com/keygate/keygate/internal/testutil"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/pgtest"
)

// t0 is the fixed start of every test clock. It carries nanoseconds and a
// non-UTC zone on purpose: the store must keep milliseconds, in UTC.
var t0 = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.FixedZone("CET", 3600))

// t0ms is t0 as the store reports it.
var t0ms = t0.UTC().Truncate(time.Millisecond)

// env is one store on a fresh database: a SQLite file, or with
// KEYGATE_TEST_BACKEND=postgres a new database on the PostgreSQL test
// server named by KEYGATE_TEST_POSTGRES (scripts/test.sh runs the suite
// both ways).
type env struct {
	ctx   context.Context
	dir   string
	dsn   string
	clock *testutil.Clock
	s     *keystore.Store
}

// onPostgres reports whether the suite runs against PostgreSQL.
func onPostgres() bool { return os.Getenv("KEYGATE_TEST_BACKEND") == "postgres" }

// sqliteOnly skips a test about SQLite's files on the PostgreSQL run.
func sqliteOnly(t *testing.T, why string) {
	t.Helper()
	if onPostgres() {
		t.Skip("SQLite-specific: " + why)
	}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{ctx: context.Background(), dir: dir, dsn: filepath.Join(dir, "keygate.db"), clock: testutil.NewClock(t0)}
	if onPostgres() {
		if pgtest.AdminURL() == "" {
			t.Fatal("KEYGATE_TEST_BACKEND=postgres needs KEYGATE_TEST_POSTGRES (see scripts/pg-test-server.sh)")
		}
		e.dsn = pgtest.NewDatabase(t)
	}
	e.s = e.open(t)
	if want := map[bool]string{true: "postgres", false: "sqlite"}[onPostgres()]; e.s.Backend() != want {
		t.Fatalf("Backend() = %q, want %q", e.s.Backend(), want)
	}
	return e
}

// testCAKey seals managed CAs' private keys in these tests.
var testCAKey = func() *sealed.Key {
	k, err := sealed.NewKey([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		panic(err)
	}
	return k
}()

// open opens (another handle on) the env's database and closes it at cleanup.
func (e *env) open(t *testing.T) *keystore.Store {
	t.Helper()
	s, err := keystore.Open(e.ctx, keystore.Config{DSN: e.dsn, Now: e.clock.Now, CAKey: testCAKey})
	if err != nil {
		t.Fatalf("Open(%s): %v", e.dsn, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawDB is a second, plain database/sql handle on the env's database (read
// only on SQLite), closed at cleanup.
func (e *env) rawDB(t *testing.T) *sql.DB {
	t.Helper()
	driver, dsn := "sqlite", "file:"+e.dsn+"?mode=ro"
	if onPostgres() {
		driver, dsn = "pgx", e.dsn
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var sys = keystore.Actor{}

func ptr[T any](v T) *T { return &v }

func (e *env) user(t *testing.T, username string) *keystore.User {
	t.Helper()
	u, err := e.s.CreateUser(e.ctx, sys, keystore.UserInput{Username: ptr(username), Email: ptr(username + "@example.com")})
	if err != nil {
		t.Fatalf("CreateUser(%q): %v", username, err)
	}
	return u
}

func (e *env) key(t *testing.T, userID int64, line, usage string) *keystore.Key {
	t.Helper()
	k, err := e.s.CreateKey(e.ctx, sys, userID, keystore.KeyInput{Title: "k", Key: line, UsageType: usage})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	return k
}

func (e *env) group(t *testing.T, path string, parent *int64, owner int64) *keystore.Group {
	t.Helper()
	g, err := e.s.CreateGroup(e.ctx, sys, keystore.GroupInput{Path: ptr(path), ParentID: parent}, owner)
	if err != nil {
		t.Fatalf("CreateGroup(%q): %v", path, err)
	}
	return g
}

// wantField asserts that err is a *ValidationError refusing exactly field
// (and, when extra fields are allowed, at least field) with a reason
// containing reason.
func wantField(t *testing.T, err error, field, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want validation error on %q (%q)", field, reason)
	}
	if !errors.Is(err, keystore.ErrInvalid) {
		t.Fatalf("err = %v, want errors.Is(err, ErrInvalid)", err)
	}
	var ve *keystore.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %T %v, want *ValidationError", err, err)
	}
	reasons, ok := ve.Fields[field]
	if !ok {
		t.Fatalf("fields = %v, want field %q", ve.Fields, field)
	}
	for _, r := range reasons {
		if strings.Contains(r, reason) {
			return
		}
	}
	t.Fatalf("field %q reasons = %q, want one containing %q", field, reasons, reason)
}

// wantOnlyField is wantField plus: no other field is reported.
func wantOnlyField(t *testing.T, err error, field, reason string) {
	t.Helper()
	wantField(t, err, field, reason)
	var ve *keystore.ValidationError
	errors.As(err, &ve)
	if len(ve.Fields) != 1 {
		t.Fatalf("fields = %v, want only %q", ve.Fields, field)
	}
}

func wantIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want errors.Is(err, %v)", err, target)
	}
}

// --- key material -------------------------------------------------------

func authorizedLine(t testing.TB, pub any, comment string) (gossh.PublicKey, string) {
	t.Helper()
	sp, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("NewPublicKey: %v", err)
	}
	line := strings.TrimSuffix(string(gossh.MarshalAuthorizedKey(sp)), "\n")
	if comment != "" {
		line += " " + comment
	}
	return sp, line
}

// newEd25519 returns a fresh ed25519 key as an authorized_keys line.
func newEd25519(t testing.TB, comment string) (gossh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return authorizedLine(t, pub, comment)
}

func newECDSA(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// RSA keys are slow to generate: one of each size per test binary.
var rsaKeys = map[int]func() *rsa.PrivateKey{}

func init() {
	for _, bits := range []int{1024, 2048, 3072, 4096} {
		rsaKeys[bits] = sync.OnceValue(func() *rsa.PrivateKey {
			// Generated outside a test's helper so that one slow key
			// is shared; failure is impossible short of a broken rand.
			k, err := rsa.GenerateKey(rand.Reader, bits)
			if err != nil {
				panic(err)
			}
			return k
		})
	}
}

func rsaKey(bits int) *rsa.PrivateKey {
	return rsaKeys[bits]()
}

// sshString is the SSH wire encoding of a string.
func sshString(b []byte) []byte {
	out := make([]byte, 4, 4+len(b))
	out[0], out[1], out[2], out[3] = byte(len(b)>>24), byte(len(b)>>16), byte(len(b)>>8), byte(len(b))
	return append(out, b...)
}

func blob(fields ...[]byte) []byte {
	var buf bytes.Buffer
	for _, f := range fields {
		buf.Write(sshString(f))
	}
	return buf.Bytes()
}

// skEd25519Line builds an sk-ssh-ed25519@openssh.com key by hand.
func skEd25519Line(t testing.TB, comment string) (gossh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return lineFromBlob(t, blob([]byte(gossh.KeyAlgoSKED25519), pub, []byte("ssh:")), comment)
}

// skECDSALine builds an sk-ecdsa-sha2-nistp256@openssh.com key by hand.
func skECDSALine(t testing.TB, comment string) (gossh.PublicKey, string) {
	t.Helper()
	k := newECDSA(t, elliptic.P256())
	point, err := k.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return lineFromBlob(t, blob([]byte(gossh.KeyAlgoSKECDSA256), []byte("nistp256"), point, []byte("ssh:")), comment)
}

// dsaBlob is a syntactically valid ssh-dss key (1024-bit P, 160-bit Q) that
// x/crypto parses; the numbers need not form a real group to be refused.
func dsaBlob() []byte {
	p := append([]byte{0x00, 0x80}, make([]byte, 127)...) // 2^1023, 1024 bits
	p[len(p)-1] = 0x01
	q := append([]byte{0x00, 0x80}, make([]byte, 19)...) // 2^159, 160 bits
	q[len(q)-1] = 0x01
	return blob([]byte(gossh.KeyAlgoDSA), p, q, []byte{0x02}, []byte{0x03})
}

func lineFromBlob(t testing.TB, b []byte, comment string) (gossh.PublicKey, string) {
	t.Helper()
	pub, err := gossh.ParsePublicKey(b)
	if err != nil {
		t.Fatalf("ParsePublicKey(hand-built blob): %v", err)
	}
	line := pub.Type() + " " + base64.StdEncoding.EncodeToString(b)
	if comment != "" {
		line += " " + comment
	}
	return pub, line
}

// certLine signs a user certificate for a fresh ed25519 key with a fresh CA.
func certLine(t testing.TB) string {
	t.Helper()
	signer := testutil.NewSigner(t)
	pub, _ := newEd25519(t, "")
	cert := &gossh.Certificate{
		Key:             pub,
		Serial:          7,
		CertType:        gossh.UserCert,
		KeyId:           "alice",
		ValidPrincipals: []string{"alice"},
		ValidAfter:      uint64(t0.Add(-time.Hour).Unix()),
		ValidBefore:     uint64(t0.Add(time.Hour).Unix()),
	}
	if err := cert.SignCert(rand.Reader, signer); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(gossh.MarshalAuthorizedKey(cert)), "\n") + " alice-cert"
}

// --- GPG ----------------------------------------------------------------

func armorEntity(t testing.TB, e *openpgp.Entity, private bool) string {
	t.Helper()
	var buf bytes.Buffer
	typ := "PGP PUBLIC KEY BLOCK"
	if private {
		typ = "PGP PRIVATE KEY BLOCK"
	}
	w, err := armor.Encode(&buf, typ, nil)
	if err != nil {
		t.Fatal(err)
	}
	if private {
		err = e.SerializePrivate(w, nil)
	} else {
		err = e.Serialize(w)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// newGPG returns a fresh entity; fast (EdDSA) unless rsa is set.
func newGPG(t testing.TB, name, email string, rsaKey bool) *openpgp.Entity {
	t.Helper()
	var cfg *packet.Config
	if !rsaKey {
		cfg = &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA}
	}
	e, err := openpgp.NewEntity(name, "", email, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
