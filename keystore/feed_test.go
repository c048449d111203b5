package keystore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/internal/testutil"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// Two Store handles on one SQLite file see each other's writes only through
// the change log, exactly like two keygate nodes on one PostgreSQL.

// follower is an index on its own store handle, kept in sync by a Feed.
type follower struct {
	s    *keystore.Store
	ix   *authindex.Index
	feed *authindex.Feed
}

// newFollower opens a second handle on e's database with an index that
// follows its own writes; run starts its feed (otherwise the test steps it).
func newFollower(t *testing.T, e *env, cfg authindex.FeedConfig, run bool) *follower {
	t.Helper()
	f := &follower{s: e.open(t)}
	f.ix = authindex.New(f.s)
	if err := f.ix.Load(e.ctx); err != nil {
		t.Fatal(err)
	}
	f.ix.Follow()
	f.feed = authindex.NewFeed(f.ix, cfg)
	if run {
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan error, 1)
		go func() { done <- f.feed.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Feed.Run: %v", err)
			}
		})
	}
	return f
}

// eventually waits up to 10 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, what, 10*time.Second, cond)
}

// probes is what sameAnswers asks both indexes about.
type probes struct {
	keys, cas []gossh.PublicKey
	users     []int64
	logins    []string
	groups    []int64
	revs      []revProbe
	dests     []string // host:port for BastionTargets
}

type revProbe struct {
	group  int64
	ca     [32]byte
	serial uint64
	keyID  string
}

// sameAnswers fails unless got answers every probe as want does.
func sameAnswers(t *testing.T, want, got *authindex.Index, p *probes) {
	t.Helper()
	diff := func(what string, w, g any) {
		t.Helper()
		if fmt.Sprint(w) != fmt.Sprint(g) {
			t.Errorf("%s: fresh index says %v, followed index says %v", what, w, g)
		}
	}
	diff("Len", want.Len(), got.Len())
	diff("Applied", want.Applied(), got.Applied())
	for _, k := range p.keys {
		w, wok := want.Key(fp(k))
		g, gok := got.Key(fp(k))
		diff("Key "+gossh.FingerprintSHA256(k), fmt.Sprint(w, wok, w.CanAuthenticate()), fmt.Sprint(g, gok, g.CanAuthenticate()))
	}
	for _, k := range p.cas {
		w, g := want.CAs(fp(k)), got.CAs(fp(k))
		diff("CA "+gossh.FingerprintSHA256(k), fmt.Sprint(w, want.CAKnown(fp(k))), fmt.Sprint(g, got.CAKnown(fp(k))))
		for _, c := range w {
			diff(fmt.Sprintf("CAExists(%d)", c.ID), want.CAExists(c.ID), got.CAExists(c.ID))
		}
	}
	for _, u := range p.users {
		w, wok := want.User(u)
		g, gok := got.User(u)
		diff(fmt.Sprintf("User %d", u), fmt.Sprint(w, wok, want.UserBlocked(u), want.Username(u)),
			fmt.Sprint(g, gok, got.UserBlocked(u), got.Username(u)))
		for _, gid := range p.groups {
			diff(fmt.Sprintf("AccessLevel(%d, %d)", u, gid), want.AccessLevel(u, gid), got.AccessLevel(u, gid))
		}
		for _, d := range p.dests {
			host, port, _ := cutPort(d)
			for _, plain := range []bool{true, false} {
				diff(fmt.Sprintf("BastionTargets(%d, %s, plain=%v)", u, d, plain),
					len(want.BastionTargets(u, 0, plain, host, port)), len(got.BastionTargets(u, 0, plain, host, port)))
			}
		}
	}
	for _, l := range p.logins {
		w, wok := want.UserByLogin(l)
		g, gok := got.UserByLogin(l)
		diff("UserByLogin "+l, fmt.Sprint(w, wok), fmt.Sprint(g, gok))
	}
	for _, gid := range p.groups {
		w, wok := want.Group(gid)
		g, gok := got.Group(gid)
		diff(fmt.Sprintf("Group %d", gid), fmt.Sprint(w, wok), fmt.Sprint(g, gok))
	}
	for _, r := range p.revs {
		diff(fmt.Sprintf("Revoked %+v", r), want.Revoked(r.group, r.ca, r.serial, r.keyID, "", 0), got.Revoked(r.group, r.ca, r.serial, r.keyID, "", 0))
	}
}

