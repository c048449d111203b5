package httpapi_test

import (
	"database/sql"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

func TestBastionTargetRoutes(t *testing.T) {
	t.Parallel()
	f := newGroupsFixture(t)
	base := "/api/v4/groups/" + itoa(f.sub) + "/bastion_targets"
	// Owners define targets only inside what an admin allowed (here on the
	// parent group, which covers its subgroups).
	for _, pattern := range []string{"*.internal:5432", "*.prod:*"} {
		expect(t, "allowance "+pattern, f.do(t, "POST", "/api/v4/groups/"+itoa(f.top)+"/bastion_allowances", adminSecret,
			map[string]any{"pattern": pattern}), http.StatusCreated)
	}

	r := f.do(t, "POST", base, f.ownerToken, map[string]any{"pattern": "DB.internal:5432", "description": "primary db"})
	expect(t, "create", r, http.StatusCreated)
	o := r.Object(t)
	if o["pattern"] != "db.internal:5432" || o["min_access_level"] != float64(30) || o["description"] != "primary db" || o["created_at"] == "" ||
		o["origin"] != "owner" || o["active"] != true {
		t.Fatalf("created = %v", o)
	}
	id := itoa(int64(o["id"].(float64)))
	r = f.do(t, "POST", base, f.ownerToken, map[string]any{"pattern": "*.prod:*", "min_access_level": 40})
	expect(t, "create wildcard", r, http.StatusCreated)

	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{}, "pattern"},
		{map[string]any{"pattern": "db.internal"}, "pattern"},
		{map[string]any{"pattern": ":22"}, "pattern"},
		{map[string]any{"pattern": "db:0"}, "pattern"},
		{map[string]any{"pattern": "db:70000"}, "pattern"},
		{map[string]any{"pattern": "db:22", "min_access_level": 35}, "min_access_level"},
		{map[string]any{"pattern": "db:22", "min_access_level": 0}, "min_access_level"},
		{map[string]any{"pattern": "db:22", "description": strings.Repeat("d", 256)}, "description"},
	} {
		r := f.do(t, "POST", base, f.ownerToken, c.body)
		expect(t, "invalid", r, http.StatusBadRequest)
		if !strings.Contains(string(r.Body), c.field) {
			t.Errorf("%v: %s, want field %s", c.body, r.Body, c.field)
		}
	}

	r = f.do(t, "GET", base, f.ownerToken, nil)
	expect(t, "list", r, http.StatusOK)
	if l := r.List(t); len(l) != 2 || r.Header.Get("X-Total") != "2" {
		t.Fatalf("list = %v", l)
	}
	// Maintainers may not see or change targets; outsiders get 404.
	expect(t, "maintainer list", f.do(t, "GET", base, f.maintToken, nil), http.StatusForbidden)
	expect(t, "maintainer create", f.do(t, "POST", base, f.maintToken, map[string]any{"pattern": "x:1"}), http.StatusForbidden)
	expect(t, "maintainer delete", f.do(t, "DELETE", base+"/"+id, f.maintToken, nil), http.StatusForbidden)
	expect(t, "outsider list", f.do(t, "GET", base, f.outsiderToken, nil), http.StatusNotFound)
	expect(t, "anonymous", f.do(t, "GET", base, "", nil), http.StatusUnauthorized)
	// A target belongs to its group.
	expect(t, "delete via parent", f.do(t, "DELETE", "/api/v4/groups/"+itoa(f.top)+"/bastion_targets/"+id, f.ownerToken, nil), http.StatusNotFound)
	expect(t, "delete", f.do(t, "DELETE", base+"/"+id, f.ownerToken, nil), http.StatusNoContent)
	expect(t, "delete again", f.do(t, "DELETE", base+"/"+id, f.ownerToken, nil), http.StatusNotFound)
	if l := f.do(t, "GET", base, f.ownerToken, nil).List(t); len(l) != 1 {
		t.Fatalf("after delete: %v", l)
	}
}

// TestBastionPolicy: only admins decide where the bastion reaches. An
// admin adds targets anywhere and allowances for a group; an owner who is
// not an admin adds targets only inside the allowances of the group or its
// ancestors (403, nothing stored, otherwise) and cannot touch allowances.
func TestBastionPolicy(t *testing.T) {
	t.Parallel()
	f := newGroupsFixture(t)
	top, sub := "/api/v4/groups/"+itoa(f.top), "/api/v4/groups/"+itoa(f.sub)
	count := func() int {
		n := 0
		for _, g := range []int64{f.top, f.sub} {
			_, total, err := f.store.ListBastionTargets(f.ctx, g, keystore.Page{PerPage: 100})
			if err != nil {
				t.Fatal(err)
			}
			n += total
		}
		return n
	}

	// No allowances: an owner's target is refused, with a reason.
	r := f.do(t, "POST", top+"/bastion_targets", f.ownerToken, map[string]any{"pattern": "127.0.0.1:8080"})
	expect(t, "owner target without allowances", r, http.StatusForbidden)
	if !strings.Contains(string(r.Body), "outside what admins allowed") {
		t.Fatalf("refusal does not say why: %s", r.Body)
	}
	expect(t, "owner *:*", f.do(t, "POST", top+"/bastion_targets", f.ownerToken, map[string]any{"pattern": "*:*"}), http.StatusForbidden)
	if n := count(); n != 0 {
		t.Fatalf("%d targets stored after refusals", n)
	}
	// Owners cannot grant themselves allowances.
	expect(t, "owner allowance", f.do(t, "POST", top+"/bastion_allowances", f.ownerToken, map[string]any{"pattern": "*:*"}), http.StatusForbidden)

	// The admin path: a target anywhere, and allowances.
	r = f.do(t, "POST", top+"/bastion_targets", adminSecret, map[string]any{"pattern": "10.9.9.9:22"})
	expect(t, "admin target", r, http.StatusCreated)
	if o := r.Object(t); o["origin"] != "admin" || o["active"] != true {
		t.Fatalf("admin target = %v", o)
	}
	for _, c := range []struct{ pattern, want string }{
		{"10.20.99.1/16:22", "10.20.0.0/16:22"},
		{"[fd00:1::/64]:*", "[fd00:1::/64]:*"},
		{"*.lab.example:*", "*.lab.example:*"},
	} {
		r := f.do(t, "POST", top+"/bastion_allowances", adminSecret, map[string]any{"pattern": c.pattern, "description": "lab"})
		expect(t, "allowance "+c.pattern, r, http.StatusCreated)
		if got := r.Object(t)["pattern"]; got != c.want {
			t.Errorf("allowance %s stored as %v, want %s", c.pattern, got, c.want)
		}
	}
	for _, bad := range []string{"10.20.0.0/16:22" /* the same again */, "10.0.0.0/33:22", "fd00::/8:22", "[10.0.0.0/8]:22", "10.0.0.0/8", "*.lab:0"} {
		expect(t, "bad allowance "+bad, f.do(t, "POST", top+"/bastion_allowances", adminSecret, map[string]any{"pattern": bad}), http.StatusBadRequest)
	}

	// The owner path: inside (from the subgroup too) and outside.
	for _, c := range []struct {
		pattern string
		code    int
	}{
		{"10.20.3.4:22", http.StatusCreated},
		{"10.20.3.4:23", http.StatusForbidden},        // port not allowed
		{"10.21.0.1:22", http.StatusForbidden},        // outside the CIDR
		{"10.20.*.*:22", http.StatusForbidden},        // a name pattern is not inside a CIDR
		{"db.10-20.example:22", http.StatusForbidden}, // nor is a name
		{"[fd00:1::5]:443", http.StatusCreated},
		{"[fd00:2::5]:443", http.StatusForbidden},
		{"web.lab.example:8080", http.StatusCreated},
		{"*.lab.example:*", http.StatusCreated},
		{"*.*.example:*", http.StatusForbidden},
		{"web.lab.example.evil:80", http.StatusForbidden},
		{"*:*", http.StatusForbidden},
		{"127.0.0.1:8080", http.StatusForbidden},
	} {
		r := f.do(t, "POST", sub+"/bastion_targets", f.ownerToken, map[string]any{"pattern": c.pattern})
		if r.Code != c.code {
			t.Errorf("owner target %s: %d %s, want %d", c.pattern, r.Code, r.Body, c.code)
		}
	}
	if n := count(); n != 5 {
		t.Fatalf("%d targets stored, want 5 (the admin's and four inside allowances)", n)
	}
	// The owner reads the allowances that apply, from the subgroup too.
	r = f.do(t, "GET", sub+"/bastion_allowances", f.ownerToken, nil)
	expect(t, "owner lists allowances", r, http.StatusOK)
	if l := r.List(t); len(l) != 3 {
		t.Fatalf("allowances seen from the subgroup: %v", l)
	}
	expect(t, "maintainer lists allowances", f.do(t, "GET", sub+"/bastion_allowances", f.maintToken, nil), http.StatusForbidden)

	// Deleting an allowance deactivates the owner targets it covered.
	all := f.do(t, "GET", top+"/bastion_allowances", adminSecret, nil).List(t)
	var cidr string
	for _, a := range all {
		if a["pattern"] == "10.20.0.0/16:22" {
			cidr = itoa(int64(a["id"].(float64)))
		}
	}
	expect(t, "owner deletes allowance", f.do(t, "DELETE", top+"/bastion_allowances/"+cidr, f.ownerToken, nil), http.StatusForbidden)
	expect(t, "admin deletes allowance", f.do(t, "DELETE", top+"/bastion_allowances/"+cidr, adminSecret, nil), http.StatusNoContent)
	for _, o := range f.do(t, "GET", sub+"/bastion_targets", f.ownerToken, nil).List(t) {
		if o["pattern"] == "10.20.3.4:22" && o["active"] != false {
			t.Fatalf("owner target outside every allowance still active: %v", o)
		}
		if o["pattern"] == "web.lab.example:8080" && o["active"] != true {
			t.Fatalf("owner target inside an allowance inactive: %v", o)
		}
	}
}

