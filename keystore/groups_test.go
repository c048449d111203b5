package keystore_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

func TestCreateGroup(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	owner := e.user(t, "owner")
	top := e.group(t, "acme", nil, owner.ID)
	if !top.TopLevel() || top.FullPath != "acme" || top.Name != "acme" || !top.CreatedAt.Equal(t0ms) {
		t.Fatalf("top = %+v", top)
	}
	m, err := e.s.Member(e.ctx, top.ID, owner.ID)
	if err != nil || m.AccessLevel != keystore.Owner || m.User.ID != owner.ID {
		t.Fatalf("owner membership = %+v, %v", m, err)
	}
	sub := e.group(t, "infra", &top.ID, 0)
	if sub.TopLevel() || *sub.ParentID != top.ID || sub.FullPath != "acme/infra" {
		t.Fatalf("sub = %+v", sub)
	}
	if _, n, _ := e.s.ListMembers(e.ctx, sub.ID, keystore.Page{}); n != 0 {
		t.Fatalf("subgroup created without owner has %d members", n)
	}
	subsub := e.group(t, "db", &sub.ID, 0)
	if subsub.FullPath != "acme/infra/db" {
		t.Fatalf("FullPath = %q", subsub.FullPath)
	}
	got, err := e.s.GroupByPath(e.ctx, "/ACME/Infra/db/")
	if err != nil || got.ID != subsub.ID {
		t.Fatalf("GroupByPath = %+v, %v", got, err)
	}
	anc, err := e.s.Ancestors(e.ctx, subsub)
	if err != nil || len(anc) != 3 || anc[0].ID != subsub.ID || anc[1].ID != sub.ID || anc[2].ID != top.ID {
		t.Fatalf("Ancestors = %v, %v", anc, err)
	}

	cases := []struct {
		name     string
		in       keystore.GroupInput
		field    string
		reason   string
		wantPath string
	}{
		{"path-from-name", keystore.GroupInput{Name: ptr("widgets")}, "", "", "widgets"},
		{"name-from-path", keystore.GroupInput{Path: ptr("gadgets")}, "", "", "gadgets"},
		{"same-path-under-other-parent", keystore.GroupInput{Path: ptr("infra"), ParentID: &subsub.ID}, "", "", "acme/infra/db/infra"},
		{"name-with-spaces-needs-path", keystore.GroupInput{Name: ptr("My Team")}, "path", "can't be blank", ""},
		{"path-with-space", keystore.GroupInput{Path: ptr("a b")}, "path", "can contain only", ""},
		{"path-with-slash", keystore.GroupInput{Path: ptr("a/b")}, "path", "can contain only", ""},
		{"path-dot-git", keystore.GroupInput{Path: ptr("repo.git")}, "path", "can contain only", ""},
		{"path-256", keystore.GroupInput{Path: ptr(strings.Repeat("p", 256)), Name: ptr("n")}, "path", "too long", ""},
		{"duplicate-top-level-any-case", keystore.GroupInput{Path: ptr("ACME")}, "path", "has already been taken", ""},
		{"duplicate-subgroup", keystore.GroupInput{Path: ptr("infra"), ParentID: &top.ID}, "path", "has already been taken", ""},
		{"unknown-parent", keystore.GroupInput{Path: ptr("x"), ParentID: ptr(int64(9999))}, "parent_id", "does not exist", ""},
		{"enforce-on-subgroup", keystore.GroupInput{Path: ptr("x"), ParentID: &top.ID, EnforceSSHCertificates: ptr(true)}, "enforce_ssh_certificates", "top-level", ""},
		{"description-too-long", keystore.GroupInput{Path: ptr("x"), Description: ptr(strings.Repeat("d", 2001))}, "description", "too long", ""},
	}
	t.Run("blank", func(t *testing.T) {
		t.Parallel()
		_, err := e.s.CreateGroup(e.ctx, sys, keystore.GroupInput{}, 0)
		wantField(t, err, "path", "can't be blank")
		wantField(t, err, "name", "can't be blank")
	})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			g, err := e.s.CreateGroup(e.ctx, sys, c.in, 0)
			if c.field != "" {
				wantOnlyField(t, err, c.field, c.reason)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g.FullPath != c.wantPath {
				t.Fatalf("FullPath = %q, want %q", g.FullPath, c.wantPath)
			}
		})
	}
}

func TestGroupDepthLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var parent *int64
	for i := range 20 {
		g := e.group(t, "l"+strings.Repeat("x", i), parent, 0)
		parent = &g.ID
	}
	_, err := e.s.CreateGroup(e.ctx, sys, keystore.GroupInput{Path: ptr("deep"), ParentID: parent}, 0)
	wantOnlyField(t, err, "parent_id", "nested too deeply")
}

// groupTree builds: a, a/b, a/b/c, ab (a path that shares a prefix with a),
// other.
type groupTree struct {
	a, ab, abc, abSibling, other *keystore.Group
}

func newGroupTree(t *testing.T, e *env) groupTree {
	t.Helper()
	var g groupTree
	g.a = e.group(t, "a", nil, 0)
	g.ab = e.group(t, "b", &g.a.ID, 0)
	g.abc = e.group(t, "c", &g.ab.ID, 0)
	g.abSibling = e.group(t, "ab", nil, 0)
	g.other = e.group(t, "other", nil, 0)
	return g
}

func TestAccessLevel(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := newGroupTree(t, e)
	dev := e.user(t, "dev")        // a: developer, a/b/c: maintainer
	rep := e.user(t, "rep")        // a/b: reporter
	sibling := e.user(t, "ab-own") // ab: owner
	ownerTop := e.user(t, "boss")  // a: owner, a/b: guest
	nobody := e.user(t, "nobody")
	for _, m := range []struct {
		g     *keystore.Group
		u     *keystore.User
		level int
	}{
		{g.a, dev, keystore.Developer}, {g.abc, dev, keystore.Maintainer},
		{g.ab, rep, keystore.Reporter},
		{g.abSibling, sibling, keystore.Owner},
		{g.a, ownerTop, keystore.Owner}, {g.ab, ownerTop, keystore.Guest},
	} {
		if _, err := e.s.AddMember(e.ctx, sys, m.g.ID, m.u.ID, m.level); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		u    *keystore.User
		g    *keystore.Group
		want int
	}{
		{"direct-top", dev, g.a, keystore.Developer},
		{"inherited-child", dev, g.ab, keystore.Developer},
		{"direct-beats-lower-inherited", dev, g.abc, keystore.Maintainer},
		{"no-access-to-unrelated", dev, g.other, keystore.NoAccess},
		{"prefix-sibling-is-not-a-subgroup", dev, g.abSibling, keystore.NoAccess},
		{"child-member-not-parent", rep, g.a, keystore.NoAccess},
		{"child-member-inherits-downwards", rep, g.abc, keystore.Reporter},
		{"sibling-owner-no-access-to-a", sibling, g.a, keystore.NoAccess},
		{"sibling-owner-no-access-to-a-b", sibling, g.ab, keystore.NoAccess},
		{"sibling-owner-own-group", sibling, g.abSibling, keystore.Owner},
		{"inherited-owner-beats-direct-guest", ownerTop, g.ab, keystore.Owner},
		{"inherited-owner-two-levels-down", ownerTop, g.abc, keystore.Owner},
		{"non-member", nobody, g.abc, keystore.NoAccess},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := e.s.AccessLevel(e.ctx, c.u.ID, c.g)
			if err != nil || got != c.want {
				t.Fatalf("AccessLevel(%s, %s) = %d, %v; want %d", c.u.Username, c.g.FullPath, got, err, c.want)
			}
		})
	}
}

