package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestBastionTargetRoutes(t *testing.T) {
	t.Parallel()
	f := newGroupsFixture(t)
	base := "/api/v4/groups/" + itoa(f.sub) + "/bastion_targets"

	r := f.do(t, "POST", base, f.ownerToken, map[string]any{"pattern": "DB.internal:5432", "description": "primary db"})
	expect(t, "create", r, http.StatusCreated)
	o := r.Object(t)
	if o["pattern"] != "db.internal:5432" || o["min_access_level"] != float64(30) || o["description"] != "primary db" || o["created_at"] == "" {
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
