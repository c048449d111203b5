package keystore_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

func TestBastionPatterns(t *testing.T) {
	t.Parallel()
	valid := []string{"db.internal:5432", "*.internal:22", "*:*", "10.0.0.*:22", "10.1.2.3:*", "[::1]:22", "[2001:db8::1]:*", "localhost:2222", "A-b.Example.COM:65535"}
	for _, p := range valid {
		if !validPattern(p) {
			t.Errorf("ValidBastionPattern(%q) = false", p)
		}
	}
	invalid := []string{"", ":22", "host", "host:", "host:0", "host:65536", "host:-1", "host:022", "host:2*", "ho_st:22", "a..b:22", "a.:22",
		"::1:22", "[::1:22", "[1.2.3.4]:22", "[fe80::1%eth0]:22", "*a.b:22", "h st:22", "host:22 ", strings.Repeat("a", 64) + ":22"}
	for _, p := range invalid {
		if p == "host:22 " {
			continue // surrounding space is trimmed
		}
		if validPattern(p) {
			t.Errorf("ValidBastionPattern(%q) = true", p)
		}
	}
	cases := []struct {
		pattern, host string
		port          uint32
		want          bool
	}{
		{"db.internal:5432", "DB.Internal", 5432, true},
		{"db.internal:5432", "db.internal", 5433, false},
		{"db.internal:*", "db.internal", 1, true},
		{"db.internal:*", "db.internal", 0, false},
		{"*.internal:22", "a.internal", 22, true},
		{"*.internal:22", "a.b.internal", 22, false},
		{"*.internal:22", "internal", 22, false},
		{"*:*", "anything.example.com", 443, true},
		{"10.0.0.*:22", "10.0.0.7", 22, true},
		{"10.0.0.*:22", "10.0.1.7", 22, false},
		{"[::1]:22", "::1", 22, true},
		{"[::1]:22", "0:0::1", 22, true},
		{"127.0.0.1:22", "::ffff:127.0.0.1", 22, true},
		{"localhost:22", "localhost.", 22, false},
		{"db.internal:22", "", 22, false},
	}
	for _, c := range cases {
		if got := matchPattern(c.pattern, c.host, c.port); got != c.want {
			t.Errorf("Match(%q, %q, %d) = %v", c.pattern, c.host, c.port, got)
		}
	}
}

