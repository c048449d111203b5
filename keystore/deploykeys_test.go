package keystore_test

import (
	"errors"
	"testing"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// TestDeletingAProjectOrGroupSettlesItsDeployKeys: a deploy key enabled
// only on a deleted project (or on a deleted group, its subgroups or their
// projects) is deleted with it, as in GitLab, and its fingerprint is free
// again; a key enabled elsewhere too keeps those grants. The index follows.
func TestDeletingAProjectOrGroupSettlesItsDeployKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ix := authindex.New(e.s)
	if err := ix.Load(e.ctx); err != nil {
		t.Fatal(err)
	}
	ix.Follow()
	owner := e.user(t, "owner")
	top := e.group(t, "top", nil, owner.ID)
	sub := e.group(t, "sub", &top.ID, 0)
	other := e.group(t, "other", nil, owner.ID)
	project := func(g *keystore.Group, path string) *keystore.Project {
		p, err := e.s.CreateProject(e.ctx, sys, keystore.ProjectInput{GroupID: g.ID, Path: path})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	doomed, kept, deep := project(top, "doomed"), project(other, "kept"), project(sub, "deep")
	deployKey := func(title string, scope keystore.DeployScope) (*keystore.DeployKey, string) {
		_, line := newEd25519(t, title)
		// Made by the groups' owner, who answers for it.
		k, err := e.s.CreateDeployKey(e.ctx, keystore.Actor{UserID: owner.ID}, scope, keystore.DeployKeyInput{Title: title, Key: line})
		if err != nil {
			t.Fatal(err)
		}
		return k, line
	}
	only, onlyLine := deployKey("only-doomed", keystore.DeployScope{ProjectID: doomed.ID})
	shared, _ := deployKey("shared", keystore.DeployScope{ProjectID: doomed.ID})
	if _, err := e.s.EnableDeployKey(e.ctx, sys, shared.ID, keystore.DeployScope{ProjectID: kept.ID}); err != nil {
		t.Fatal(err)
	}
	instance, _ := deployKey("instance", keystore.DeployScope{})
	if _, err := e.s.EnableDeployKey(e.ctx, sys, instance.ID, keystore.DeployScope{ProjectID: doomed.ID}); err != nil {
		t.Fatal(err)
	}
	onGroup, _ := deployKey("on-group", keystore.DeployScope{GroupID: top.ID})
	onDeep, _ := deployKey("on-deep", keystore.DeployScope{ProjectID: deep.ID})
	onSub, _ := deployKey("on-sub-and-kept", keystore.DeployScope{GroupID: sub.ID})
	if _, err := e.s.EnableDeployKey(e.ctx, sys, onSub.ID, keystore.DeployScope{ProjectID: kept.ID}); err != nil {
		t.Fatal(err)
	}

	gone := func(k *keystore.DeployKey) {
		t.Helper()
		if _, err := e.s.DeployKey(e.ctx, k.ID); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("deploy key %q: %v, want it deleted", k.Title, err)
		}
		if _, ok := ix.DeployKey(k.ID); ok {
			t.Errorf("deploy key %q is still in the index", k.Title)
		}
	}
	grants := func(k *keystore.DeployKey, projects, groups int) {
		t.Helper()
		got, err := e.s.DeployKey(e.ctx, k.ID)
		if err != nil {
			t.Fatalf("deploy key %q: %v", k.Title, err)
		}
		if len(got.Projects) != projects || len(got.Groups) != groups {
			t.Errorf("deploy key %q: %d project and %d group grants, want %d and %d", k.Title, len(got.Projects), len(got.Groups), projects, groups)
		}
		if _, ok := ix.DeployKey(k.ID); !ok {
			t.Errorf("deploy key %q is not in the index", k.Title)
		}
	}

	if err := e.s.DeleteProject(e.ctx, sys, doomed.ID); err != nil {
		t.Fatal(err)
	}
	gone(only)
	grants(shared, 1, 0)
	grants(instance, 0, 0) // an instance key stays, enabled nowhere
	if read, _ := ix.DeployAccess(shared.ID, kept.ID, other.ID); !read {
		t.Error("the shared key lost its grant on the kept project")
	}
	// The deleted key's fingerprint is free: its owner can use the key again.
	e.key(t, owner.ID, onlyLine, keystore.UsageAuth)

	if err := e.s.DeleteGroup(e.ctx, sys, top.ID); err != nil {
		t.Fatal(err)
	}
	gone(onGroup)
	gone(onDeep)
	grants(onSub, 1, 0)
	events, _, err := e.s.ListAuditEvents(e.ctx, keystore.AuditFilter{}, keystore.Page{PerPage: 100})
	if err != nil {
		t.Fatal(err)
	}
	deleted := 0
	for _, ev := range events {
		if ev.Action == "deploy_key_deleted" {
			deleted++
		}
	}
	if deleted != 3 {
		t.Errorf("%d deploy_key_deleted audit events, want 3", deleted)
	}
}
