package keystore_test

import (
	"fmt"
	"testing"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// TestDeployKeyAnswersToItsOwner: what a deploy key may do follows its
// owner, in the index that the SSH server asks (followed and freshly
// loaded alike) and in the owner status admins list: a maintainer's
// project and group keys push; lowered to developer they only read, to
// guest or removed they do nothing; blocked or deleted, nothing; a key
// with no recorded owner, nothing; an instance key needs an admin to push.
// Transfers go only to a user who answers for everything the key does.
func TestDeployKeyAnswersToItsOwner(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ix := authindex.New(e.s)
	if err := ix.Load(e.ctx); err != nil {
		t.Fatal(err)
	}
	ix.Follow()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	owner, alice, bob, root := e.user(t, "owner"), e.user(t, "alice"), e.user(t, "bob"), e.user(t, "root")
	_, err := e.s.UpdateUser(e.ctx, sys, root.ID, keystore.UserInput{IsAdmin: ptr(true)})
	must(err)
	acme := e.group(t, "acme", nil, owner.ID)
	team := e.group(t, "team", &acme.ID, 0)
	proj, err := e.s.CreateProject(e.ctx, sys, keystore.ProjectInput{GroupID: team.ID, Path: "api"})
	must(err)
	_, err = e.s.AddMember(e.ctx, sys, acme.ID, alice.ID, keystore.Maintainer)
	must(err)
	_, err = e.s.AddMember(e.ctx, sys, acme.ID, bob.ID, keystore.Maintainer)
	must(err)
	create := func(a keystore.Actor, title string, scope keystore.DeployScope) *keystore.DeployKey {
		t.Helper()
		_, line := newEd25519(t, title)
		k, err := e.s.CreateDeployKey(e.ctx, a, scope, keystore.DeployKeyInput{Title: title, Key: line, CanPush: true})
		must(err)
		return k
	}
	asAlice := keystore.Actor{UserID: alice.ID}
	onProject := create(asAlice, "project", keystore.DeployScope{ProjectID: proj.ID})
	onGroup := create(asAlice, "group", keystore.DeployScope{GroupID: acme.ID})
	nobodys := create(sys, "nobodys", keystore.DeployScope{ProjectID: proj.ID})
	instance := create(keystore.Actor{UserID: root.ID}, "instance", keystore.DeployScope{})
	_, err = e.s.EnableDeployKey(e.ctx, asAlice, instance.ID, keystore.DeployScope{ProjectID: proj.ID})
	must(err)
	_, err = e.s.UpdateDeployKey(e.ctx, asAlice, instance.ID, keystore.DeployScope{ProjectID: proj.ID}, nil, ptr(true))
	must(err)

	// want checks each key's answer in the followed index and in one
	// loaded afresh, and each key's owner status.
	want := func(step string, k *keystore.DeployKey, read, push bool, status string) {
		t.Helper()
		fresh := authindex.New(e.s)
		must(fresh.Load(e.ctx))
		for name, x := range map[string]*authindex.Index{"followed": ix, "fresh": fresh} {
			if r, p := x.DeployAccess(k.ID, proj.ID, team.ID); r != read || p != push {
				t.Errorf("%s: %q in the %s index: read=%v push=%v, want %v %v", step, k.Title, name, r, p, read, push)
			}
		}
		got, err := e.s.DeployKey(e.ctx, k.ID)
		must(err)
		if st, err := e.s.DeployKeyOwnerStatus(e.ctx, got); err != nil || st != status {
			t.Errorf("%s: %q owner status %q (%v), want %q", step, k.Title, st, err, status)
		}
	}
	alices := func(step string, read, push bool, status string) {
		t.Helper()
		want(step, onProject, read, push, status)
		want(step, onGroup, read, push, status)
	}
	alices("maintainer", true, true, keystore.OwnerActive)
	want("never recorded", nobodys, false, false, keystore.OwnerUnknown)
	want("admin's instance key", instance, true, true, keystore.OwnerActive)

	_, err = e.s.UpdateMember(e.ctx, sys, acme.ID, alice.ID, keystore.Developer)
	must(err)
	alices("developer", true, false, keystore.OwnerInsufficient)
	_, err = e.s.UpdateMember(e.ctx, sys, acme.ID, alice.ID, keystore.Guest)
	must(err)
	alices("guest", false, false, keystore.OwnerInsufficient)
	must(e.s.RemoveMember(e.ctx, sys, acme.ID, alice.ID))
	alices("removed", false, false, keystore.OwnerInsufficient)
	// A membership in the subgroup counts (inherited levels, as for people).
	_, err = e.s.AddMember(e.ctx, sys, team.ID, alice.ID, keystore.Maintainer)
	must(err)
	want("maintainer of the subgroup", onProject, true, true, keystore.OwnerActive)
	want("maintainer of the subgroup only", onGroup, true, true, keystore.OwnerInsufficient) // short on acme itself
	_, err = e.s.SetUserState(e.ctx, sys, alice.ID, keystore.StateBlocked)
	must(err)
	alices("blocked", false, false, keystore.OwnerBlocked)
	_, err = e.s.SetUserState(e.ctx, sys, alice.ID, keystore.StateActive)
	must(err)
	want("unblocked", onProject, true, true, keystore.OwnerActive)

	// Transfers: to an active user who answers for everything.
	wantRefused := func(k *keystore.DeployKey, to int64, reason string) {
		t.Helper()
		_, err := e.s.EditDeployKey(e.ctx, sys, k.ID, keystore.DeployKeyEdit{UserID: &to})
		wantField(t, err, "user_id", reason)
	}
	carol := e.user(t, "carol")
	_, err = e.s.AddMember(e.ctx, sys, acme.ID, carol.ID, keystore.Developer)
	must(err)
	wantRefused(onGroup, carol.ID, "not in: acme")
	_, err = e.s.SetUserState(e.ctx, sys, bob.ID, keystore.StateBlocked)
	must(err)
	wantRefused(onGroup, bob.ID, "is blocked")
	_, err = e.s.SetUserState(e.ctx, sys, bob.ID, keystore.StateActive)
	must(err)
	wantRefused(instance, bob.ID, "must be an admin")
	_, err = e.s.EditDeployKey(e.ctx, sys, onGroup.ID, keystore.DeployKeyEdit{UserID: ptr(int64(1 << 40))})
	wantIs(t, err, keystore.ErrNotFound)
	_, err = e.s.EditDeployKey(e.ctx, sys, nobodys.ID, keystore.DeployKeyEdit{UserID: &bob.ID})
	must(err)
	want("transferred to bob", nobodys, true, true, keystore.OwnerActive)

	// The owner deleted: the key answers to no one, in the followed index
	// (the user is gone) and after a reload (user_id is NULL).
	must(e.s.DeleteUser(e.ctx, sys, alice.ID))
	alices("owner deleted", false, false, keystore.OwnerDeleted)
	_, err = e.s.EditDeployKey(e.ctx, sys, onGroup.ID, keystore.DeployKeyEdit{UserID: &bob.ID})
	must(err)
	want("transferred from a deleted owner", onGroup, true, true, keystore.OwnerActive)

	// An instance key's owner who is no longer an admin: the key pushes no
	// more; with no membership, it reads nothing either.
	_, err = e.s.UpdateUser(e.ctx, sys, root.ID, keystore.UserInput{IsAdmin: ptr(false)})
	must(err)
	want("instance key of an ex-admin", instance, false, false, keystore.OwnerInsufficient)
	_, err = e.s.AddMember(e.ctx, sys, acme.ID, root.ID, keystore.Owner)
	must(err)
	want("instance key of an ex-admin who owns the group", instance, true, false, keystore.OwnerInsufficient)

	orphans, total, err := e.s.ListDeployKeys(e.ctx, keystore.DeployKeyFilter{Orphaned: true}, keystore.Page{PerPage: 100})
	must(err)
	var titles []string
	for _, k := range orphans {
		titles = append(titles, k.Title)
	}
	if got := fmt.Sprint(titles); total != 2 || got != "[project instance]" {
		t.Errorf("orphaned deploy keys: %s (total %d), want [project instance]", got, total)
	}
	events, _, err := e.s.ListAuditEvents(e.ctx, keystore.AuditFilter{}, keystore.Page{PerPage: 200})
	must(err)
	transfers := 0
	for _, ev := range events {
		if ev.Action == "deploy_key_transferred" {
			transfers++
		}
	}
	if transfers != 2 {
		t.Errorf("%d deploy_key_transferred audit events, want 2", transfers)
	}
}
