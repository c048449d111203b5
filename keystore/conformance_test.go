package keystore_test

import (
	"errors"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// TestCaseFoldingIsASCII: searches and uniqueness fold A-Z only, on every
// backend, whatever the database locale (SQLite's lower() is ASCII-only;
// PostgreSQL's would follow the locale without the schema's "C" collation).
func TestCaseFoldingIsASCII(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, u := range []struct{ username, email, name string }{
		{"emile", "emile@example.com", "Émile Zola"},
		{"eva", "éva@example.com", "éva"},
	} {
		if _, err := e.s.CreateUser(e.ctx, sys, keystore.UserInput{Username: ptr(u.username), Email: ptr(u.email), Name: ptr(u.name)}); err != nil {
			t.Fatal(err)
		}
	}
	for search, want := range map[string][]string{
		"É":     {"emile"},
		"é":     {"eva"},
		"ÉMILE": {"emile"},
		"zOLA":  {"emile"},
		"ÉVA@":  nil,
	} {
		us, total, err := e.s.ListUsers(e.ctx, keystore.UserFilter{Search: search}, keystore.Page{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, u := range us {
			got = append(got, u.Username)
		}
		if total != len(want) || len(got) != len(want) || (len(want) == 1 && got[0] != want[0]) {
			t.Errorf("search %q: %v (total %d), want %v", search, got, total, want)
		}
	}
	// The e-mail unique index folds ASCII only: ÉVA@ is another address.
	if _, err := e.s.CreateUser(e.ctx, sys, keystore.UserInput{Username: ptr("eva2"), Email: ptr("ÉVA@example.com")}); err != nil {
		t.Fatalf("ÉVA@example.com refused next to éva@example.com: %v", err)
	}
	_, err := e.s.CreateUser(e.ctx, sys, keystore.UserInput{Username: ptr("eva3"), Email: ptr("éVA@EXAMPLE.COM")})
	wantOnlyField(t, err, "email", "has already been taken")
}

// TestListOrderIsByteOrder: lists sorted by path sort by bytes on every
// backend (punctuation before digits before upper before lower case).
func TestListOrderIsByteOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	owner := e.user(t, "owner")
	paths := []string{"a_b", "ab", "a-b", "a.b", "a0", "aB1"}
	for _, p := range paths {
		e.group(t, p, nil, owner.ID)
	}
	gs, _, err := e.s.ListGroups(e.ctx, keystore.GroupFilter{}, keystore.Page{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range gs {
		got = append(got, g.FullPath)
	}
	want := []string{"a-b", "a.b", "a0", "aB1", "a_b", "ab"}
	if len(got) != len(want) {
		t.Fatalf("ListGroups = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ListGroups = %v, want %v", got, want)
		}
	}
}

// TestUnstorableTextIsInvalid: text with a NUL byte or invalid UTF-8 cannot
// be stored by PostgreSQL (and no stored value equals it), so every backend
// answers ErrInvalid for lookups, searches and writes alike, never a driver
// error, and nothing is written.
func TestUnstorableTextIsInvalid(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.user(t, "alice")
	for _, bad := range []string{"al\x00ice", "al\xffice"} {
		if _, err := e.s.UserByUsername(e.ctx, bad); !errors.Is(err, keystore.ErrInvalid) {
			t.Errorf("UserByUsername(%q) = %v, want ErrInvalid", bad, err)
		}
		if _, _, err := e.s.ListUsers(e.ctx, keystore.UserFilter{Search: bad}, keystore.Page{}); !errors.Is(err, keystore.ErrInvalid) {
			t.Errorf("ListUsers(search %q) = %v, want ErrInvalid", bad, err)
		}
		if _, err := e.s.UpdateUser(e.ctx, sys, alice.ID, keystore.UserInput{Name: ptr(bad)}); !errors.Is(err, keystore.ErrInvalid) {
			t.Errorf("UpdateUser(name %q) = %v, want ErrInvalid", bad, err)
		}
	}
	u, err := e.s.User(e.ctx, alice.ID)
	if err != nil || u.Name != alice.Name {
		t.Fatalf("alice after refused updates: %+v, %v", u, err)
	}
}