func cutPort(hp string) (string, uint32, bool) {
	for i := len(hp) - 1; i >= 0; i-- {
		if hp[i] == ':' {
			n, err := strconv.ParseUint(hp[i+1:], 10, 32)
			return hp[:i], uint32(n), err == nil
		}
	}
	return hp, 0, false
}

// freshIndex loads a new index from s.
func freshIndex(t *testing.T, ctx context.Context, s *keystore.Store) *authindex.Index {
	t.Helper()
	ix := authindex.New(s)
	if err := ix.Load(ctx); err != nil {
		t.Fatal(err)
	}
	return ix
}

// TestFeedFollowsAnotherStore: each kind of change written through store A
// reaches the index of store B through the change log, and B's index then
// answers like a freshly loaded one.
func TestFeedFollowsAnotherStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.s
	b := newFollower(t, e, authindex.FeedConfig{PollInterval: 5 * time.Millisecond}, true)
	ix := b.ix
	p := &probes{dests: []string{"db.internal:5432"}}

	caught := func(t *testing.T) {
		t.Helper()
		last, err := a.LastChange(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, fmt.Sprintf("index B applied %d, want %d", ix.Applied(), last), func() bool { return ix.Applied() == last })
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	owner := e.user(t, "owner")
	alice := e.user(t, "alice")
	p.users = append(p.users, owner.ID, alice.ID)
	p.logins = append(p.logins, "alice", "alice@example.com", "owner", "nobody")
	eventually(t, "user created on A is found on B", func() bool {
		u, ok := ix.UserByLogin("alice")
		return ok && u.ID == alice.ID && u.Active
	})

	pub, line := newEd25519(t, "alice")
	p.keys = append(p.keys, pub)
	k := e.key(t, alice.ID, line, keystore.UsageAuth)
	eventually(t, "key added on A is found on B", func() bool { got, ok := ix.Key(fp(pub)); return ok && got.ID == k.ID })

	_, err := a.SetUserState(e.ctx, sys, alice.ID, keystore.StateBlocked)
	must(err)
	eventually(t, "user blocked on A is blocked on B", func() bool { return ix.UserBlocked(alice.ID) })
	_, err = a.SetUserState(e.ctx, sys, alice.ID, keystore.StateActive)
	must(err)
	eventually(t, "user unblocked on A is active on B", func() bool { return !ix.UserBlocked(alice.ID) })

	top := e.group(t, "acme", nil, owner.ID)
	sub := e.group(t, "infra", &top.ID, 0)
	p.groups = append(p.groups, top.ID, sub.ID)
	eventually(t, "groups created on A are known on B", func() bool {
		g, ok := ix.Group(sub.ID)
		return ok && g.TopLevelID == top.ID && ix.AccessLevel(owner.ID, sub.ID) == keystore.Owner
	})

	_, err = a.AddMember(e.ctx, sys, top.ID, alice.ID, keystore.Developer)
	must(err)
	eventually(t, "member added on A", func() bool { return ix.AccessLevel(alice.ID, sub.ID) == keystore.Developer })
	_, err = a.UpdateMember(e.ctx, sys, top.ID, alice.ID, keystore.Maintainer)
	must(err)
	eventually(t, "member level changed on A", func() bool { return ix.AccessLevel(alice.ID, sub.ID) == keystore.Maintainer })
	must(a.RemoveMember(e.ctx, sys, top.ID, alice.ID))
	eventually(t, "member removed on A", func() bool { return ix.AccessLevel(alice.ID, sub.ID) == 0 })

	caPub, caLine := newEd25519(t, "acme-ca")
	p.cas = append(p.cas, caPub)
	ca, err := a.CreateCA(e.ctx, sys, top.ID, keystore.CAInput{Title: "ca", Key: caLine})
	must(err)
	eventually(t, "CA added on A", func() bool {
		got, ok := ix.CA(fp(caPub), top.ID)
		return ok && got.ID == ca.ID && got.GroupID == top.ID
	})

	p.revs = append(p.revs, revProbe{top.ID, fp(caPub), 42, ""}, revProbe{top.ID, fp(caPub), 7, "alice-laptop"}, revProbe{top.ID, fp(caPub), 8, ""})
	_, err = a.CreateRevocation(e.ctx, sys, ca, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "42"})
	must(err)
	_, err = a.CreateRevocation(e.ctx, sys, ca, keystore.RevocationInput{Kind: keystore.RevokeKeyID, Value: "alice-laptop"})
	must(err)
	eventually(t, "revocations added on A", func() bool {
		return ix.Revoked(top.ID, fp(caPub), 42, "", "", 0) && ix.Revoked(top.ID, fp(caPub), 7, "Alice-Laptop", "", 0) && !ix.Revoked(top.ID, fp(caPub), 8, "", "", 0)
	})

	_, err = a.AddMember(e.ctx, sys, sub.ID, alice.ID, keystore.Reporter)
	must(err)
	bt, err := a.CreateBastionTarget(e.ctx, sys, sub.ID, keystore.BastionTargetInput{Pattern: "db.internal:5432", MinAccessLevel: keystore.Reporter})
	must(err)
	eventually(t, "bastion target added on A", func() bool { return len(ix.BastionTargets(alice.ID, 0, true, "db.internal", 5432)) == 1 })
	sameAnswers(t, freshIndex(t, e.ctx, a), ix, p) // a midway comparison, with everything present
	must(a.DeleteBastionTarget(e.ctx, sys, sub.ID, bt.ID))
	eventually(t, "bastion target deleted on A", func() bool { return len(ix.BastionTargets(alice.ID, 0, true, "db.internal", 5432)) == 0 })

	_, err = a.UpdateGroup(e.ctx, sys, top.ID, keystore.GroupInput{EnforceSSHCertificates: ptr(true)})
	must(err)
	eventually(t, "group setting changed on A", func() bool { g, _ := ix.Group(top.ID); return g.EnforceSSHCertificates })

	proj, err := a.CreateProject(e.ctx, sys, keystore.ProjectInput{GroupID: sub.ID, Name: "site", Path: "site"})
	must(err)
	caught(t) // project changes carry nothing for the index, but the watermark moves over them

	// A deploy key: added, enabled on a group, made pushable, disabled,
	// and gone once enabled nowhere.
	dpub, dline := newEd25519(t, "ci")
	p.keys = append(p.keys, dpub)
	// Made by the group's owner, who answers for it (keystore.DeployKeyAccess).
	dk, err := a.CreateDeployKey(e.ctx, keystore.Actor{UserID: owner.ID}, keystore.DeployScope{ProjectID: proj.ID}, keystore.DeployKeyInput{Title: "ci", Key: dline})
	must(err)
	eventually(t, "deploy key added on A is found on B", func() bool {
		got, ok := ix.Key(fp(dpub))
		read, push := ix.DeployAccess(dk.ID, proj.ID, sub.ID)
		return ok && got.IsDeployKey() && read && !push
	})
	_, err = a.EnableDeployKey(e.ctx, sys, dk.ID, keystore.DeployScope{GroupID: top.ID})
	must(err)
	yes := true
	_, err = a.UpdateDeployKey(e.ctx, sys, dk.ID, keystore.DeployScope{GroupID: top.ID}, nil, &yes)
	must(err)
	eventually(t, "deploy key pushable through the group on B", func() bool { _, push := ix.DeployAccess(dk.ID, proj.ID, sub.ID); return push })
	must(a.DisableDeployKey(e.ctx, sys, dk.ID, keystore.DeployScope{ProjectID: proj.ID}))
	must(a.DisableDeployKey(e.ctx, sys, dk.ID, keystore.DeployScope{GroupID: top.ID}))
	eventually(t, "deploy key gone on B", func() bool { _, ok := ix.Key(fp(dpub)); return !ok })
	must(a.DeleteProject(e.ctx, sys, proj.ID))
	caught(t)

	must(a.DeleteCA(e.ctx, sys, top.ID, ca.ID))
	eventually(t, "CA deleted on A", func() bool {
		_, ok := ix.CA(fp(caPub), top.ID)
		// Its revocations stay in force for the group and key.
		return !ok && !ix.CAKnown(fp(caPub)) && !ix.CAExists(ca.ID) && ix.Revoked(top.ID, fp(caPub), 42, "", "", 0)
	})

	must(a.DeleteKey(e.ctx, sys, alice.ID, k.ID))
	eventually(t, "key deleted on A", func() bool { _, ok := ix.Key(fp(pub)); return !ok })

	pub2, line2 := newEd25519(t, "alice2")
	p.keys = append(p.keys, pub2)
	e.key(t, alice.ID, line2, keystore.UsageAuth)
	must(a.DeleteUser(e.ctx, sys, alice.ID))
	eventually(t, "user deleted on A", func() bool {
		_, kok := ix.Key(fp(pub2))
		_, uok := ix.UserByLogin("alice")
		return !kok && !uok && ix.AccessLevel(alice.ID, sub.ID) == 0
	})

	must(a.DeleteGroup(e.ctx, sys, top.ID))
	eventually(t, "group deleted on A", func() bool { _, ok := ix.Group(sub.ID); return !ok })

	caught(t)
	sameAnswers(t, freshIndex(t, e.ctx, a), ix, p)
	if st := b.feed.Status(); st.Reloads != 0 || st.Errors != 0 || !st.DatabaseReachable || st.Lag != 0 || st.Applied != ix.Applied() {
		t.Errorf("status after a clean run = %+v", st)
	}
}