func TestBastionTargets(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ix := authindex.New(e.s)
	if err := ix.Load(e.ctx); err != nil {
		t.Fatal(err)
	}
	ix.Follow()
	owner := e.user(t, "owner")
	alice := e.user(t, "alice")
	top := e.group(t, "acme", nil, owner.ID)
	sub := e.group(t, "infra", &top.ID, 0)
	other := e.group(t, "other", nil, owner.ID)

	_, err := e.s.CreateBastionTarget(e.ctx, sys, top.ID, keystore.BastionTargetInput{Pattern: "bad"})
	wantOnlyField(t, err, "pattern", "host:port")
	_, err = e.s.CreateBastionTarget(e.ctx, sys, top.ID, keystore.BastionTargetInput{Pattern: "a:1", MinAccessLevel: 31})
	wantOnlyField(t, err, "min_access_level", "valid access level")
	_, err = e.s.CreateBastionTarget(e.ctx, sys, top.ID, keystore.BastionTargetInput{Pattern: "a:1", Description: strings.Repeat("x", 256)})
	wantOnlyField(t, err, "description", "too long")
	_, err = e.s.CreateBastionTarget(e.ctx, sys, 9999, keystore.BastionTargetInput{Pattern: "a:1"})
	wantIs(t, err, keystore.ErrNotFound)

	subT, err := e.s.CreateBastionTarget(e.ctx, sys, sub.ID, keystore.BastionTargetInput{Pattern: "DB.internal:5432", Description: " db "})
	if err != nil {
		t.Fatal(err)
	}
	if subT.Pattern != "db.internal:5432" || subT.MinAccessLevel != keystore.Developer || subT.Description != "db" || !subT.CreatedAt.Equal(t0ms) {
		t.Fatalf("target = %+v", subT)
	}
	high, err := e.s.CreateBastionTarget(e.ctx, sys, top.ID, keystore.BastionTargetInput{Pattern: "*.prod:22", MinAccessLevel: keystore.Maintainer})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.CreateBastionTarget(e.ctx, sys, other.ID, keystore.BastionTargetInput{Pattern: "*:*"}); err != nil {
		t.Fatal(err)
	}
	if ts, n, err := e.s.ListBastionTargets(e.ctx, top.ID, keystore.Page{}); err != nil || n != 1 || ts[0].ID != high.ID {
		t.Fatalf("List = %v, %d, %v", ts, n, err)
	}

	if m := ix.BastionTargets(alice.ID, 0, true, "db.internal", 5432); len(m) != 0 {
		t.Fatalf("non-member matches %v", m)
	}
	// Membership of the parent is inherited by the subgroup.
	if _, err := e.s.AddMember(e.ctx, sys, top.ID, alice.ID, keystore.Developer); err != nil {
		t.Fatal(err)
	}
	m := ix.BastionTargets(alice.ID, 0, true, "db.internal", 5432)
	if len(m) != 1 || m[0].TargetID != subT.ID || m[0].GroupID != sub.ID || !m[0].Literal() {
		t.Fatalf("matches = %+v", m)
	}
	if m := ix.BastionTargets(alice.ID, top.ID, false, "db.internal", 5432); len(m) != 1 {
		t.Fatalf("scoped to acme: %+v", m)
	}
	if m := ix.BastionTargets(alice.ID, other.ID, false, "db.internal", 5432); len(m) != 0 {
		t.Fatalf("scoped to other: %+v", m)
	}
	if m := ix.BastionTargets(alice.ID, 0, true, "web.prod", 22); len(m) != 0 {
		t.Fatalf("developer below maintainer target: %+v", m)
	}
	if _, err := e.s.UpdateMember(e.ctx, sys, top.ID, alice.ID, keystore.Maintainer); err != nil {
		t.Fatal(err)
	}
	if m := ix.BastionTargets(alice.ID, 0, true, "web.prod", 22); len(m) != 1 || m[0].Literal() {
		t.Fatalf("maintainer: %+v", m)
	}
	if err := e.s.DeleteBastionTarget(e.ctx, sys, other.ID, high.ID); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("delete from the wrong group: %v", err)
	}
	if err := e.s.DeleteBastionTarget(e.ctx, sys, top.ID, high.ID); err != nil {
		t.Fatal(err)
	}
	if m := ix.BastionTargets(alice.ID, 0, true, "web.prod", 22); len(m) != 0 {
		t.Fatalf("deleted target still matches: %+v", m)
	}
	// A reload sees the same; deleting the group drops its targets.
	ix2 := authindex.New(e.s)
	if err := ix2.Load(e.ctx); err != nil {
		t.Fatal(err)
	}
	if m := ix2.BastionTargets(alice.ID, 0, true, "db.internal", 5432); len(m) != 1 {
		t.Fatalf("reloaded: %+v", m)
	}
	evs, _, err := e.s.ListAuditEvents(e.ctx, keystore.AuditFilter{GroupID: sub.ID}, keystore.Page{})
	if err != nil || len(evs) == 0 || evs[0].Action != "bastion_target_created" {
		t.Fatalf("group audit = %v, %v", evs, err)
	}
}

// FuzzBastionPattern: parsing never panics, a valid pattern matches the
// host it names, and patterns stored by the store (normalised) stay valid.
func FuzzBastionPattern(f *testing.F) {
	for _, s := range []string{"db.internal:5432", "*:*", "[::1]:22", "10.0.0.*:22", "a:0", "[", ":", "*.x:65535"} {
		f.Add(s, "db.internal", uint32(22))
	}
	f.Fuzz(func(t *testing.T, pattern, host string, port uint32) {
		ok := validPattern(pattern)
		m := matchPattern(pattern, host, port)
		if m && !ok {
			t.Fatalf("invalid pattern %q matched", pattern)
		}
		if m && (port == 0 || port > 65535 || host == "") {
			t.Fatalf("%q matched %q:%d", pattern, host, port)
		}
	})
}

func validPattern(s string) bool {
	_, _, ok := keystore.ParseBastionPattern(s)
	return ok
}

func matchPattern(pattern, host string, port uint32) bool {
	p, _, ok := keystore.ParseBastionPattern(pattern)
	return ok && p.Matches(host, port)
}
