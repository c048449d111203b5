package keystore_test

import (
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

func fp(pub gossh.PublicKey) [32]byte { return sha256.Sum256(pub.Marshal()) }

func followingIndex(t *testing.T, e *env) *authindex.Index {
	t.Helper()
	ix := authindex.New(e.s)
	if err := ix.Load(e.ctx); err != nil {
		t.Fatalf("Load: %v", err)
	}
	ix.Follow()
	return ix
}

// TestIndexReadYourWrites: every write is visible in the index when the
// store call returns.
func TestIndexReadYourWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ix := followingIndex(t, e)
	alice := e.user(t, "alice")
	pub, line := newEd25519(t, "a")
	k := e.key(t, alice.ID, line, keystore.UsageAuth)

	got, ok := ix.Key(fp(pub))
	if !ok || got.ID != k.ID || got.UserID != alice.ID || !got.CanAuthenticate() {
		t.Fatalf("Key after create = %+v, %v", got, ok)
	}
	if u, ok := ix.UserByLogin("ALICE"); !ok || u.ID != alice.ID {
		t.Fatalf("UserByLogin(ALICE) = %+v, %v", u, ok)
	}
	if u, ok := ix.UserByLogin("alice@example.com"); !ok || u.ID != alice.ID {
		t.Fatalf("UserByLogin(email) = %+v, %v", u, ok)
	}

	if _, err := e.s.SetUserState(e.ctx, sys, alice.ID, keystore.StateBlocked); err != nil {
		t.Fatal(err)
	}
	if !ix.UserBlocked(alice.ID) {
		t.Fatal("blocked user not blocked in the index")
	}
	if _, err := e.s.SetUserState(e.ctx, sys, alice.ID, keystore.StateActive); err != nil {
		t.Fatal(err)
	}
	if ix.UserBlocked(alice.ID) {
		t.Fatal("unblocked user still blocked in the index")
	}

	g := e.group(t, "eng", nil, alice.ID)
	sub := e.group(t, "web", &g.ID, 0)
	bob := e.user(t, "bob")
	if _, err := e.s.AddMember(e.ctx, sys, g.ID, bob.ID, keystore.Reporter); err != nil {
		t.Fatal(err)
	}
	if l := ix.AccessLevel(bob.ID, sub.ID); l != keystore.Reporter {
		t.Fatalf("inherited access level = %d, want %d", l, keystore.Reporter)
	}
	if err := e.s.RemoveMember(e.ctx, sys, g.ID, bob.ID); err != nil {
		t.Fatal(err)
	}
	if l := ix.AccessLevel(bob.ID, sub.ID); l != 0 {
		t.Fatalf("access level after removal = %d", l)
	}

	caPub, caLine := newEd25519(t, "ca")
	ca, err := e.s.CreateCA(e.ctx, sys, g.ID, keystore.CAInput{Title: "ca", Key: caLine})
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := ix.CA(fp(caPub), g.ID); !ok || c.GroupID != g.ID || c.ID != ca.ID || !ix.CAKnown(fp(caPub)) {
		t.Fatalf("CA = %+v, %v", c, ok)
	}
	if _, err := e.s.CreateRevocation(e.ctx, sys, ca, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "42"}); err != nil {
		t.Fatal(err)
	}
	if !ix.Revoked(g.ID, fp(caPub), 42, "", "", 0) || ix.Revoked(g.ID, fp(caPub), 43, "", "", 0) {
		t.Fatal("serial revocation not reflected")
	}
	if err := e.s.DeleteCA(e.ctx, sys, g.ID, ca.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := ix.CA(fp(caPub), g.ID); ok || ix.CAKnown(fp(caPub)) || ix.CAExists(ca.ID) {
		t.Fatal("deleted CA still in the index")
	}
	if !ix.Revoked(g.ID, fp(caPub), 42, "", "", 0) {
		t.Fatal("the revocation of a deleted CA's key was dropped from the index")
	}

	if err := e.s.DeleteKey(e.ctx, sys, alice.ID, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := ix.Key(fp(pub)); ok {
		t.Fatal("deleted key still in the index")
	}
	pub2, line2 := newEd25519(t, "b")
	e.key(t, bob.ID, line2, keystore.UsageSigning)
	if err := e.s.DeleteUser(e.ctx, sys, bob.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := ix.Key(fp(pub2)); ok {
		t.Fatal("key of a deleted user still in the index")
	}
	if _, ok := ix.User(bob.ID); ok {
		t.Fatal("deleted user still in the index")
	}
}

// TestIndexLoadMatchesFollowing: after a series of writes, an index loaded
// from scratch answers every lookup like the index that followed the writes.
func TestIndexLoadMatchesFollowing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ix := followingIndex(t, e)
	var pubs []gossh.PublicKey
	var users []*keystore.User
	for i := range 12 {
		u := e.user(t, fmt.Sprintf("user%d", i))
		users = append(users, u)
		usage := []string{keystore.UsageAuth, keystore.UsageSigning, keystore.UsageAuthAndSigning}[i%3]
		pub, line := newEd25519(t, "k")
		k := e.key(t, u.ID, line, usage)
		pubs = append(pubs, pub)
		if i%4 == 0 {
			if err := e.s.DeleteKey(e.ctx, sys, u.ID, k.ID); err != nil {
				t.Fatal(err)
			}
		}
		if i%5 == 0 {
			if _, err := e.s.SetUserState(e.ctx, sys, u.ID, keystore.StateBlocked); err != nil {
				t.Fatal(err)
			}
		}
	}
	g := e.group(t, "g", nil, users[1].ID)
	if _, err := e.s.AddMember(e.ctx, sys, g.ID, users[2].ID, keystore.Developer); err != nil {
		t.Fatal(err)
	}
	fresh := authindex.New(e.s)
	if err := fresh.Load(e.ctx); err != nil {
		t.Fatal(err)
	}
	if fresh.Len() != ix.Len() || fresh.Applied() != ix.Applied() {
		t.Fatalf("fresh index: %d keys at change %d; following: %d keys at change %d",
			fresh.Len(), fresh.Applied(), ix.Len(), ix.Applied())
	}
	for i, pub := range pubs {
		a, aok := ix.Key(fp(pub))
		b, bok := fresh.Key(fp(pub))
		if a != b || aok != bok {
			t.Errorf("key %d: following %+v %v, fresh %+v %v", i, a, aok, b, bok)
		}
	}
	for _, u := range users {
		if ix.UserBlocked(u.ID) != fresh.UserBlocked(u.ID) || ix.Username(u.ID) != fresh.Username(u.ID) ||
			ix.AccessLevel(u.ID, g.ID) != fresh.AccessLevel(u.ID, g.ID) {
			t.Errorf("user %s differs between following and fresh index", u.Username)
		}
	}
}

// TestIndexConcurrentLookupsAndWrites runs lookups from several goroutines
// while keys are added and deleted (meaningful under -race): a key is never
// seen after its delete returned.
func TestIndexConcurrentLookupsAndWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ix := followingIndex(t, e)
	u := e.user(t, "alice")
	stable, stableLine := newEd25519(t, "stable")
	e.key(t, u.ID, stableLine, keystore.UsageAuth)

	var stop atomic.Bool
	var wg sync.WaitGroup
	var misses atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := fp(stable)
			for !stop.Load() {
				if _, ok := ix.Key(f); !ok {
					misses.Add(1)
				}
				ix.AccessLevel(u.ID, 1)
				ix.UserByLogin("alice")
			}
		}()
	}
	for range 30 {
		pub, line := newEd25519(t, "churn")
		k := e.key(t, u.ID, line, keystore.UsageAuth)
		if _, ok := ix.Key(fp(pub)); !ok {
			t.Error("new key not visible after create returned")
		}
		if err := e.s.DeleteKey(e.ctx, sys, u.ID, k.ID); err != nil {
			t.Fatal(err)
		}
		if _, ok := ix.Key(fp(pub)); ok {
			t.Error("key visible after delete returned")
		}
	}
	stop.Store(true)
	wg.Wait()
	if misses.Load() != 0 {
		t.Fatalf("a stable key went missing %d times during unrelated writes", misses.Load())
	}
}