func TestListGroups(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := newGroupTree(t, e)
	dev := e.user(t, "dev")
	rep := e.user(t, "rep")
	sib := e.user(t, "sib")
	nobody := e.user(t, "nobody")
	for _, m := range []struct {
		g *keystore.Group
		u *keystore.User
	}{{g.a, dev}, {g.ab, rep}, {g.abSibling, sib}} {
		if _, err := e.s.AddMember(e.ctx, sys, m.g.ID, m.u.ID, keystore.Guest); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name  string
		f     keystore.GroupFilter
		pg    keystore.Page
		want  []string
		total int
	}{
		{"all-ordered-by-full-path", keystore.GroupFilter{}, keystore.Page{}, []string{"a", "a/b", "a/b/c", "ab", "other"}, 5},
		{"visible-to-top-member-includes-subgroups", keystore.GroupFilter{VisibleTo: dev.ID}, keystore.Page{}, []string{"a", "a/b", "a/b/c"}, 3},
		{"visible-to-subgroup-member", keystore.GroupFilter{VisibleTo: rep.ID}, keystore.Page{}, []string{"a/b", "a/b/c"}, 2},
		{"visible-to-prefix-sibling-member", keystore.GroupFilter{VisibleTo: sib.ID}, keystore.Page{}, []string{"ab"}, 1},
		{"visible-to-nobody", keystore.GroupFilter{VisibleTo: nobody.ID}, keystore.Page{}, nil, 0},
		{"top-level-only", keystore.GroupFilter{TopLevelOnly: true}, keystore.Page{}, []string{"a", "ab", "other"}, 3},
		{"visible-top-level-only", keystore.GroupFilter{VisibleTo: rep.ID, TopLevelOnly: true}, keystore.Page{}, nil, 0},
		{"direct-children", keystore.GroupFilter{ParentID: g.a.ID}, keystore.Page{}, []string{"a/b"}, 1},
		{"search", keystore.GroupFilter{Search: "B"}, keystore.Page{}, []string{"a/b", "a/b/c", "ab"}, 3},
		{"paged", keystore.GroupFilter{}, keystore.Page{Page: 2, PerPage: 2}, []string{"a/b/c", "ab"}, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			gs, total, err := e.s.ListGroups(e.ctx, c.f, c.pg)
			if err != nil {
				t.Fatal(err)
			}
			if got := paths(gs); got != strings.Join(c.want, ",") || total != c.total {
				t.Fatalf("got %s (total %d), want %v (total %d)", got, total, c.want, c.total)
			}
		})
	}
	all, err := e.s.AllGroups(e.ctx)
	if err != nil || len(all) != 5 {
		t.Fatalf("AllGroups = %d, %v", len(all), err)
	}
}

func paths(gs []*keystore.Group) string {
	var out []string
	for _, g := range gs {
		out = append(out, g.FullPath)
	}
	return strings.Join(out, ",")
}

func TestRenameGroupMovesSubgroups(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		rename  func(g groupTree) *keystore.Group
		newPath string
		want    []string // all full paths after, ordered
	}{
		{"top-level", func(g groupTree) *keystore.Group { return g.a }, "z", []string{"ab", "other", "z", "z/b", "z/b/c"}},
		{"middle", func(g groupTree) *keystore.Group { return g.ab }, "q", []string{"a", "a/q", "a/q/c", "ab", "other"}},
		{"leaf", func(g groupTree) *keystore.Group { return g.abc }, "d", []string{"a", "a/b", "a/b/d", "ab", "other"}},
		{"case-only", func(g groupTree) *keystore.Group { return g.a }, "A", []string{"A", "A/b", "A/b/c", "ab", "other"}},
		{"prefix-sibling-leaves-a-alone", func(g groupTree) *keystore.Group { return g.abSibling }, "zz", []string{"a", "a/b", "a/b/c", "other", "zz"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			g := newGroupTree(t, e)
			u := e.user(t, "dev")
			if _, err := e.s.AddMember(e.ctx, sys, g.a.ID, u.ID, keystore.Developer); err != nil {
				t.Fatal(err)
			}
			target := c.rename(g)
			got, err := e.s.UpdateGroup(e.ctx, sys, target.ID, keystore.GroupInput{Path: ptr(c.newPath)})
			if err != nil {
				t.Fatal(err)
			}
			if got.Path != c.newPath || !strings.HasSuffix(got.FullPath, c.newPath) {
				t.Fatalf("renamed = %+v", got)
			}
			all, _ := e.s.AllGroups(e.ctx)
			if p := paths(all); p != strings.Join(c.want, ",") {
				t.Fatalf("paths = %s, want %v", p, c.want)
			}
			// Membership inheritance follows the new paths.
			leaf, err := e.s.Group(e.ctx, g.abc.ID)
			if err != nil {
				t.Fatal(err)
			}
			if lvl, _ := e.s.AccessLevel(e.ctx, u.ID, leaf); lvl != keystore.Developer {
				t.Fatalf("AccessLevel on %s after rename = %d", leaf.FullPath, lvl)
			}
			if byPath, err := e.s.GroupByPath(e.ctx, leaf.FullPath); err != nil || byPath.ID != leaf.ID {
				t.Fatalf("GroupByPath(%s) = %v, %v", leaf.FullPath, byPath, err)
			}
		})
	}
	t.Run("onto-taken-path", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		g := newGroupTree(t, e)
		_, err := e.s.UpdateGroup(e.ctx, sys, g.a.ID, keystore.GroupInput{Path: ptr("Other")})
		wantOnlyField(t, err, "path", "has already been taken")
		all, _ := e.s.AllGroups(e.ctx)
		if p := paths(all); p != "a,a/b,a/b/c,ab,other" {
			t.Fatalf("refused rename changed paths: %s", p)
		}
	})
	t.Run("invalid-path", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		g := newGroupTree(t, e)
		_, err := e.s.UpdateGroup(e.ctx, sys, g.a.ID, keystore.GroupInput{Path: ptr("bad path")})
		wantOnlyField(t, err, "path", "can contain only")
	})
}

func TestUpdateGroupFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := newGroupTree(t, e)
	got, err := e.s.UpdateGroup(e.ctx, sys, g.a.ID, keystore.GroupInput{Name: ptr("Team A"), Description: ptr("d"), EnforceSSHCertificates: ptr(true)})
	if err != nil || got.Name != "Team A" || got.Description != "d" || !got.EnforceSSHCertificates || got.FullPath != "a" {
		t.Fatalf("update = %+v, %v", got, err)
	}
	reread, _ := e.s.Group(e.ctx, g.a.ID)
	if reread.Name != "Team A" || !reread.EnforceSSHCertificates {
		t.Fatalf("reread = %+v", reread)
	}
	_, err = e.s.UpdateGroup(e.ctx, sys, g.ab.ID, keystore.GroupInput{EnforceSSHCertificates: ptr(true)})
	wantOnlyField(t, err, "enforce_ssh_certificates", "top-level")
	_, err = e.s.UpdateGroup(e.ctx, sys, g.a.ID, keystore.GroupInput{Name: ptr(" ")})
	wantOnlyField(t, err, "name", "can't be blank")
	_, err = e.s.UpdateGroup(e.ctx, sys, 9999, keystore.GroupInput{Name: ptr("x")})
	wantIs(t, err, keystore.ErrNotFound)
	_, err = e.s.Group(e.ctx, 9999)
	wantIs(t, err, keystore.ErrNotFound)
	_, err = e.s.GroupByPath(e.ctx, "a/zz")
	wantIs(t, err, keystore.ErrNotFound)
}

func TestDeleteGroupCascades(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	g := newGroupTree(t, e)
	u := e.user(t, "u")
	for _, grp := range []*keystore.Group{g.a, g.ab, g.abc, g.abSibling} {
		if _, err := e.s.AddMember(e.ctx, sys, grp.ID, u.ID, keystore.Maintainer); err != nil {
			t.Fatal(err)
		}
	}
	_, caLine := newEd25519(t, "ca-a")
	ca, err := e.s.CreateCA(e.ctx, sys, g.a.ID, keystore.CAInput{Title: "ca", Key: caLine})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := e.s.CreateRevocation(e.ctx, sys, ca, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "1"})
	if err != nil {
		t.Fatal(err)
	}
	_, sibLine := newEd25519(t, "ca-ab")
	sibCA, err := e.s.CreateCA(e.ctx, sys, g.abSibling.ID, keystore.CAInput{Title: "ca", Key: sibLine})
	if err != nil {
		t.Fatal(err)
	}
	last, _ := e.s.LastChange(e.ctx)

	if err := e.s.DeleteGroup(e.ctx, sys, g.a.ID); err != nil {
		t.Fatal(err)
	}
	for _, grp := range []*keystore.Group{g.a, g.ab, g.abc} {
		if _, err := e.s.Group(e.ctx, grp.ID); err == nil {
			t.Errorf("group %s survived", grp.FullPath)
		}
		if _, n, _ := e.s.ListMembers(e.ctx, grp.ID, keystore.Page{}); n != 0 {
			t.Errorf("group %s still has %d members", grp.FullPath, n)
		}
	}
	_, err = e.s.CA(e.ctx, 0, ca.ID)
	wantIs(t, err, keystore.ErrNotFound)
	// Revocations belong to their group and go with it.
	if _, n, _ := e.s.ListRevocations(e.ctx, 0, ca.FingerprintSHA256, keystore.Page{}); n != 0 {
		t.Errorf("%d revocations of the deleted group's CA key remain, want 0", n)
	}
	// The prefix sibling and its CA are untouched.
	if _, err := e.s.Group(e.ctx, g.abSibling.ID); err != nil {
		t.Errorf("sibling deleted: %v", err)
	}
	if _, err := e.s.CA(e.ctx, g.abSibling.ID, sibCA.ID); err != nil {
		t.Errorf("sibling CA deleted: %v", err)
	}
	if _, err := e.s.Member(e.ctx, g.abSibling.ID, u.ID); err != nil {
		t.Errorf("sibling membership deleted: %v", err)
	}
	// The CA can be registered again (its fingerprint is free).
	if _, err := e.s.CreateCA(e.ctx, sys, g.other.ID, keystore.CAInput{Title: "again", Key: caLine}); err != nil {
		t.Errorf("re-adding the deleted CA: %v", err)
	}
	chs, _ := e.s.ChangesSince(e.ctx, last, 100)
	want := map[string]bool{}
	for _, c := range chs {
		want[string(c.Entity)+"/"+itoa64(c.EntityID)+"/"+c.Op] = true
	}
	for _, w := range []string{"ca/" + itoa64(ca.ID) + "/delete", "revocation/" + itoa64(rev.ID) + "/delete", "group/" + itoa64(g.a.ID) + "/delete",
		"group/" + itoa64(g.ab.ID) + "/delete", "group/" + itoa64(g.abc.ID) + "/delete"} {
		if !want[w] {
			t.Errorf("change log lacks %s: %+v", w, chs)
		}
	}
	wantIs(t, e.s.DeleteGroup(e.ctx, sys, g.a.ID), keystore.ErrNotFound)
}

