package keystore_test

import (
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/internal/krl"
	"github.com/keygate/keygate/keystore"
)

// TestGroupKRL: a group's KRL holds exactly its own revocations of the CA
// keys it holds now (serials merged, 0 left out; key ids; fingerprints),
// nothing of another group holding the same key; every change of its CAs
// or revocations bumps the version and its time, and nothing else does.
func TestGroupKRL(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	owner := e.user(t, "owner")
	g := e.group(t, "fleet", nil, owner.ID)
	other := e.group(t, "other", nil, owner.ID)
	sub := e.group(t, "sub", &g.ID, 0)

	st, err := e.s.GroupKRLState(e.ctx, g.ID)
	if err != nil || st.Version != 0 || !st.UpdatedAt.Equal(t0ms) || st.Public {
		t.Fatalf("new group: state %+v, %v", st, err)
	}
	key1, line1 := newEd25519(t, "ca1")
	key2, line2 := newEd25519(t, "ca2")
	certKey, _ := newEd25519(t, "")
	step := func() time.Time { e.clock.Advance(time.Second); return e.clock.Now().UTC().Truncate(time.Millisecond) }
	step()
	ca1, err := e.s.CreateCA(e.ctx, sys, g.ID, keystore.CAInput{Title: "one", Key: line1})
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := e.s.CreateCA(e.ctx, sys, g.ID, keystore.CAInput{Title: "two", Key: line2})
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := e.s.CreateCA(e.ctx, sys, other.ID, keystore.CAInput{Title: "same key elsewhere", Key: line1})
	if err != nil {
		t.Fatal(err)
	}
	revoke := func(ca *keystore.GroupCA, kind, value string) *keystore.Revocation {
		t.Helper()
		r, err := e.s.CreateRevocation(e.ctx, sys, ca, keystore.RevocationInput{Kind: kind, Value: value})
		if err != nil {
			t.Fatalf("revoke %s %s: %v", kind, value, err)
		}
		return r
	}
	for _, v := range []string{"5", "6", "0x7", "9", "0"} {
		revoke(ca1, keystore.RevokeSerial, v)
	}
	revoke(ca1, keystore.RevokeKeyID, "alice")
	revoke(ca1, keystore.RevokeFingerprint, gossh.FingerprintSHA256(certKey))
	revoke(ca2, keystore.RevokeSerial, "100")
	revoke(otherCA, keystore.RevokeSerial, "1000")
	revoke(otherCA, keystore.RevokeKeyID, "bob")
	last := step()
	lastRev := revoke(ca2, keystore.RevokeKeyID, "carol")

	k, st, err := e.s.GroupKRL(e.ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != 2+9 || !st.UpdatedAt.Equal(last) {
		t.Errorf("state %+v, want version 11 at %v", st, last)
	}
	want := &krl.KRL{Version: 11, GeneratedAt: uint64(last.Unix()), Comment: "keygate group " + strconv.FormatInt(g.ID, 10),
		Certs: []*krl.CertRevocations{
			{CA: key1.Marshal(), Serials: []krl.Range{{Lo: 5, Hi: 7}, {Lo: 9, Hi: 9}}, KeyIDs: []string{"alice"}},
			{CA: key2.Marshal(), Serials: []krl.Range{{Lo: 100, Hi: 100}}, KeyIDs: []string{"carol"}},
		},
		SHA256: [][32]byte{sha256.Sum256(certKey.Marshal())}}
	wantKRL(t, k, want)
	if ok, _, _ := e.s.GroupKRL(e.ctx, other.ID); len(ok.Certs) != 1 || len(ok.Certs[0].KeyIDs) != 1 || ok.Certs[0].KeyIDs[0] != "bob" {
		t.Errorf("the other group's KRL = %+v", ok.Certs)
	}

	// A refused write changes nothing.
	if _, err := e.s.CreateRevocation(e.ctx, sys, ca1, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "5"}); err == nil {
		t.Fatal("a duplicate revocation was accepted")
	}
	if st2, _ := e.s.GroupKRLState(e.ctx, g.ID); st2.Version != 11 {
		t.Errorf("after a refused write: version %d", st2.Version)
	}

	// Lifting a revocation, deleting and re-adding a CA: each a new version;
	// the deleted CA's revocations leave the KRL and come back with it.
	at := step()
	if err := e.s.DeleteRevocation(e.ctx, sys, ca2, lastRev.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.s.DeleteCA(e.ctx, sys, g.ID, ca2.ID); err != nil {
		t.Fatal(err)
	}
	k, st, _ = e.s.GroupKRL(e.ctx, g.ID)
	if st.Version != 13 || !st.UpdatedAt.Equal(at) || len(k.Certs) != 1 || string(k.Certs[0].CA) != string(key1.Marshal()) {
		t.Errorf("after deleting CA 2: version %d at %v, %d sections", st.Version, st.UpdatedAt, len(k.Certs))
	}
	if _, err := e.s.CreateCA(e.ctx, sys, g.ID, keystore.CAInput{Title: "two again", Key: line2}); err != nil {
		t.Fatal(err)
	}
	k, st, _ = e.s.GroupKRL(e.ctx, g.ID)
	want.Version, want.Certs[1].KeyIDs = 14, nil
	want.GeneratedAt = uint64(at.Unix())
	wantKRL(t, k, want)

	// The flag: top-level groups only; it does not change the list.
	if _, err := e.s.UpdateGroup(e.ctx, sys, sub.ID, keystore.GroupInput{KRLPublic: ptr(true)}); err == nil {
		t.Error("a subgroup's KRL was made public")
	} else {
		wantOnlyField(t, err, "krl_public", "top-level")
	}
	ug, err := e.s.UpdateGroup(e.ctx, sys, g.ID, keystore.GroupInput{KRLPublic: ptr(true)})
	if err != nil || !ug.KRLPublic {
		t.Fatalf("UpdateGroup(krl_public) = %+v, %v", ug, err)
	}
	if got, _ := e.s.Group(e.ctx, g.ID); !got.KRLPublic {
		t.Error("Group does not read krl_public back")
	}
	if st, _ := e.s.GroupKRLState(e.ctx, g.ID); !st.Public || st.Version != 14 {
		t.Errorf("after publishing: %+v", st)
	}

	_, err = e.s.GroupKRLState(e.ctx, sub.ID)
	wantIs(t, err, keystore.ErrNotTopLevel)
	_, _, err = e.s.GroupKRL(e.ctx, sub.ID)
	wantIs(t, err, keystore.ErrNotTopLevel)
	_, _, err = e.s.GroupKRL(e.ctx, 999999)
	wantIs(t, err, keystore.ErrNotFound)

	cas, cst, err := e.s.GroupCAKeys(e.ctx, g.ID)
	if err != nil || len(cas) != 2 || cas[0].ID != ca1.ID || cas[1].Title != "two again" || cst.Version != 14 {
		t.Errorf("GroupCAKeys = %v, version %d, %v", cas, cst.Version, err)
	}
}

// wantKRL compares a KRL with the one expected, as OpenSSH reads them.
func wantKRL(t *testing.T, got, want *krl.KRL) {
	t.Helper()
	g, err := got.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	w, err := want.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(g) != string(w) {
		gp, _ := krl.Parse(g)
		wp, _ := krl.Parse(w)
		t.Fatalf("KRL differs:\n got %+v\nwant %+v", describe(gp), describe(wp))
	}
}

func describe(k *krl.KRL) string {
	if k == nil {
		return "<nil>"
	}
	s := fmt.Sprintf("v%d at %d %q sha256=%d:", k.Version, k.GeneratedAt, k.Comment, len(k.SHA256))
	for _, c := range k.Certs {
		s += fmt.Sprintf(" [CA %x serials %v ids %q]", sha256.Sum256(c.CA), c.Serials, c.KeyIDs)
	}
	return s
}

// BenchmarkGroupKRL builds a group's KRL with 100,000 revocations from the
// database (one read-only snapshot, then Marshal): 80,000 serials picked
// at random from the first 400,000 (with runs where whole batches were
// revoked), 10,000 key ids and 10,000 fingerprints, over two CA keys.
// docs/performance.md has the figures.
func BenchmarkGroupKRL(b *testing.B) {
	e := newBenchEnv(b)
	owner, err := e.s.CreateUser(e.ctx, sys, keystore.UserInput{Username: ptr("owner"), Email: ptr("owner@example.com")})
	if err != nil {
		b.Fatal(err)
	}
	g, err := e.s.CreateGroup(e.ctx, sys, keystore.GroupInput{Path: ptr("fleet")}, owner.ID)
	if err != nil {
		b.Fatal(err)
	}
	var cas []*keystore.GroupCA
	for i := range 2 {
		_, line := newEd25519(b, "ca")
		ca, err := e.s.CreateCA(e.ctx, sys, g.ID, keystore.CAInput{Title: "ca" + strconv.Itoa(i), Key: line})
		if err != nil {
			b.Fatal(err)
		}
		cas = append(cas, ca)
	}
	db := e.writableDB(b)
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	q := `INSERT INTO cert_revocations (kind, value, reason, created_at, ca_fingerprint, group_id) VALUES (?, ?, '', 0, ?, ?)`
	if onPostgres() {
		q = `INSERT INTO cert_revocations (kind, value, reason, created_at, ca_fingerprint, group_id) VALUES ($1, $2, '', 0, $3, $4)`
	}
	stmt, err := tx.Prepare(q)
	if err != nil {
		b.Fatal(err)
	}
	r := mrand.New(mrand.NewPCG(1, 100000))
	seen := map[string]bool{}
	add := func(kind, value string, ca *keystore.GroupCA) {
		if seen[kind+ca.FingerprintSHA256+value] {
			return
		}
		seen[kind+ca.FingerprintSHA256+value] = true
		if _, err := stmt.Exec(kind, value, ca.FingerprintSHA256, g.ID); err != nil {
			b.Fatal(err)
		}
	}
	for len(seen) < 80000 {
		ca := cas[r.IntN(2)]
		s := 1 + r.Uint64N(400000)
		n := uint64(1)
		if r.IntN(50) == 0 {
			n = 1 + r.Uint64N(100) // a batch revoked at once
		}
		for i := range n {
			add(keystore.RevokeSerial, strconv.FormatUint(s+i, 10), ca)
		}
	}
	for i := range 10000 {
		add(keystore.RevokeKeyID, fmt.Sprintf("user%d@example.com:laptop", i), cas[i%2])
	}
	for i := range 10000 {
		h := sha256.Sum256([]byte(strconv.Itoa(i)))
		fp := "SHA256:" + base64.RawStdEncoding.EncodeToString(h[:])
		add(keystore.RevokeFingerprint, fp, cas[i%2])
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var size int
	for b.Loop() {
		k, _, err := e.s.GroupKRL(e.ctx, g.ID)
		if err != nil {
			b.Fatal(err)
		}
		data, err := k.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
	}
	b.ReportMetric(float64(size), "krl-bytes")
	b.ReportMetric(float64(len(seen)), "revocations")
}

func newBenchEnv(b *testing.B) *env {
	b.Helper()
	if onPostgres() {
		b.Skip("SQLite only")
	}
	dir := b.TempDir()
	e := &env{ctx: b.Context(), dir: dir, dsn: dir + "/keygate.db"}
	s, err := keystore.Open(e.ctx, keystore.Config{DSN: e.dsn})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	e.s = s
	return e
}

// writableDB is a plain read-write handle on the env's SQLite database,
// for bulk loading a benchmark's rows.
func (e *env) writableDB(b *testing.B) *sql.DB {
	db, err := sql.Open("sqlite", "file:"+e.dsn+"?_pragma=busy_timeout(5000)")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}
