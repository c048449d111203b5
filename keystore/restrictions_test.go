package keystore_test

import (
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// TestMemberExpiryInIndex: a membership with an expiry grants access in
// the index until its deadline and nothing from the deadline on, when
// only the clock moves: no write, no change applied. A freshly loaded
// index agrees.
func TestMemberExpiryInIndex(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ix := authindex.New(e.s)
	ix.SetClock(e.clock.Now)
	if err := ix.Load(e.ctx); err != nil {
		t.Fatal(err)
	}
	ix.Follow()
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	g := e.group(t, "eng", nil, alice.ID)
	sub := e.group(t, "web", &g.ID, 0)
	until := e.clock.Now().Add(36 * time.Hour)
	m, err := e.s.AddMemberUntil(e.ctx, sys, g.ID, bob.ID, keystore.Developer, &until)
	if err != nil {
		t.Fatal(err)
	}
	if m.ExpiresAt == nil || !m.ExpiresAt.Equal(until.Truncate(time.Millisecond)) {
		t.Fatalf("AddMemberUntil: ExpiresAt = %v, want %v", m.ExpiresAt, until)
	}
	if l := ix.AccessLevel(bob.ID, sub.ID); l != keystore.Developer {
		t.Fatalf("before the deadline: inherited level %d, want %d", l, keystore.Developer)
	}
	applied := ix.Applied()

	e.clock.Advance(36*time.Hour - time.Millisecond)
	if l := ix.AccessLevel(bob.ID, sub.ID); l != keystore.Developer {
		t.Fatalf("1 ms before the deadline: level %d, want %d", l, keystore.Developer)
	}
	e.clock.Advance(time.Millisecond)
	if l := ix.AccessLevel(bob.ID, sub.ID); l != 0 {
		t.Fatalf("at the deadline: level %d, want 0", l)
	}
	if l := ix.AccessLevel(bob.ID, g.ID); l != 0 {
		t.Fatalf("at the deadline, in the group itself: level %d, want 0", l)
	}
	if got := ix.Applied(); got != applied {
		t.Fatalf("the index applied changes %d → %d: expiry must need no write", applied, got)
	}
	if l := ix.AccessLevel(alice.ID, sub.ID); l != keystore.Owner {
		t.Fatalf("the owner's level %d, want %d", l, keystore.Owner)
	}

	// The row is still there; a fresh load judges it by the same clock.
	var rows int
	q := `SELECT COUNT(*) FROM members WHERE user_id = ?`
	if onPostgres() {
		q = `SELECT COUNT(*) FROM members WHERE user_id = $1`
	}
	if err := e.rawDB(t).QueryRow(q, bob.ID).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Fatalf("%d membership rows for bob, want the expired one kept", rows)
	}
	fresh := authindex.New(e.s)
	fresh.SetClock(e.clock.Now)
	if err := fresh.Load(e.ctx); err != nil {
		t.Fatal(err)
	}
	if l := fresh.AccessLevel(bob.ID, sub.ID); l != 0 {
		t.Fatalf("freshly loaded index: expired member has level %d", l)
	}
	e.clock.Advance(-time.Hour)
	if l := fresh.AccessLevel(bob.ID, sub.ID); l != keystore.Developer {
		t.Fatalf("freshly loaded index before the deadline: level %d, want %d", l, keystore.Developer)
	}
}

// TestMemberExpiryInStore: the store's access rule, its member reads and
// its listings ignore an expired membership; adding the user again
// replaces it; a past expiry is refused; a top-level group keeps an owner
// whose membership does not expire.
func TestMemberExpiryInStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, bob, carol := e.user(t, "alice"), e.user(t, "bob"), e.user(t, "carol")
	g := e.group(t, "eng", nil, alice.ID)
	sub := e.group(t, "web", &g.ID, 0)
	p, err := e.s.CreateProject(e.ctx, sys, keystore.ProjectInput{GroupID: sub.ID, Path: "app"})
	if err != nil {
		t.Fatal(err)
	}

	past := e.clock.Now().Add(-time.Hour)
	_, err = e.s.AddMemberUntil(e.ctx, sys, g.ID, bob.ID, keystore.Reporter, &past)
	wantField(t, err, "expires_at", "cannot be a date in the past")
	now := e.clock.Now()
	_, err = e.s.AddMemberUntil(e.ctx, sys, g.ID, bob.ID, keystore.Reporter, &now)
	wantField(t, err, "expires_at", "cannot be a date in the past")

	until := e.clock.Now().Add(24 * time.Hour)
	if _, err := e.s.AddMemberUntil(e.ctx, sys, g.ID, bob.ID, keystore.Maintainer, &until); err != nil {
		t.Fatal(err)
	}
	visible := func(when string, want bool) {
		t.Helper()
		l, err := e.s.AccessLevel(e.ctx, bob.ID, sub)
		if err != nil {
			t.Fatal(err)
		}
		if (l == keystore.Maintainer) != want || (!want && l != 0) {
			t.Fatalf("%s: AccessLevel = %d", when, l)
		}
		_, err = e.s.Member(e.ctx, g.ID, bob.ID)
		if (err == nil) != want {
			t.Fatalf("%s: Member = %v", when, err)
		}
		_, n, err := e.s.ListMembers(e.ctx, g.ID, keystore.Page{})
		if err != nil || n != map[bool]int{true: 2, false: 1}[want] {
			t.Fatalf("%s: ListMembers total %d, %v", when, n, err)
		}
		_, n, err = e.s.ListEffectiveMembers(e.ctx, sub, keystore.MemberFilter{UserIDs: []int64{bob.ID}}, keystore.Page{})
		if err != nil || (n == 1) != want {
			t.Fatalf("%s: ListEffectiveMembers total %d, %v", when, n, err)
		}
		_, n, err = e.s.ListGroups(e.ctx, keystore.GroupFilter{VisibleTo: bob.ID}, keystore.Page{})
		if err != nil || (n == 2) != want || (!want && n != 0) {
			t.Fatalf("%s: groups visible to bob: %d, %v", when, n, err)
		}
		_, n, err = e.s.ListProjectsFiltered(e.ctx, keystore.ProjectFilter{VisibleTo: bob.ID}, keystore.Page{})
		if err != nil || (n == 1) != want {
			t.Fatalf("%s: projects visible to bob: %d (project %d), %v", when, n, p.ID, err)
		}
	}
	visible("before the deadline", true)
	if em, err := e.s.EffectiveMember(e.ctx, sub, bob.ID); err != nil || em.ExpiresAt == nil || !em.ExpiresAt.Equal(until.Truncate(time.Millisecond)) {
		t.Fatalf("EffectiveMember = %+v, %v; want the expiry shown", em, err)
	}
	e.clock.Advance(24 * time.Hour)
	visible("at the deadline", false)
	_, err = e.s.UpdateMember(e.ctx, sys, g.ID, bob.ID, keystore.Developer)
	wantIs(t, err, keystore.ErrNotFound)
	wantIs(t, e.s.RemoveMember(e.ctx, sys, g.ID, bob.ID), keystore.ErrNotFound)

	// Added again (GitLab deleted the expired one): a fresh membership.
	m, err := e.s.AddMember(e.ctx, sys, g.ID, bob.ID, keystore.Maintainer)
	if err != nil {
		t.Fatalf("adding an expired member again: %v", err)
	}
	if m.ExpiresAt != nil {
		t.Fatalf("re-added member expires at %v", m.ExpiresAt)
	}
	visible("re-added", true)

	// Editing: the level alone keeps the expiry; setting nil clears it.
	later := e.clock.Now().Add(72 * time.Hour)
	if m, err = e.s.UpdateMemberUntil(e.ctx, sys, g.ID, bob.ID, keystore.Maintainer, &later); err != nil || m.ExpiresAt == nil {
		t.Fatalf("UpdateMemberUntil = %+v, %v", m, err)
	}
	if m, err = e.s.UpdateMember(e.ctx, sys, g.ID, bob.ID, keystore.Developer); err != nil || m.ExpiresAt == nil || m.AccessLevel != keystore.Developer {
		t.Fatalf("UpdateMember kept = %+v, %v; want the expiry kept", m, err)
	}
	if m, err = e.s.UpdateMemberUntil(e.ctx, sys, g.ID, bob.ID, keystore.Developer, nil); err != nil || m.ExpiresAt != nil {
		t.Fatalf("UpdateMemberUntil(nil) = %+v, %v; want no expiry", m, err)
	}

	// The last owner without an expiry cannot be given one.
	_, err = e.s.UpdateMemberUntil(e.ctx, sys, g.ID, alice.ID, keystore.Owner, &later)
	wantIs(t, err, keystore.ErrConflict)
	if _, err := e.s.AddMemberUntil(e.ctx, sys, g.ID, carol.ID, keystore.Owner, &later); err != nil {
		t.Fatal(err)
	}
	// An expiring owner does not count as the one that stays.
	_, err = e.s.UpdateMemberUntil(e.ctx, sys, g.ID, alice.ID, keystore.Owner, &later)
	wantIs(t, err, keystore.ErrConflict)
	wantIs(t, e.s.RemoveMember(e.ctx, sys, g.ID, alice.ID), keystore.ErrConflict)
	if _, err := e.s.UpdateMemberUntil(e.ctx, sys, g.ID, carol.ID, keystore.Owner, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.UpdateMemberUntil(e.ctx, sys, g.ID, alice.ID, keystore.Owner, &later); err != nil {
		t.Fatalf("expiry for an owner beside another lasting owner: %v", err)
	}
}