// TestFeedInterleavedLocalAndRemoteWrites: writes through both stores at
// once. B's own writes apply at once (read-your-writes) while A's arrive
// through the feed; the watermark must not skip A's changes that B's
// higher-numbered writes overtook.
func TestFeedInterleavedLocalAndRemoteWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := newFollower(t, e, authindex.FeedConfig{PollInterval: 20 * time.Millisecond}, true)
	const n = 40
	p := &probes{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w, s := range []*keystore.Store{e.s, b.s} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				name := fmt.Sprintf("u%d-%d", w, i)
				u, err := s.CreateUser(e.ctx, sys, keystore.UserInput{Username: ptr(name), Email: ptr(name + "@example.com")})
				if err != nil {
					t.Error(err)
					return
				}
				pub, line := newEd25519(t, name)
				if _, err := s.CreateKey(e.ctx, sys, u.ID, keystore.KeyInput{Title: "k", Key: line, UsageType: keystore.UsageAuth}); err != nil {
					t.Error(err)
					return
				}
				if s == b.s {
					// read-your-writes on B
					if _, ok := b.ix.Key(fp(pub)); !ok {
						t.Errorf("B's own key %s not in B's index when CreateKey returned", name)
					}
				}
				mu.Lock()
				p.users, p.logins, p.keys = append(p.users, u.ID), append(p.logins, name), append(p.keys, pub)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	last, err := e.s.LastChange(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "B applies every change", func() bool { return b.ix.Applied() == last })
	if b.ix.Len() != 2*n {
		t.Errorf("B indexes %d keys, want %d", b.ix.Len(), 2*n)
	}
	sameAnswers(t, freshIndex(t, e.ctx, e.s), b.ix, p)
}

