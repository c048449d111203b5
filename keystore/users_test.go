package keystore_test

import (
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

func TestCreateUserValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		in       keystore.UserInput
		field    string // "" means accepted
		reason   string
		wantName string
	}{
		{"plain", keystore.UserInput{Username: ptr("alice"), Email: ptr("alice@example.com")}, "", "", "alice"},
		{"dots-dashes-underscores", keystore.UserInput{Username: ptr("a.b-c_d9"), Email: ptr("x@example.com"), Name: ptr(" Alice B ")}, "", "", "Alice B"},
		{"max-length-255", keystore.UserInput{Username: ptr("a" + strings.Repeat("b", 254)), Email: ptr("x@example.com")}, "", "", ""},
		{"blank-username", keystore.UserInput{Email: ptr("x@example.com")}, "username", "can't be blank", ""},
		{"username-256", keystore.UserInput{Username: ptr(strings.Repeat("a", 256)), Email: ptr("x@example.com"), Name: ptr("A")}, "username", "too long", ""},
		{"username-space", keystore.UserInput{Username: ptr("al ice"), Email: ptr("x@example.com")}, "username", "can contain only", ""},
		{"username-leading-dash", keystore.UserInput{Username: ptr("-alice"), Email: ptr("x@example.com")}, "username", "can contain only", ""},
		{"username-leading-dot", keystore.UserInput{Username: ptr(".alice"), Email: ptr("x@example.com")}, "username", "can contain only", ""},
		{"username-slash", keystore.UserInput{Username: ptr("a/b"), Email: ptr("x@example.com")}, "username", "can contain only", ""},
		{"username-non-ascii", keystore.UserInput{Username: ptr("ålice"), Email: ptr("x@example.com")}, "username", "can contain only", ""},
		{"username-ends-dot-git", keystore.UserInput{Username: ptr("alice.git"), Email: ptr("x@example.com")}, "username", "can contain only", ""},
		{"username-ends-dot", keystore.UserInput{Username: ptr("alice."), Email: ptr("x@example.com")}, "username", "can contain only", ""},
		{"blank-email", keystore.UserInput{Username: ptr("alice")}, "email", "can't be blank", ""},
		{"email-no-at", keystore.UserInput{Username: ptr("alice"), Email: ptr("alice.example.com")}, "email", "is invalid", ""},
		{"email-empty-local", keystore.UserInput{Username: ptr("alice"), Email: ptr("@example.com")}, "email", "is invalid", ""},
		{"email-empty-domain", keystore.UserInput{Username: ptr("alice"), Email: ptr("alice@")}, "email", "is invalid", ""},
		{"email-with-space", keystore.UserInput{Username: ptr("alice"), Email: ptr("al ice@example.com")}, "email", "is invalid", ""},
		{"email-with-angle", keystore.UserInput{Username: ptr("alice"), Email: ptr("<alice@example.com>")}, "email", "is invalid", ""},
		{"name-256-runes", keystore.UserInput{Username: ptr("alice"), Email: ptr("a@example.com"), Name: ptr(strings.Repeat("é", 256))}, "name", "too long", ""},
		{"name-nul", keystore.UserInput{Username: ptr("alice"), Email: ptr("a@example.com"), Name: ptr("a\x00b")}, "name", "invalid characters", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			u, err := e.s.CreateUser(e.ctx, keystore.Actor{UserID: 0, RemoteIP: "192.0.2.1"}, c.in)
			if c.field != "" {
				wantOnlyField(t, err, c.field, c.reason)
				if _, n, _ := e.s.ListUsers(e.ctx, keystore.UserFilter{}, keystore.Page{}); n != 0 {
					t.Fatalf("%d users stored after a refused create", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("CreateUser: %v", err)
			}
			if u.ID == 0 || u.State != keystore.StateActive || !u.Active() || u.IsAdmin || !u.CreatedAt.Equal(t0ms) {
				t.Fatalf("user = %+v", u)
			}
			if c.wantName != "" && u.Name != c.wantName {
				t.Fatalf("Name = %q, want %q", u.Name, c.wantName)
			}
			got, err := e.s.User(e.ctx, u.ID)
			if err != nil || *got != *u {
				t.Fatalf("User(%d) = %+v, %v; want %+v", u.ID, got, err, u)
			}
		})
	}
}

func TestUserUniqueness(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		user2, mail2 string
		field        string
	}{
		{"same-username-other-case", "ALICE", "other@example.com", "username"},
		{"same-username-mixed-case", "aLiCe", "other@example.com", "username"},
		{"same-email-other-case", "bob", "Alice@Example.COM", "email"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.user(t, "alice")
			_, err := e.s.CreateUser(e.ctx, sys, keystore.UserInput{Username: ptr(c.user2), Email: ptr(c.mail2)})
			wantOnlyField(t, err, c.field, "has already been taken")
		})
	}
	t.Run("change-email-onto-existing", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.user(t, "alice")
		bob := e.user(t, "bob")
		_, err := e.s.UpdateUser(e.ctx, sys, bob.ID, keystore.UserInput{Email: ptr("ALICE@example.com")})
		wantOnlyField(t, err, "email", "has already been taken")
	})
	t.Run("rename-onto-existing-username", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.user(t, "alice")
		bob := e.user(t, "bob")
		_, err := e.s.UpdateUser(e.ctx, sys, bob.ID, keystore.UserInput{Username: ptr("Alice")})
		wantOnlyField(t, err, "username", "has already been taken")
		got, _ := e.s.User(e.ctx, bob.ID)
		if got.Username != "bob" {
			t.Fatalf("refused rename changed username to %q", got.Username)
		}
	})
}

func TestUpdateUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.user(t, "alice")
	got, err := e.s.UpdateUser(e.ctx, sys, u.ID, keystore.UserInput{Name: ptr("Alice A."), Email: ptr("alice@new.example"), IsAdmin: ptr(true)})
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Alice A." || got.Email != "alice@new.example" || !got.IsAdmin || got.Username != "alice" {
		t.Fatalf("updated = %+v", got)
	}
	reread, _ := e.s.User(e.ctx, u.ID)
	if *reread != *got {
		t.Fatalf("reread = %+v, want %+v", reread, got)
	}
	byName, err := e.s.UserByUsername(e.ctx, "ALICE")
	if err != nil || byName.ID != u.ID {
		t.Fatalf("UserByUsername(ALICE) = %+v, %v", byName, err)
	}
	_, err = e.s.UpdateUser(e.ctx, sys, u.ID, keystore.UserInput{Username: ptr("bad name")})
	wantOnlyField(t, err, "username", "can contain only")
	_, err = e.s.UpdateUser(e.ctx, sys, 9999, keystore.UserInput{Name: ptr("x")})
	wantIs(t, err, keystore.ErrNotFound)
	_, err = e.s.User(e.ctx, 9999)
	wantIs(t, err, keystore.ErrNotFound)
	_, err = e.s.UserByUsername(e.ctx, "nobody")
	wantIs(t, err, keystore.ErrNotFound)
}