// TestBastionOwnerTargetNeverForwards: an owner's target that covers only
// restricted addresses (loopback, link-local and cloud metadata,
// unspecified, multicast, NAT64 forms of those, localhost names) could
// never forward, since only an admin's target naming the exact address
// reaches them: it is refused with a 403 that says why, even inside an
// allowance that covers it, and nothing is stored. Admins' targets are
// unaffected; a target stored before the rule is listed as inactive.
func TestBastionOwnerTargetNeverForwards(t *testing.T) {
	t.Parallel()
	f := newGroupsFixture(t)
	top := "/api/v4/groups/" + itoa(f.top)
	for _, al := range []string{"*:*", "0.0.0.0/0:*", "[::/0]:*"} {
		expect(t, "allowance "+al, f.do(t, "POST", top+"/bastion_allowances", adminSecret, map[string]any{"pattern": al}), http.StatusCreated)
	}
	stored := func() int {
		_, n, err := f.store.ListBastionTargets(f.ctx, f.top, keystore.Page{PerPage: 100})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, c := range []struct{ pattern, why string }{
		{"127.0.0.1:22", "loopback"},
		{"127.9.9.9:*", "loopback"},
		{"[::1]:22", "loopback"},
		{"[::ffff:127.0.0.1]:22", "loopback"},
		{"169.254.169.254:80", "link-local"},
		{"[fe80::1]:22", "link-local"},
		{"[fd00:ec2::254]:80", "metadata"},
		{"[64:ff9b::a9fe:a9fe]:80", "NAT64"},
		{"0.0.0.0:22", "unspecified"},
		{"[::]:22", "unspecified"},
		{"224.0.0.251:5353", "multicast"},
		{"[ff02::1]:22", "multicast"},
		{"localhost:22", "localhost"},
		{"LocalHost:*", "localhost"},
		{"*.localhost:8080", "localhost"},
	} {
		r := f.do(t, "POST", top+"/bastion_targets", f.ownerToken, map[string]any{"pattern": c.pattern})
		if r.Code != http.StatusForbidden || !strings.Contains(string(r.Body), "could never forward") || !strings.Contains(string(r.Body), c.why) {
			t.Errorf("owner target %s: %d %s, want 403 saying it could never forward (%s)", c.pattern, r.Code, r.Body, c.why)
		}
	}
	if n := stored(); n != 0 {
		t.Fatalf("%d targets stored after refusals", n)
	}
	// What could reach something else is stored and active, names
	// included (they are judged on the addresses they resolve to).
	for _, p := range []string{"10.1.2.3:22", "[fd00:1::5]:443", "db.internal:5432", "*:22", "localhost.example:22", "127.0.0.*:22"} {
		r := f.do(t, "POST", top+"/bastion_targets", f.ownerToken, map[string]any{"pattern": p})
		expect(t, "owner target "+p, r, http.StatusCreated)
		if o := r.Object(t); o["active"] != true {
			t.Errorf("owner target %s = %v, want active", p, o)
		}
	}
	// An admin's target naming a restricted address is network policy as
	// written.
	for _, p := range []string{"127.0.0.1:5432", "169.254.169.254:80", "localhost:22"} {
		r := f.do(t, "POST", top+"/bastion_targets", adminSecret, map[string]any{"pattern": p})
		expect(t, "admin target "+p, r, http.StatusCreated)
		if o := r.Object(t); o["active"] != true || o["origin"] != "admin" {
			t.Errorf("admin target %s = %v", p, o)
		}
	}
	// A target an owner stored before the rule is listed as inactive,
	// with the reason.
	driver, dsn := "sqlite", "file:"+filepath.Join(f.dir, "keygate.db")
	if f.store.Backend() == "postgres" {
		driver, dsn = "pgx", f.dsn
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q := `INSERT INTO bastion_targets (group_id, pattern, min_access_level, description, created_at, origin, disabled_reason) VALUES (?, '127.0.0.1:6379', 30, 'old', 0, 'owner', '')`
	if f.store.Backend() == "postgres" {
		q = strings.Replace(q, "?", "$1", 1)
	}
	if _, err := db.ExecContext(f.ctx, q, f.top); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, o := range f.do(t, "GET", top+"/bastion_targets?per_page=100", f.ownerToken, nil).List(t) {
		if o["pattern"] == "127.0.0.1:6379" {
			found = true
			if o["active"] != false || !strings.Contains(fmt.Sprint(o["disabled_reason"]), "could never forward") {
				t.Errorf("an owner's old loopback target is listed as %v", o)
			}
		}
	}
	if !found {
		t.Fatal("the old owner target is not listed")
	}
}