// damage runs a statement (arguments written $1, $2, …) on the env's
// database directly, bypassing the store and its change log.
func damage(t *testing.T, e *env, stmt string, args ...any) {
	t.Helper()
	driver, dsn := "sqlite", "file:"+e.dsn+"?_pragma=busy_timeout(10000)"
	if onPostgres() {
		driver, dsn = "pgx", e.dsn
	} else {
		for i := len(args); i >= 1; i-- {
			stmt = strings.ReplaceAll(stmt, "$"+strconv.Itoa(i), "?")
		}
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(e.ctx, stmt, args...); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// TestFeedHealsGapByReload: a change number that never appears (here: its
// row deleted) stops the feed for the grace period, then a full reload
// brings the index up to date, including the lost change.
func TestFeedHealsGapByReload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	clk := testutil.NewClock(t0)
	b := newFollower(t, e, authindex.FeedConfig{GapGrace: time.Second, Now: clk.Now}, false)
	carol := e.user(t, "carol")
	b.feed.Step(e.ctx)
	before := b.ix.Applied()

	pub, line := newEd25519(t, "carol")
	k := e.key(t, carol.ID, line, keystore.UsageAuth) // the change that goes missing
	dave := e.user(t, "dave")
	lost, err := e.s.LastChange(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	lost-- // the key's change; dave's is the last
	damage(t, e, `DELETE FROM changes WHERE seq = $1 AND entity = 'key'`, lost)
	if lost != before+1 {
		t.Fatalf("key change is %d, want %d", lost, before+1)
	}

	b.feed.Step(e.ctx)
	if _, ok := b.ix.Key(fp(pub)); ok {
		t.Fatal("the lost key change was applied")
	}
	if _, ok := b.ix.UserByLogin("dave"); ok {
		t.Fatal("a change after the gap was applied within the grace period")
	}
	if u, ok := b.ix.UserByLogin("carol"); !ok || u.ID != carol.ID {
		t.Fatal("index lost what it had while waiting on a gap")
	}
	st := b.feed.Status()
	if st.Applied != before || st.Reloads != 0 || st.Lag != 0 && st.Lag > 24*time.Hour {
		t.Fatalf("status within the grace period = %+v", st)
	}

	clk.Advance(1500 * time.Millisecond)
	b.feed.Step(e.ctx)
	if got, ok := b.ix.Key(fp(pub)); !ok || got.ID != k.ID {
		t.Fatal("the lost key is not in the index after the reload")
	}
	if u, ok := b.ix.UserByLogin("dave"); !ok || u.ID != dave.ID {
		t.Fatal("dave is not in the index after the reload")
	}
	st = b.feed.Status()
	if st.Reloads != 1 || st.Applied != lost+1 || st.Lag != 0 {
		t.Fatalf("status after the reload = %+v", st)
	}

	// The feed goes on normally after the reload.
	erin := e.user(t, "erin")
	b.feed.Step(e.ctx)
	if u, ok := b.ix.UserByLogin("erin"); !ok || u.ID != erin.ID {
		t.Fatal("erin is not in the index after the reload")
	}
	sameAnswers(t, freshIndex(t, e.ctx, e.s), b.ix, &probes{
		keys: []gossh.PublicKey{pub}, users: []int64{carol.ID, dave.ID, erin.ID}, logins: []string{"carol", "dave", "erin"},
	})
}

// TestFeedKeepsServingWhenChangesCannotBeRead: a change that cannot be
// applied (a damaged row) is retried; after the grace period the feed tries
// a reload, which fails too: the index keeps serving what it had rather than
// going empty. Once the row is repaired the index catches up.
func TestFeedKeepsServingWhenChangesCannotBeRead(t *testing.T) {
	t.Parallel()
	sqliteOnly(t, "damages a row with a value of the wrong type, which PostgreSQL's typed columns refuse")
	e := newEnv(t)
	clk := testutil.NewClock(t0)
	b := newFollower(t, e, authindex.FeedConfig{GapGrace: time.Second, Now: clk.Now}, false)
	frank := e.user(t, "frank")
	pub, line := newEd25519(t, "frank")
	e.key(t, frank.ID, line, keystore.UsageAuth)
	b.feed.Step(e.ctx)
	if _, ok := b.ix.Key(fp(pub)); !ok {
		t.Fatal("frank's key is not in B's index")
	}
	before := b.ix.Applied()

	if _, err := e.s.SetUserState(e.ctx, sys, frank.ID, keystore.StateBlocked); err != nil {
		t.Fatal(err)
	}
	damage(t, e, `UPDATE users SET is_admin = 'garbage' WHERE id = $1`, frank.ID)
	b.feed.Step(e.ctx)
	st := b.feed.Status()
	if st.Applied != before || st.Errors == 0 || !st.DatabaseReachable {
		t.Fatalf("status after a failing Apply = %+v", st)
	}
	clk.Advance(2 * time.Second)
	b.feed.Step(e.ctx) // Apply fails again, then the reload fails
	st = b.feed.Status()
	if st.Reloads != 0 || st.Errors < 3 || st.Applied != before {
		t.Fatalf("status after a failed reload = %+v", st)
	}
	if _, ok := b.ix.Key(fp(pub)); !ok || b.ix.Len() != 1 {
		t.Fatal("the index stopped serving after a failed reload")
	}

	damage(t, e, `UPDATE users SET is_admin = 0 WHERE id = $1`, frank.ID)
	b.feed.Step(e.ctx)
	if !b.ix.UserBlocked(frank.ID) {
		t.Fatal("frank is not blocked once the row is readable again")
	}
	last, _ := e.s.LastChange(e.ctx)
	if b.ix.Applied() != last {
		t.Fatalf("applied %d, want %d", b.ix.Applied(), last)
	}
}

// TestFeedDatabaseUnreachable: when the change log cannot be read the index
// keeps answering, and the status says the database is unreachable, with a
// lag counted from the last successful read.
func TestFeedDatabaseUnreachable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	clk := testutil.NewClock(t0)
	s, err := keystore.Open(e.ctx, keystore.Config{DSN: e.dsn})
	if err != nil {
		t.Fatal(err)
	}
	gina := e.user(t, "gina")
	pub, line := newEd25519(t, "gina")
	e.key(t, gina.ID, line, keystore.UsageAuth)
	ix := freshIndex(t, e.ctx, s)
	feed := authindex.NewFeed(ix, authindex.FeedConfig{Now: clk.Now})
	feed.Step(e.ctx)
	if st := feed.Status(); !st.DatabaseReachable || st.Lag != 0 || !st.LastPoll.Equal(t0) {
		t.Fatalf("status = %+v", st)
	}
	s.Close() // every read now fails
	clk.Advance(3 * time.Second)
	feed.Step(e.ctx)
	st := feed.Status()
	if st.DatabaseReachable || st.Lag != 3*time.Second || st.Errors != 1 {
		t.Fatalf("status with the database gone = %+v", st)
	}
	if _, ok := ix.Key(fp(pub)); !ok {
		t.Fatal("the index stopped answering without its database")
	}
}

// TestFeedListenerWakesAndRetries: a notification makes the feed read the
// change log at once (the poll interval here is an hour), and a listener
// that fails is started again.
func TestFeedListenerWakesAndRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var mu sync.Mutex
	wakes := map[int]func(){}
	calls := 0
	listen := func(ctx context.Context, wake func()) error {
		mu.Lock()
		calls++
		n := calls
		wakes[n] = wake
		mu.Unlock()
		if n == 1 {
			return fmt.Errorf("connection reset") // the first listener dies at once
		}
		<-ctx.Done()
		return ctx.Err()
	}
	b := newFollower(t, e, authindex.FeedConfig{PollInterval: time.Hour, Listen: listen}, true)
	eventually(t, "listener restarted after failing", func() bool { mu.Lock(); defer mu.Unlock(); return calls >= 2 })
	// Let the feed settle in its wait: the restart itself woke it.
	time.Sleep(50 * time.Millisecond)
	hank := e.user(t, "hank")
	mu.Lock()
	wake := wakes[2]
	mu.Unlock()
	wake()
	eventually(t, "notified change applied", func() bool { u, ok := b.ix.UserByLogin("hank"); return ok && u.ID == hank.ID })
	if st := b.feed.Status(); st.Errors != 1 {
		t.Errorf("status = %+v, want one listener error", st)
	}

	// Without a notification the change waits for the (hour-long) poll.
	e.user(t, "ivan")
	time.Sleep(100 * time.Millisecond)
	if _, ok := b.ix.UserByLogin("ivan"); ok {
		t.Error("a change was applied without a notification or a poll: the test proves nothing")
	}
}