func TestBlockUnblock(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.user(t, "alice")
	e.user(t, "bob")
	count := func() int {
		_, n, err := e.s.ListAuditEvents(e.ctx, keystore.AuditFilter{TargetType: "user", TargetID: u.ID}, keystore.Page{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count()

	got, err := e.s.SetUserState(e.ctx, sys, u.ID, keystore.StateBlocked)
	if err != nil || got.State != keystore.StateBlocked || got.Active() {
		t.Fatalf("block = %+v, %v", got, err)
	}
	blocked, n, err := e.s.ListUsers(e.ctx, keystore.UserFilter{Blocked: ptr(true)}, keystore.Page{})
	if err != nil || n != 1 || blocked[0].ID != u.ID {
		t.Fatalf("blocked users = %v (%d), %v", blocked, n, err)
	}
	// Blocking a blocked user is a no-op: no new audit event.
	if _, err := e.s.SetUserState(e.ctx, sys, u.ID, keystore.StateBlocked); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != before+1 {
		t.Fatalf("audit events = %d, want %d", got, before+1)
	}
	got, err = e.s.SetUserState(e.ctx, sys, u.ID, keystore.StateActive)
	if err != nil || got.State != keystore.StateActive {
		t.Fatalf("unblock = %+v, %v", got, err)
	}
	if _, n, _ := e.s.ListUsers(e.ctx, keystore.UserFilter{Blocked: ptr(true)}, keystore.Page{}); n != 0 {
		t.Fatalf("%d blocked users after unblock", n)
	}
	evs, _, _ := e.s.ListAuditEvents(e.ctx, keystore.AuditFilter{TargetType: "user", TargetID: u.ID}, keystore.Page{})
	if evs[0].Action != "user_unblocked" || evs[1].Action != "user_blocked" {
		t.Fatalf("latest actions = %q, %q", evs[0].Action, evs[1].Action)
	}
	_, err = e.s.SetUserState(e.ctx, sys, u.ID, "deleted")
	wantOnlyField(t, err, "state", "must be")
	_, err = e.s.SetUserState(e.ctx, sys, 9999, keystore.StateBlocked)
	wantIs(t, err, keystore.ErrNotFound)
}

func TestListUsers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, n := range []string{"alice", "bob", "carol", "dave", "erin"} {
		e.user(t, n)
	}
	cases := []struct {
		name      string
		f         keystore.UserFilter
		pg        keystore.Page
		wantNames []string
		wantTotal int
	}{
		{"all-default-page", keystore.UserFilter{}, keystore.Page{}, []string{"alice", "bob", "carol", "dave", "erin"}, 5},
		{"page-1-of-2", keystore.UserFilter{}, keystore.Page{Page: 1, PerPage: 2}, []string{"alice", "bob"}, 5},
		{"page-3-of-2", keystore.UserFilter{}, keystore.Page{Page: 3, PerPage: 2}, []string{"erin"}, 5},
		{"past-the-end", keystore.UserFilter{}, keystore.Page{Page: 4, PerPage: 2}, nil, 5},
		{"username-exact-any-case", keystore.UserFilter{Username: "CAROL"}, keystore.Page{}, []string{"carol"}, 1},
		{"username-is-not-substring", keystore.UserFilter{Username: "car"}, keystore.Page{}, nil, 0},
		{"search-substring-any-case", keystore.UserFilter{Search: "I"}, keystore.Page{}, []string{"alice", "erin"}, 2},
		{"search-email-for-admins", keystore.UserFilter{Search: "erin@", SearchEmails: true}, keystore.Page{}, []string{"erin"}, 1},
		{"search-never-matches-hidden-emails", keystore.UserFilter{Search: "erin@"}, keystore.Page{}, nil, 0},
		{"active-only", keystore.UserFilter{Blocked: ptr(false)}, keystore.Page{PerPage: 1}, []string{"alice"}, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			us, total, err := e.s.ListUsers(e.ctx, c.f, c.pg)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, u := range us {
				names = append(names, u.Username)
			}
			if strings.Join(names, ",") != strings.Join(c.wantNames, ",") || total != c.wantTotal {
				t.Fatalf("got %v (total %d), want %v (total %d)", names, total, c.wantNames, c.wantTotal)
			}
		})
	}
}

func TestDeleteUserCascades(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.user(t, "alice")
	bob := e.user(t, "bob")
	_, line := newEd25519(t, "alice")
	k := e.key(t, alice.ID, line, "")
	_, secret, err := e.s.CreateToken(e.ctx, sys, alice.ID, keystore.TokenInput{Name: "t", Scopes: []string{keystore.ScopeAPI}})
	if err != nil {
		t.Fatal(err)
	}
	gk, err := e.s.CreateGPGKey(e.ctx, sys, alice.ID, armorEntity(t, newGPG(t, "Alice", "alice@example.com", false), false))
	if err != nil {
		t.Fatal(err)
	}
	g := e.group(t, "team", nil, bob.ID)
	if _, err := e.s.AddMember(e.ctx, sys, g.ID, alice.ID, keystore.Developer); err != nil {
		t.Fatal(err)
	}
	// Bob's things must survive.
	_, bobLine := newEd25519(t, "bob")
	bk := e.key(t, bob.ID, bobLine, "")
	last, _ := e.s.LastChange(e.ctx)

	if err := e.s.DeleteUser(e.ctx, sys, alice.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.User(e.ctx, alice.ID)
	wantIs(t, err, keystore.ErrNotFound)
	_, err = e.s.Key(e.ctx, k.ID)
	wantIs(t, err, keystore.ErrNotFound)
	_, err = e.s.KeyByFingerprint(e.ctx, k.FingerprintSHA256)
	wantIs(t, err, keystore.ErrNotFound)
	_, _, err = e.s.Authenticate(e.ctx, secret)
	wantIs(t, err, keystore.ErrNotFound)
	if _, n, _ := e.s.ListTokens(e.ctx, alice.ID, keystore.Page{}); n != 0 {
		t.Errorf("%d tokens left", n)
	}
	_, err = e.s.GPGKey(e.ctx, alice.ID, gk.ID)
	wantIs(t, err, keystore.ErrNotFound)
	if _, n, _ := e.s.ListGPGKeys(e.ctx, alice.ID, keystore.Page{}); n != 0 {
		t.Errorf("%d GPG keys left", n)
	}
	_, err = e.s.Member(e.ctx, g.ID, alice.ID)
	wantIs(t, err, keystore.ErrNotFound)
	if ms, n, _ := e.s.ListMembers(e.ctx, g.ID, keystore.Page{}); n != 1 || ms[0].User.ID != bob.ID {
		t.Errorf("members after delete = %d", n)
	}
	if _, err := e.s.Key(e.ctx, bk.ID); err != nil {
		t.Errorf("bob's key: %v", err)
	}
	// The change log tells indexes about the key and the user.
	chs, _ := e.s.ChangesSince(e.ctx, last, 100)
	want := map[string]bool{"key/delete": false, "user/delete": false}
	for _, c := range chs {
		if c.Entity == "key" && c.EntityID == k.ID && c.Op == "delete" {
			want["key/delete"] = true
		}
		if c.Entity == "user" && c.EntityID == alice.ID && c.Op == "delete" {
			want["user/delete"] = true
		}
	}
	for what, seen := range want {
		if !seen {
			t.Errorf("change log after DeleteUser lacks %s: %+v", what, chs)
		}
	}
	// The fingerprint, username and email are free again.
	carol := e.user(t, "carol")
	if _, err := e.s.CreateKey(e.ctx, sys, carol.ID, keystore.KeyInput{Title: "reuse", Key: line}); err != nil {
		t.Errorf("re-adding a deleted user's key: %v", err)
	}
	e.user(t, "alice")
	err = e.s.DeleteUser(e.ctx, sys, alice.ID)
	wantIs(t, err, keystore.ErrNotFound)
}
