package authindex

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

type modelUser struct {
	name, email   string
	active, admin bool
}

func checkUsers(t *testing.T, ix *Index, model map[int64]modelUser) {
	t.Helper()
	if ix.users.n != len(model) || ix.users.byID.count != len(model) ||
		ix.users.byName.count != len(model) || ix.users.byEmail.count != len(model) {
		t.Fatalf("counts %d/%d/%d/%d, model %d", ix.users.n, ix.users.byID.count, ix.users.byName.count, ix.users.byEmail.count, len(model))
	}
	for id, m := range model {
		u, ok := ix.User(id)
		if !ok || u.Active != m.active || u.IsAdmin != m.admin {
			t.Fatalf("User(%d) = %+v %v, want %+v", id, u, ok, m)
		}
		if ix.Username(id) != m.name || !ix.UsernameIs(id, strings.ToUpper(m.name)) {
			t.Fatalf("Username(%d) = %q, want %q", id, ix.Username(id), m.name)
		}
		if ix.UserBlocked(id) == m.active {
			t.Fatalf("UserBlocked(%d) = %v, active %v", id, ix.UserBlocked(id), m.active)
		}
		for _, login := range []string{m.name, strings.ToUpper(m.email)} {
			if u, ok := ix.UserByLogin(login); !ok || u.ID != id {
				t.Fatalf("UserByLogin(%q) = %+v %v, want id %d", login, u, ok, id)
			}
		}
	}
}

func TestUserTableRandomizedAgainstMap(t *testing.T) {
	ix := New(nil)
	model := map[int64]modelUser{}
	rng := rand.New(rand.NewPCG(3, 4))
	for step := range 20000 {
		id := int64(rng.IntN(2000) + 1)
		if rng.IntN(3) == 0 {
			ix.dropUser(id)
			delete(model, id)
			if _, ok := ix.User(id); ok {
				t.Fatalf("user %d found after delete", id)
			}
		} else {
			// Renames move the user between name slots; names are unique.
			m := modelUser{name: fmt.Sprintf("u%d-%d", id, step), active: rng.IntN(4) != 0, admin: rng.IntN(8) == 0}
			m.email = m.name + "@example.com"
			state := keystore.StateActive
			if !m.active {
				state = keystore.StateBlocked
			}
			ix.putUser(&keystore.User{ID: id, Username: m.name, Email: m.email, State: state, IsAdmin: m.admin})
			model[id] = m
		}
		if step%1999 == 0 {
			checkUsers(t, ix, model)
		}
	}
	checkUsers(t, ix, model)
	for _, login := range []string{"nobody", "nobody@example.com", "u1-", ""} {
		if u, ok := ix.UserByLogin(login); ok {
			t.Fatalf("UserByLogin(%q) found %+v", login, u)
		}
	}
	if _, ok := ix.User(0); ok {
		t.Fatal("user 0 found")
	}
	for id := range model {
		ix.dropUser(id)
	}
	checkUsers(t, ix, map[int64]modelUser{})
	if len(*ix.blocked.Load()) != 0 {
		t.Fatalf("blocked set not empty after deleting every user: %v", *ix.blocked.Load())
	}
}