// TestFeedReloadNeverShowsAnEmptyIndex: lookups running during reloads
// always find what was there before (the new index is built off to the
// side and swapped in).
func TestFeedReloadNeverShowsAnEmptyIndex(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := newFollower(t, e, authindex.FeedConfig{}, false)
	var pubs []gossh.PublicKey
	for i := range 200 {
		u := e.user(t, fmt.Sprintf("r%d", i))
		pub, line := newEd25519(t, "r")
		e.key(t, u.ID, line, keystore.UsageAuth)
		pubs = append(pubs, pub)
	}
	b.feed.Step(e.ctx)
	stop := make(chan struct{})
	var misses, lookups atomic.Int64
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				lookups.Add(1)
				if _, ok := b.ix.Key(fp(pubs[i%len(pubs)])); !ok {
					misses.Add(1)
				}
			}
		}()
	}
	for range 10 {
		if err := b.feed.Reload(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if misses.Load() != 0 {
		t.Errorf("%d of %d lookups during reloads missed a key that was never deleted", misses.Load(), lookups.Load())
	}
	if st := b.feed.Status(); st.Reloads != 10 {
		t.Errorf("status = %+v, want 10 reloads", st)
	}
}

// TestFeedRetriesAFailedLocalApply: when applying one of this node's own
// writes fails, a running feed retries it (instead of the index emptying
// itself) and the index keeps serving until the change applies.
func TestFeedRetriesAFailedLocalApply(t *testing.T) {
	t.Parallel()
	sqliteOnly(t, "damages a row with a value of the wrong type, which PostgreSQL's typed columns refuse")
	e := newEnv(t)
	b := newFollower(t, e, authindex.FeedConfig{PollInterval: 5 * time.Millisecond, GapGrace: 50 * time.Millisecond}, true)
	jane := e.user(t, "jane")
	pub, line := newEd25519(t, "jane")
	e.key(t, jane.ID, line, keystore.UsageAuth)
	eventually(t, "jane's key reaches B", func() bool { _, ok := b.ix.Key(fp(pub)); return ok })

	// Every update of a user now leaves a row that cannot be read.
	damage(t, e, `CREATE TRIGGER spoil AFTER UPDATE OF state ON users BEGIN UPDATE users SET created_at = 'garbage' WHERE id = NEW.id; END`)
	if _, err := b.s.SetUserState(e.ctx, sys, jane.ID, keystore.StateBlocked); err != nil {
		t.Fatal(err) // the write itself commits; only applying it fails
	}
	eventually(t, "the feed retried and gave up on a reload", func() bool { return b.feed.Status().Errors >= 3 })
	if _, ok := b.ix.Key(fp(pub)); !ok || b.ix.Len() != 1 {
		t.Fatal("the index stopped serving after a failed local apply")
	}
	damage(t, e, `DROP TRIGGER spoil`)
	damage(t, e, `UPDATE users SET created_at = 0 WHERE id = $1`, jane.ID)
	eventually(t, "the change applies once the row is readable", func() bool { return b.ix.UserBlocked(jane.ID) })
}

// TestIndexLoadReportsTheFailingHalf: users and keys load in parallel; when
// either read fails, Load returns that error (not the other half's
// cancellation) and an index that was serving keeps serving.
func TestIndexLoadReportsTheFailingHalf(t *testing.T) {
	t.Parallel()
	sqliteOnly(t, "damages a row with a value of the wrong type, which PostgreSQL's typed columns refuse")
	for _, c := range []struct{ name, damage, repair string }{
		{"users", `UPDATE users SET is_admin = 'garbage' WHERE id = $1`, `UPDATE users SET is_admin = 0 WHERE id = $1`},
		{"keys", `UPDATE keys SET expires_at = 'garbage' WHERE user_id = $1`, `UPDATE keys SET expires_at = NULL WHERE user_id = $1`},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			gina := e.user(t, "gina")
			pub, line := newEd25519(t, "gina")
			e.key(t, gina.ID, line, keystore.UsageAuth)
			serving := authindex.New(e.s)
			if err := serving.Load(e.ctx); err != nil {
				t.Fatal(err)
			}

			damage(t, e, c.damage, gina.ID)
			for _, ix := range []*authindex.Index{authindex.New(e.s), serving} {
				err := ix.Load(e.ctx)
				if err == nil || errors.Is(err, context.Canceled) {
					t.Fatalf("Load with a damaged %s row: %v, want the scan error", c.name, err)
				}
			}
			if k, ok := serving.Key(fp(pub)); !ok || k.UserID != gina.ID {
				t.Fatal("the serving index lost gina's key after a failed reload")
			}

			damage(t, e, c.repair, gina.ID)
			fresh := authindex.New(e.s)
			if err := fresh.Load(e.ctx); err != nil {
				t.Fatal(err)
			}
			if k, ok := fresh.Key(fp(pub)); !ok || k.UserID != gina.ID {
				t.Fatal("gina's key is missing after the repair")
			}
		})
	}
}