// TestUserLimits: can_create_group, external and projects_limit are
// stored with GitLab's rule for external users, and a request that asks
// for both is refused, never overridden.
func TestUserLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.user(t, "plain")
	if !u.CanCreateGroup || u.External || u.ProjectsLimit != keystore.DefaultProjectsLimit || !u.MayCreateTopLevelGroup() {
		t.Fatalf("defaults = %+v", u)
	}
	x, err := e.s.CreateUser(e.ctx, sys, keystore.UserInput{Username: ptr("ext"), Email: ptr("ext@example.com"), External: ptr(true)})
	if err != nil {
		t.Fatal(err)
	}
	if x.CanCreateGroup || !x.External || x.ProjectsLimit != 0 || x.MayCreateTopLevelGroup() {
		t.Fatalf("external user = %+v", x)
	}
	if again, err := e.s.User(e.ctx, x.ID); err != nil || again.CanCreateGroup || !again.External || again.ProjectsLimit != 0 {
		t.Fatalf("external user read back = %+v, %v", again, err)
	}
	_, err = e.s.CreateUser(e.ctx, sys, keystore.UserInput{Username: ptr("ext2"), Email: ptr("ext2@example.com"),
		External: ptr(true), CanCreateGroup: ptr(true)})
	wantField(t, err, "can_create_group", "external")
	_, err = e.s.CreateUser(e.ctx, sys, keystore.UserInput{Username: ptr("ext3"), Email: ptr("ext3@example.com"),
		External: ptr(true), ProjectsLimit: ptr(5)})
	wantField(t, err, "projects_limit", "external")
	_, err = e.s.CreateUser(e.ctx, sys, keystore.UserInput{Username: ptr("neg"), Email: ptr("neg@example.com"), ProjectsLimit: ptr(-1)})
	wantField(t, err, "projects_limit", "greater than or equal to 0")

	_, err = e.s.UpdateUser(e.ctx, sys, x.ID, keystore.UserInput{CanCreateGroup: ptr(true)})
	wantField(t, err, "can_create_group", "external")
	x, err = e.s.UpdateUser(e.ctx, sys, x.ID, keystore.UserInput{External: ptr(false)})
	if err != nil || x.External || !x.CanCreateGroup || x.ProjectsLimit != keystore.DefaultProjectsLimit {
		t.Fatalf("no longer external = %+v, %v; want GitLab's defaults back", x, err)
	}
	x, err = e.s.UpdateUser(e.ctx, sys, x.ID, keystore.UserInput{CanCreateGroup: ptr(false), ProjectsLimit: ptr(3)})
	if err != nil || x.CanCreateGroup || x.ProjectsLimit != 3 || x.MayCreateTopLevelGroup() {
		t.Fatalf("limited = %+v, %v", x, err)
	}
	if again, err := e.s.User(e.ctx, x.ID); err != nil || again.CanCreateGroup || again.ProjectsLimit != 3 {
		t.Fatalf("limited read back = %+v, %v", again, err)
	}
	admin, err := e.s.UpdateUser(e.ctx, sys, x.ID, keystore.UserInput{IsAdmin: ptr(true)})
	if err != nil || !admin.MayCreateTopLevelGroup() {
		t.Fatalf("an admin may always create top-level groups: %+v, %v", admin, err)
	}
}