// TestIndexCAScopedToGroup: two top-level groups register the same CA key;
// each has its own CA in the index, and one group's revocations refuse
// nothing of the other's. Deleting one group's CA leaves the other's.
func TestIndexCAScopedToGroup(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ix := followingIndex(t, e)
	a := e.group(t, "a", nil, 0)
	b := e.group(t, "b", nil, 0)
	caPub, caLine := newEd25519(t, "ca")
	inA, err := e.s.CreateCA(e.ctx, sys, a.ID, keystore.CAInput{Title: "a's", Key: caLine})
	if err != nil {
		t.Fatal(err)
	}
	inB, err := e.s.CreateCA(e.ctx, sys, b.ID, keystore.CAInput{Title: "b's", Key: caLine})
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := ix.CA(fp(caPub), a.ID); !ok || c.ID != inA.ID {
		t.Fatalf("CA in a = %+v, %v; want %d", c, ok, inA.ID)
	}
	if c, ok := ix.CA(fp(caPub), b.ID); !ok || c.ID != inB.ID {
		t.Fatalf("CA in b = %+v, %v; want %d", c, ok, inB.ID)
	}
	if got := ix.CAs(fp(caPub)); len(got) != 2 || got[0].ID != inA.ID || got[1].ID != inB.ID {
		t.Fatalf("CAs = %+v", got)
	}
	for _, in := range []keystore.RevocationInput{{Kind: keystore.RevokeSerial, Value: "42"}, {Kind: keystore.RevokeKeyID, Value: "alice"}} {
		if _, err := e.s.CreateRevocation(e.ctx, sys, inA, in); err != nil {
			t.Fatal(err)
		}
	}
	if !ix.Revoked(a.ID, fp(caPub), 42, "", "", 0) || !ix.Revoked(a.ID, fp(caPub), 1, "Alice", "", 0) {
		t.Fatal("a's revocations do not refuse a's certificates")
	}
	if ix.Revoked(b.ID, fp(caPub), 42, "", "", 0) || ix.Revoked(b.ID, fp(caPub), 1, "alice", "", 0) {
		t.Fatal("a's revocations refuse b's certificates")
	}
	if err := e.s.DeleteCA(e.ctx, sys, a.ID, inA.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := ix.CA(fp(caPub), a.ID); ok || !ix.CAKnown(fp(caPub)) {
		t.Fatal("after a deleted its CA: a's still found, or b's lost")
	}
	if c, ok := ix.CA(fp(caPub), b.ID); !ok || c.ID != inB.ID {
		t.Fatalf("b's CA after a deleted its own: %+v, %v", c, ok)
	}
	if !ix.Revoked(a.ID, fp(caPub), 42, "", "", 0) {
		t.Fatal("a's revocation left the index with a's CA row")
	}
}
