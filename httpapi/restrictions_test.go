package httpapi_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/keygate/keygate/keystore"
)

// Parameters that restrict access are honoured or refused, never accepted
// and dropped (issue 20, finding 7).

// TestMemberExpiresAt: a member added with expires_at (GitLab's date)
// shows it, keeps access until the start of that day (UTC) and has none
// from then on: the group, its projects and its member lists forget them
// with no write. Past dates and times of day are refused; an edit sets,
// keeps or clears the expiry.
func TestMemberExpiresAt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	owner, ownerToken := e.newUser(t, "owner")
	dev, devToken := e.newUser(t, "dev")
	name, path := "Eng", "eng"
	g, err := e.store.CreateGroup(e.ctx, keystore.Actor{}, keystore.GroupInput{Name: &name, Path: &path}, owner.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.CreateProject(e.ctx, keystore.Actor{}, keystore.ProjectInput{GroupID: g.ID, Path: "app"}); err != nil {
		t.Fatal(err)
	}
	c := newGitLabClient(t, e, ownerToken)
	dc := newGitLabClient(t, e, devToken)
	add := func(expires string) (*gitlab.GroupMember, *gitlab.Response, error) {
		return c.GroupMembers.AddGroupMember(g.ID, &gitlab.AddGroupMemberOptions{UserID: gitlab.Ptr(dev.ID),
			AccessLevel: gitlab.Ptr(gitlab.DeveloperPermissions), ExpiresAt: gitlab.Ptr(expires)})
	}

	// Refused: a past date, today (its start has passed), a time of day, garbage.
	for _, bad := range []string{
		dateFromNow(e, -24*time.Hour).Format(time.DateOnly),
		dateFromNow(e, 0).Format(time.DateOnly),
		dateFromNow(e, 72*time.Hour).Format(time.DateOnly) + "T12:00:00Z",
		"next week",
	} {
		_, resp, err := add(bad)
		expectStatus(t, "AddGroupMember(expires_at="+bad+")", resp, err, http.StatusBadRequest)
		if !strings.Contains(err.Error(), "expires_at") {
			t.Fatalf("AddGroupMember(expires_at=%s): the refusal does not name expires_at: %v", bad, err)
		}
	}
	if _, _, err := e.store.ListMembers(e.ctx, g.ID, keystore.Page{}); err != nil {
		t.Fatal(err)
	} else if _, err := e.store.Member(e.ctx, g.ID, dev.ID); err == nil {
		t.Fatal("a refused add stored the member")
	}

	deadline := dateFromNow(e, 72*time.Hour)
	date := deadline.Format(time.DateOnly)
	m, resp, err := add(date)
	expectStatus(t, "AddGroupMember(expires_at)", resp, err, http.StatusCreated)
	if m.ExpiresAt == nil || m.ExpiresAt.String() != date {
		t.Fatalf("AddGroupMember: expires_at = %v, want %s", m.ExpiresAt, date)
	}
	got, _, err := c.GroupMembers.GetGroupMember(g.ID, dev.ID)
	if err != nil || got.ExpiresAt == nil || got.ExpiresAt.String() != date {
		t.Fatalf("GetGroupMember = %+v, %v; want expires_at %s", got, err, date)
	}
	r := e.do(t, http.MethodGet, "/api/v4/groups/"+itoa(g.ID)+"/members/all/"+itoa(dev.ID), ownerToken, nil)
	if v := r.Object(t)["expires_at"]; v != date {
		t.Fatalf("members/all/:id expires_at = %v, want %s", v, date)
	}

	devSees := func(when string, want bool) {
		t.Helper()
		_, resp, err := dc.Groups.GetGroup(g.ID, nil)
		if want && err != nil || !want && (resp == nil || resp.StatusCode != http.StatusNotFound) {
			t.Fatalf("%s: dev's GetGroup: %v", when, err)
		}
		projects, _, err := dc.Projects.ListProjects(nil)
		if err != nil || (len(projects) == 1) != want {
			t.Fatalf("%s: dev lists %d projects, %v", when, len(projects), err)
		}
		members, _, err := c.Groups.ListGroupMembers(g.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		all, _, err := c.Groups.ListAllGroupMembers(g.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if (len(members) == 2) != want || (len(all) == 2) != want {
			t.Fatalf("%s: the owner lists %d members, %d effective", when, len(members), len(all))
		}
	}
	devSees("before the deadline", true)
	e.clock.Advance(deadline.Sub(e.clock.Now()) - time.Millisecond)
	devSees("1 ms before the deadline", true)
	e.clock.Advance(time.Millisecond)
	devSees("at the start of the expiry date", false)
	_, resp, err = c.GroupMembers.GetGroupMember(g.ID, dev.ID)
	expectStatus(t, "GetGroupMember(expired)", resp, err, http.StatusNotFound)

	// Added again: a new membership, without an expiry.
	m, _, err = c.GroupMembers.AddGroupMember(g.ID, &gitlab.AddGroupMemberOptions{UserID: gitlab.Ptr(dev.ID),
		AccessLevel: gitlab.Ptr(gitlab.DeveloperPermissions)})
	if err != nil || m.ExpiresAt != nil {
		t.Fatalf("adding the expired member again = %+v, %v", m, err)
	}
	devSees("added again", true)

	// Edit: set, keep (level only), clear (""), and JSON null clears too.
	later := dateFromNow(e, 10*24*time.Hour).Format(time.DateOnly)
	edit := func(opt *gitlab.EditGroupMemberOptions) *gitlab.GroupMember {
		t.Helper()
		m, _, err := c.GroupMembers.EditGroupMember(g.ID, dev.ID, opt)
		if err != nil {
			t.Fatalf("EditGroupMember: %v", err)
		}
		return m
	}
	if m := edit(&gitlab.EditGroupMemberOptions{AccessLevel: gitlab.Ptr(gitlab.DeveloperPermissions), ExpiresAt: gitlab.Ptr(later)}); m.ExpiresAt == nil || m.ExpiresAt.String() != later {
		t.Fatalf("edit with expires_at: %v, want %s", m.ExpiresAt, later)
	}
	if m := edit(&gitlab.EditGroupMemberOptions{AccessLevel: gitlab.Ptr(gitlab.ReporterPermissions)}); m.ExpiresAt == nil || m.ExpiresAt.String() != later {
		t.Fatalf("edit of the level alone: expires_at %v, want %s kept", m.ExpiresAt, later)
	}
	if m := edit(&gitlab.EditGroupMemberOptions{AccessLevel: gitlab.Ptr(gitlab.ReporterPermissions), ExpiresAt: gitlab.Ptr("")}); m.ExpiresAt != nil {
		t.Fatalf("edit with expires_at \"\": %v, want none", m.ExpiresAt)
	}
	edit(&gitlab.EditGroupMemberOptions{AccessLevel: gitlab.Ptr(gitlab.ReporterPermissions), ExpiresAt: gitlab.Ptr(later)})
	r = e.do(t, http.MethodPut, "/api/v4/groups/"+itoa(g.ID)+"/members/"+itoa(dev.ID), ownerToken,
		map[string]any{"access_level": 20, "expires_at": nil})
	expect(t, "edit with expires_at null", r, http.StatusOK)
	if v, ok := r.Object(t)["expires_at"]; !ok || v != nil {
		t.Fatalf("edit with expires_at null: expires_at = %v, want null", v)
	}
	r = e.do(t, http.MethodPut, "/api/v4/groups/"+itoa(g.ID)+"/members/"+itoa(dev.ID), ownerToken,
		map[string]any{"access_level": 20, "expires_at": dateFromNow(e, -48*time.Hour).Format(time.DateOnly)})
	expect(t, "edit with a past expires_at", r, http.StatusBadRequest)

	// The group's only lasting owner cannot be given an expiry.
	r = e.do(t, http.MethodPut, "/api/v4/groups/"+itoa(g.ID)+"/members/"+itoa(owner.ID), ownerToken,
		map[string]any{"access_level": 50, "expires_at": later})
	expect(t, "an expiry for the last owner", r, http.StatusConflict)
}

// TestUserLimitsEnforced: can_create_group=false and external=true stop
// top-level groups (subgroups follow the parent's role, as in GitLab);
// the limits are returned to the user and admins; projects_limit and
// contradictions are validated.
func TestUserLimitsEnforced(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin := newGitLabClient(t, e, adminSecret)
	create := func(username string, opt gitlab.CreateUserOptions) (*gitlab.User, string) {
		t.Helper()
		opt.Username, opt.Email = gitlab.Ptr(username), gitlab.Ptr(username+"@example.com")
		u, resp, err := admin.Users.CreateUser(&opt)
		expectStatus(t, "CreateUser("+username+")", resp, err, http.StatusCreated)
		return u, e.newToken(t, u.ID, nil, keystore.ScopeAPI)
	}
	plain, plainToken := create("plain", gitlab.CreateUserOptions{})
	if !plain.CanCreateGroup || plain.External || plain.ProjectsLimit != keystore.DefaultProjectsLimit {
		t.Fatalf("a new user's limits = can_create_group %v, external %v, projects_limit %d", plain.CanCreateGroup, plain.External, plain.ProjectsLimit)
	}
	noGroups, noGroupsToken := create("nogroups", gitlab.CreateUserOptions{CanCreateGroup: gitlab.Ptr(false), ProjectsLimit: gitlab.Ptr(int64(0))})
	if noGroups.CanCreateGroup || noGroups.ProjectsLimit != 0 || noGroups.CanCreateProject {
		t.Fatalf("CreateUser(can_create_group=false, projects_limit=0) = %+v", noGroups)
	}
	ext, extToken := create("ext", gitlab.CreateUserOptions{External: gitlab.Ptr(true)})
	if !ext.External || ext.CanCreateGroup || ext.ProjectsLimit != 0 {
		t.Fatalf("CreateUser(external) = %+v; want external, no group creation, projects_limit 0", ext)
	}

	// Returned to the user themselves and to admins, not to others.
	if me, _, err := newGitLabClient(t, e, extToken).Users.CurrentUser(); err != nil || !me.External || me.CanCreateGroup {
		t.Fatalf("GET /user as the external user = %+v, %v", me, err)
	}
	if o := e.do(t, http.MethodGet, "/api/v4/users/"+itoa(int64(ext.ID)), plainToken, nil).Object(t); o["external"] != nil || o["projects_limit"] != nil {
		t.Fatalf("another user sees the limits: %v", o)
	}

	topLevel := func(token, path string) (*gitlab.Group, *gitlab.Response, error) {
		return newGitLabClient(t, e, token).Groups.CreateGroup(&gitlab.CreateGroupOptions{Name: gitlab.Ptr(path), Path: gitlab.Ptr(path)})
	}
	g, _, err := topLevel(plainToken, "plain-team")
	if err != nil {
		t.Fatalf("an ordinary user creates a top-level group: %v", err)
	}
	for _, tc := range []struct{ who, token, says string }{
		{"can_create_group=false", noGroupsToken, "can_create_group"},
		{"external", extToken, "external users"},
	} {
		_, resp, err := topLevel(tc.token, "by-"+tc.who[:3])
		expectStatus(t, "top-level group by a user with "+tc.who, resp, err, http.StatusForbidden)
		if !strings.Contains(err.Error(), tc.says) {
			t.Fatalf("refusal for %s does not say why: %v", tc.who, err)
		}
	}
	if _, n, _ := e.store.ListGroups(e.ctx, keystore.GroupFilter{}, keystore.Page{}); n != 1 {
		t.Fatalf("%d groups exist, want only plain's", n)
	}

	// As GitLab: a maintainer of a group may create subgroups and projects
	// there, external or not; an external user sees only their groups.
	for _, u := range []*gitlab.User{noGroups, ext} {
		if _, err := e.store.AddMember(e.ctx, keystore.Actor{}, int64(g.ID), int64(u.ID), keystore.Maintainer); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.store.CreateGroup(e.ctx, keystore.Actor{}, keystore.GroupInput{Name: gitlab.Ptr("Other"), Path: gitlab.Ptr("other")}, plain.ID); err != nil {
		t.Fatal(err)
	}
	xc := newGitLabClient(t, e, extToken)
	if _, _, err := xc.Groups.CreateGroup(&gitlab.CreateGroupOptions{Name: gitlab.Ptr("sub"), Path: gitlab.Ptr("sub"), ParentID: gitlab.Ptr(g.ID)}); err != nil {
		t.Fatalf("an external maintainer creates a subgroup: %v", err)
	}
	if _, _, err := xc.Projects.CreateProject(&gitlab.CreateProjectOptions{Path: gitlab.Ptr("app"), NamespaceID: gitlab.Ptr(g.ID)}); err != nil {
		t.Fatalf("an external maintainer creates a project in the group: %v", err)
	}
	groups, _, err := xc.Groups.ListGroups(nil)
	if err != nil || len(groups) != 2 {
		t.Fatalf("the external user lists %d groups, %v; want plain-team and its subgroup only", len(groups), err)
	}

	// Validation and GitLab's rule for external users, on create and edit.
	for _, tc := range []struct {
		what, field string
		opt         gitlab.CreateUserOptions
	}{
		{"projects_limit=-1", "projects_limit", gitlab.CreateUserOptions{ProjectsLimit: gitlab.Ptr(int64(-1))}},
		{"external with can_create_group", "can_create_group", gitlab.CreateUserOptions{External: gitlab.Ptr(true), CanCreateGroup: gitlab.Ptr(true)}},
		{"external with projects_limit", "projects_limit", gitlab.CreateUserOptions{External: gitlab.Ptr(true), ProjectsLimit: gitlab.Ptr(int64(10))}},
	} {
		opt := tc.opt
		opt.Username, opt.Email = gitlab.Ptr("bad"), gitlab.Ptr("bad@example.com")
		_, resp, err := admin.Users.CreateUser(&opt)
		expectStatus(t, "CreateUser("+tc.what+")", resp, err, http.StatusBadRequest)
		if !strings.Contains(err.Error(), tc.field) {
			t.Fatalf("CreateUser(%s): the refusal does not name %s: %v", tc.what, tc.field, err)
		}
	}
	r := e.do(t, http.MethodPost, "/api/v4/users", adminSecret, map[string]any{"username": "bad", "email": "bad@example.com", "external": "perhaps"})
	expect(t, "external=perhaps", r, http.StatusBadRequest)
	_, resp, err := admin.Users.ModifyUser(ext.ID, &gitlab.ModifyUserOptions{CanCreateGroup: gitlab.Ptr(true)})
	expectStatus(t, "ModifyUser(external user, can_create_group=true)", resp, err, http.StatusBadRequest)
	back, _, err := admin.Users.ModifyUser(ext.ID, &gitlab.ModifyUserOptions{External: gitlab.Ptr(false)})
	if err != nil || back.External || !back.CanCreateGroup {
		t.Fatalf("ModifyUser(external=false) = %+v, %v", back, err)
	}
	if _, _, err := topLevel(extToken, "no-longer-external"); err != nil {
		t.Fatalf("a user no longer external creates a top-level group: %v", err)
	}
	limited, _, err := admin.Users.ModifyUser(plain.ID, &gitlab.ModifyUserOptions{CanCreateGroup: gitlab.Ptr(false)})
	if err != nil || limited.CanCreateGroup {
		t.Fatalf("ModifyUser(can_create_group=false) = %+v, %v", limited, err)
	}
	_, resp, err = topLevel(plainToken, "second")
	expectStatus(t, "top-level group after can_create_group=false", resp, err, http.StatusForbidden)
	// Admins create top-level groups whatever their flag says.
	if _, _, err := topLevel(adminSecret, "admins"); err != nil {
		t.Fatalf("admin: %v", err)
	}
}

// TestSudoParameter: sudo sent in a form or JSON body is the Sudo header:
// performed as that user with a sudo-scoped admin token, refused without
// the scope, and never performed as the token's own user. A token whose
// only scope is sudo reads and writes nothing.
func TestSudoParameter(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, _ := e.newUser(t, "alice")
	withSudo := e.newToken(t, e.admin.ID, nil, keystore.ScopeAPI, keystore.ScopeSudo)
	keysOf := func(userID int64) int {
		_, total, err := e.store.ListKeys(e.ctx, keystore.KeyFilter{UserID: userID}, keystore.Page{PerPage: 100})
		if err != nil {
			t.Fatal(err)
		}
		return total
	}
	post := func(token, contentType, body string) response {
		return e.raw(t, http.MethodPost, "/api/v4/user/keys", http.Header{"Private-Token": {token}, "Content-Type": {contentType}},
			strings.NewReader(body))
	}
	jsonKey := func(sudo string) string {
		return `{"title":"k","key":"` + mustKey(t) + `","sudo":"` + sudo + `"}`
	}
	formKey := func(sudo string) string {
		return url.Values{"title": {"k"}, "key": {mustKey(t)}, "sudo": {sudo}}.Encode()
	}

	// Without the sudo scope: refused, whatever the body's encoding.
	r := post(adminSecret, "application/json", jsonKey("alice"))
	expect(t, "JSON sudo with an api-only admin token", r, http.StatusForbidden)
	if !strings.Contains(string(r.Body), "insufficient_scope") {
		t.Fatalf("refusal does not name the missing scope: %s", r.Body)
	}
	expect(t, "form sudo with an api-only admin token", post(adminSecret, "application/x-www-form-urlencoded", formKey("alice")), http.StatusForbidden)
	if n, m := keysOf(e.admin.ID), keysOf(alice.ID); n != 0 || m != 0 {
		t.Fatalf("refused body-sudo writes stored keys: root %d, alice %d", n, m)
	}

	// With the scope: the write is alice's, by username and by id.
	expect(t, "JSON sudo", post(withSudo, "application/json", jsonKey("alice")), http.StatusCreated)
	expect(t, "form sudo by id", post(withSudo, "application/x-www-form-urlencoded", formKey(itoa(alice.ID))), http.StatusCreated)
	r = e.raw(t, http.MethodPost, "/api/v4/user/keys", http.Header{"Private-Token": {withSudo}, "Content-Type": {"application/json"}},
		strings.NewReader(`{"title":"k","key":"`+mustKey(t)+`","sudo":`+itoa(alice.ID)+`}`))
	expect(t, "JSON sudo as a number", r, http.StatusCreated)
	if n, m := keysOf(e.admin.ID), keysOf(alice.ID); n != 0 || m != 3 {
		t.Fatalf("body-sudo writes: root has %d keys, alice %d; want 0 and 3", n, m)
	}
	// Two places, two users: refused.
	r = e.raw(t, http.MethodPost, "/api/v4/user/keys", http.Header{"Private-Token": {withSudo}, "Sudo": {"root"},
		"Content-Type": {"application/json"}}, strings.NewReader(jsonKey("alice")))
	expect(t, "Sudo header and body disagree", r, http.StatusBadRequest)
	if n, m := keysOf(e.admin.ID), keysOf(alice.ID); n != 0 || m != 3 {
		t.Fatalf("a refused request stored a key: root %d, alice %d", n, m)
	}

	// A sudo-only token: nothing, even reads.
	sudoOnly := e.newToken(t, e.admin.ID, nil, keystore.ScopeSudo)
	expect(t, "GET /user with a sudo-only token", e.do(t, http.MethodGet, "/api/v4/user", sudoOnly, nil), http.StatusForbidden)
	r = e.raw(t, http.MethodGet, "/api/v4/user", http.Header{"Private-Token": {sudoOnly}, "Sudo": {"alice"}}, nil)
	expect(t, "GET /user with a sudo-only token and Sudo", r, http.StatusForbidden)
	expect(t, "POST with a sudo-only token", post(sudoOnly, "application/json", jsonKey("alice")), http.StatusForbidden)
	expect(t, "v3 GET /user with a sudo-only token", e.do(t, http.MethodGet, "/api/v3/user", sudoOnly, nil), http.StatusForbidden)
	if n, m := keysOf(e.admin.ID), keysOf(alice.ID); n != 0 || m != 3 {
		t.Fatalf("a sudo-only token stored a key: root %d, alice %d", n, m)
	}
	readOnly := e.newToken(t, e.admin.ID, nil, keystore.ScopeReadAPI, keystore.ScopeSudo)
	r = e.raw(t, http.MethodGet, "/api/v4/user", http.Header{"Private-Token": {readOnly}, "Sudo": {"alice"}}, nil)
	expect(t, "read_api+sudo reads as alice", r, http.StatusOK)
	if r.Object(t)["username"] != "alice" {
		t.Fatalf("read_api+sudo: GET /user = %s", r.Body)
	}
}