func TestMembers(t *testing.T) {
	t.Parallel()
	type setup = memberSetup
	mk := func(t *testing.T) setup {
		e := newEnv(t)
		s := setup{e: e, own1: e.user(t, "own1"), own2: e.user(t, "own2"), dev: e.user(t, "dev"), out: e.user(t, "out")}
		s.top = e.group(t, "top", nil, s.own1.ID)
		s.sub = e.group(t, "sub", &s.top.ID, s.own1.ID)
		if _, err := e.s.AddMember(e.ctx, sys, s.top.ID, s.dev.ID, keystore.Developer); err != nil {
			t.Fatal(err)
		}
		return s
	}
	cases := []struct {
		name    string
		do      func(s setup) error
		wantErr error // nil: success
		check   func(t *testing.T, s setup)
	}{
		{"remove-last-owner-of-top-level", func(s setup) error { return s.e.s.RemoveMember(s.e.ctx, sys, s.top.ID, s.own1.ID) },
			keystore.ErrConflict, func(t *testing.T, s setup) { wantLevel(t, s, s.top, s.own1, keystore.Owner) }},
		{"demote-last-owner-of-top-level", func(s setup) error {
			_, err := s.e.s.UpdateMember(s.e.ctx, sys, s.top.ID, s.own1.ID, keystore.Maintainer)
			return err
		}, keystore.ErrConflict, func(t *testing.T, s setup) { wantLevel(t, s, s.top, s.own1, keystore.Owner) }},
		{"remove-one-of-two-owners", func(s setup) error {
			if _, err := s.e.s.AddMember(s.e.ctx, sys, s.top.ID, s.own2.ID, keystore.Owner); err != nil {
				return err
			}
			if err := s.e.s.RemoveMember(s.e.ctx, sys, s.top.ID, s.own1.ID); err != nil {
				return err
			}
			// Now own2 is the last one.
			if err := s.e.s.RemoveMember(s.e.ctx, sys, s.top.ID, s.own2.ID); !errors.Is(err, keystore.ErrConflict) {
				return fmt.Errorf("removing the new last owner: %v", err)
			}
			return nil
		}, nil, func(t *testing.T, s setup) { wantLevel(t, s, s.top, s.own1, keystore.NoAccess) }},
		{"demote-one-of-two-owners", func(s setup) error {
			if _, err := s.e.s.UpdateMember(s.e.ctx, sys, s.top.ID, s.dev.ID, keystore.Owner); err != nil {
				return err
			}
			_, err := s.e.s.UpdateMember(s.e.ctx, sys, s.top.ID, s.own1.ID, keystore.Guest)
			return err
		}, nil, func(t *testing.T, s setup) {
			m, _ := s.e.s.Member(s.e.ctx, s.top.ID, s.own1.ID)
			if m.AccessLevel != keystore.Guest {
				t.Fatalf("level = %d", m.AccessLevel)
			}
		}},
		{"remove-last-owner-of-subgroup-allowed", func(s setup) error { return s.e.s.RemoveMember(s.e.ctx, sys, s.sub.ID, s.own1.ID) },
			nil, func(t *testing.T, s setup) {
				if _, err := s.e.s.Member(s.e.ctx, s.sub.ID, s.own1.ID); err == nil {
					t.Fatal("still a direct member")
				}
			}},
		{"remove-developer", func(s setup) error { return s.e.s.RemoveMember(s.e.ctx, sys, s.top.ID, s.dev.ID) },
			nil, func(t *testing.T, s setup) { wantLevel(t, s, s.top, s.dev, keystore.NoAccess) }},
		{"remove-non-member", func(s setup) error { return s.e.s.RemoveMember(s.e.ctx, sys, s.top.ID, s.out.ID) }, keystore.ErrNotFound, nil},
		{"update-non-member", func(s setup) error {
			_, err := s.e.s.UpdateMember(s.e.ctx, sys, s.top.ID, s.out.ID, keystore.Guest)
			return err
		}, keystore.ErrNotFound, nil},
		{"add-twice", func(s setup) error {
			_, err := s.e.s.AddMember(s.e.ctx, sys, s.top.ID, s.dev.ID, keystore.Maintainer)
			return err
		}, keystore.ErrConflict, func(t *testing.T, s setup) { wantLevel(t, s, s.top, s.dev, keystore.Developer) }},
		{"add-owner-of-own-group-twice", func(s setup) error {
			_, err := s.e.s.AddMember(s.e.ctx, sys, s.top.ID, s.own1.ID, keystore.Owner)
			return err
		}, keystore.ErrConflict, nil},
		{"add-invalid-level", func(s setup) error {
			_, err := s.e.s.AddMember(s.e.ctx, sys, s.top.ID, s.out.ID, 35)
			return err
		}, keystore.ErrInvalid, nil},
		{"update-invalid-level", func(s setup) error {
			_, err := s.e.s.UpdateMember(s.e.ctx, sys, s.top.ID, s.dev.ID, 0)
			return err
		}, keystore.ErrInvalid, nil},
		{"add-to-unknown-group", func(s setup) error {
			_, err := s.e.s.AddMember(s.e.ctx, sys, 999, s.out.ID, keystore.Guest)
			return err
		}, keystore.ErrNotFound, nil},
		{"add-unknown-user", func(s setup) error {
			_, err := s.e.s.AddMember(s.e.ctx, sys, s.top.ID, 999, keystore.Guest)
			return err
		}, keystore.ErrNotFound, nil},
		{"promote", func(s setup) error {
			m, err := s.e.s.UpdateMember(s.e.ctx, sys, s.top.ID, s.dev.ID, keystore.Maintainer)
			if err == nil && m.AccessLevel != keystore.Maintainer {
				return fmt.Errorf("returned level %d", m.AccessLevel)
			}
			return err
		}, nil, func(t *testing.T, s setup) { wantLevel(t, s, s.top, s.dev, keystore.Maintainer) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := mk(t)
			err := c.do(s)
			if c.wantErr != nil {
				wantIs(t, err, c.wantErr)
			} else if err != nil {
				t.Fatal(err)
			}
			if c.check != nil {
				c.check(t, s)
			}
		})
	}
}

// wantLevel checks a direct membership; NoAccess means "not a member".
func wantLevel(t *testing.T, s memberSetup, g *keystore.Group, u *keystore.User, want int) {
	t.Helper()
	m, err := s.e.s.Member(s.e.ctx, g.ID, u.ID)
	if want == keystore.NoAccess {
		wantIs(t, err, keystore.ErrNotFound)
		return
	}
	if err != nil || m.AccessLevel != want {
		t.Fatalf("%s in %s = %+v, %v; want level %d", u.Username, g.FullPath, m, err, want)
	}
}

type memberSetup struct {
	e          *env
	top, sub   *keystore.Group
	own1, own2 *keystore.User
	dev, out   *keystore.User
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }
