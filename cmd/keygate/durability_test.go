package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// revocation is an acknowledged certificate revocation.
type revocation struct{ kind, value string }

// ackedWrites collects the writes keygate acknowledged with 201.
type ackedWrites struct {
	mu      sync.Mutex
	users   map[int64]string // id → username
	keys    map[int64]string // id → key line
	groups  map[int64]string // id → full path
	members map[[2]int64]int // (group, user) → access level
	cas     map[[2]int64]string
	revs    map[[3]int64]revocation // (group, CA, revocation id)
	deleted map[int64]bool          // key ids whose DELETE answered 204
	n       atomic.Int64
}

func (a *ackedWrites) add(f func()) {
	a.mu.Lock()
	f()
	a.mu.Unlock()
	a.n.Add(1)
}

// TestAcknowledgedWritesSurviveKill9 checks SPEC §8: an acknowledged write
// survives kill -9.
func TestAcknowledgedWritesSurviveKill9(t *testing.T) {
	t.Parallel()
	const (
		workers   = 8
		killAfter = 300 // acknowledged writes
		poolUsers = 8
	)
	token := randomToken("durability-admin-token-")
	opts := serveOpts{DataDir: t.TempDir(), Env: []string{"KEYGATE_ADMIN_TOKEN=" + token}}
	p := startServe(t, opts)

	acked := &ackedWrites{users: map[int64]string{}, keys: map[int64]string{}, groups: map[int64]string{},
		members: map[[2]int64]int{}, cas: map[[2]int64]string{}, revs: map[[3]int64]revocation{}, deleted: map[int64]bool{}}
	var uids []int64
	for i := 0; i < poolUsers; i++ {
		name := fmt.Sprintf("member%d", i)
		u := p.must("POST", "/api/v4/users", token, map[string]any{"username": name, "email": name + "@example.com", "name": name}, 201).Object(t)
		uid := id(t, u)
		uids = append(uids, uid)
		acked.add(func() { acked.users[uid] = name })
	}

	var (
		killed    atomic.Bool
		unwelcome = make(chan string, 100) // non-201 answers before the kill
		enough    = make(chan struct{})
		once      sync.Once
		wg        sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	complain := func(msg string) {
		if !killed.Load() {
			select {
			case unwelcome <- msg:
			default:
			}
		}
	}
	// post sends a write and returns the id keygate answered with 201, or 0.
	// It runs on the workers' goroutines: no t.Fatal.
	post := func(path string, body map[string]any) int64 {
		r, err := p.do(ctx, "POST", path, token, body)
		if err != nil {
			complain(fmt.Sprintf("POST %s: %v", path, err))
			return 0
		}
		var created struct{ ID int64 }
		if r.Status != http.StatusCreated || json.Unmarshal(r.Body, &created) != nil || created.ID < 1 {
			complain(fmt.Sprintf("POST %s: status %d, body %s", path, r.Status, r.Body))
			return 0
		}
		if acked.n.Load()+1 >= killAfter {
			once.Do(func() { close(enough) })
		}
		return created.ID
	}
	// del sends a DELETE and reports whether keygate answered 204.
	del := func(path string) bool {
		r, err := p.do(ctx, "DELETE", path, token, nil)
		if err != nil {
			complain(fmt.Sprintf("DELETE %s: %v", path, err))
			return false
		}
		if r.Status != http.StatusNoContent {
			complain(fmt.Sprintf("DELETE %s: status %d, body %s", path, r.Status, r.Body))
			return false
		}
		return true
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !killed.Load() && ctx.Err() == nil; i++ {
				line := sshKeyLine(fmt.Sprintf("w%d-%d", w, i))
				if kid := post("/api/v4/user/keys", map[string]any{"title": fmt.Sprintf("w%d key %d", w, i), "key": line}); kid > 0 {
					if i%4 != 3 {
						acked.add(func() { acked.keys[kid] = line })
					} else if del(fmt.Sprintf("/api/v4/user/keys/%d", kid)) {
						// Deletes are writes too: a deleted key must stay
						// deleted. (Until the DELETE is acknowledged, the
						// key may or may not exist.)
						acked.add(func() { acked.deleted[kid] = true })
					}
				}
				path := fmt.Sprintf("load-w%d-g%d", w, i)
				gid := post("/api/v4/groups", map[string]any{"name": path, "path": path})
				if gid == 0 {
					continue
				}
				acked.add(func() { acked.groups[gid] = path })
				uid := uids[(w+i)%len(uids)]
				if post(fmt.Sprintf("/api/v4/groups/%d/members", gid), map[string]any{"user_id": uid, "access_level": 30}) > 0 {
					acked.add(func() { acked.members[[2]int64{gid, uid}] = 30 })
				}
				caLine := sshKeyLine("")
				if cid := post(fmt.Sprintf("/api/v4/groups/%d/ssh_certificates", gid), map[string]any{"title": "CA " + path, "key": caLine}); cid > 0 {
					acked.add(func() { acked.cas[[2]int64{gid, cid}] = caLine })
					kinds := []revocation{{"serial", fmt.Sprint(i + 1)}, {"key_id", fmt.Sprintf("w%d-%d", w, i)},
						{"fingerprint", fingerprintOf(sshKeyLine(""))}}
					rv := kinds[i%3]
					if rid := post(fmt.Sprintf("/api/v4/groups/%d/ssh_certificates/%d/revocations", gid, cid),
						map[string]any{rv.kind: rv.value, "reason": "durability"}); rid > 0 {
						acked.add(func() { acked.revs[[3]int64{gid, cid, rid}] = rv })
					}
				}
			}
		}()
	}
	select {
	case <-enough:
	case msg := <-unwelcome:
		killed.Store(true)
		cancel()
		wg.Wait()
		t.Fatalf("write load failed before the kill: %s\nstderr:\n%s", msg, p.Stderr)
	case <-ctx.Done():
		killed.Store(true)
		wg.Wait()
		t.Fatalf("fewer than %d writes acknowledged in 2 minutes", killAfter)
	}
	killed.Store(true)
	p.kill() // SIGKILL, mid-load: the workers still have requests in flight
	wg.Wait()
	close(unwelcome)
	for msg := range unwelcome {
		t.Errorf("before the kill: %s", msg)
	}
	t.Logf("%d writes acknowledged before SIGKILL (%d keys, %d deleted keys, %d groups, %d memberships, %d CAs, %d revocations)",
		acked.n.Load(), len(acked.keys), len(acked.deleted), len(acked.groups), len(acked.members), len(acked.cas), len(acked.revs))

	p = startServe(t, opts)
	lost := 0
	check := func(path string, ok func(*response) bool) {
		t.Helper()
		r, err := p.do(context.Background(), "GET", path, token, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		if r.Status != http.StatusOK || !ok(r) {
			lost++
			if lost <= 20 {
				t.Errorf("acknowledged write lost: GET %s: %d %s", path, r.Status, r.Body)
			}
		}
	}
	field := func(name string, want any) func(*response) bool {
		return func(r *response) bool { return r.Object(t)[name] == want }
	}
	for uid, name := range acked.users {
		check(fmt.Sprintf("/api/v4/users/%d", uid), field("username", name))
	}
	for kid, line := range acked.keys {
		check(fmt.Sprintf("/api/v4/user/keys/%d", kid), field("key", line))
	}
	for gid, path := range acked.groups {
		check(fmt.Sprintf("/api/v4/groups/%d", gid), field("full_path", path))
	}
	for m, level := range acked.members {
		check(fmt.Sprintf("/api/v4/groups/%d/members/%d", m[0], m[1]), field("access_level", float64(level)))
	}
	for c, line := range acked.cas {
		check(fmt.Sprintf("/api/v4/groups/%d/ssh_certificates?per_page=100", c[0]), func(r *response) bool {
			m := findByID(t, r, c[1])
			return m != nil && m["key"] == line
		})
	}
	for rv, want := range acked.revs {
		check(fmt.Sprintf("/api/v4/groups/%d/ssh_certificates/%d/revocations?per_page=100", rv[0], rv[1]), func(r *response) bool {
			m := findByID(t, r, rv[2])
			return m != nil && m["type"] == want.kind && fmt.Sprint(m["value"]) == want.value
		})
	}
	for kid := range acked.deleted {
		r, err := p.do(context.Background(), "GET", fmt.Sprintf("/api/v4/user/keys/%d", kid), token, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusNotFound {
			lost++
			t.Errorf("acknowledged delete lost: GET /api/v4/user/keys/%d: %d %s", kid, r.Status, r.Body)
		}
	}
	if lost > 0 {
		t.Errorf("%d acknowledged writes lost after kill -9", lost)
	}

	// The database is consistent: lists answer, totals cover what was
	// acknowledged, and it takes new writes.
	for _, path := range []string{"/api/v4/user/keys", "/api/v4/users", "/api/v4/groups", "/api/v4/audit_events", "/-/allowed_signers"} {
		p.must("GET", path+"?per_page=100", token, nil, 200)
	}
	// Walking every page of the key list finds X-Total keys, among them
	// every acknowledged one and none of the deleted ones.
	listed := map[int64]bool{}
	total := -1
	for page := 1; page < 100; page++ {
		r := p.must("GET", fmt.Sprintf("/api/v4/user/keys?per_page=100&page=%d", page), token, nil, 200)
		total = totalOf(t, r)
		var keys []struct{ ID int64 }
		r.JSON(t, &keys)
		for _, k := range keys {
			listed[k.ID] = true
		}
		if r.Header.Get("X-Next-Page") == "" {
			break
		}
	}
	if len(listed) != total {
		t.Errorf("GET /user/keys pages hold %d distinct keys, X-Total says %d", len(listed), total)
	}
	for kid := range acked.keys {
		if !listed[kid] {
			t.Errorf("acknowledged key %d missing from GET /user/keys", kid)
		}
	}
	for kid := range acked.deleted {
		if listed[kid] {
			t.Errorf("deleted key %d listed by GET /user/keys", kid)
		}
	}
	if got, want := totalOf(t, p.must("GET", "/api/v4/groups", token, nil, 200)), len(acked.groups); got < want {
		t.Errorf("GET /groups: X-Total %d, but %d groups were acknowledged", got, want)
	}
	// Every write is audited in its transaction (SPEC §3).
	if got, want := totalOf(t, p.must("GET", "/api/v4/audit_events", token, nil, 200)), int(acked.n.Load()); got < want {
		t.Errorf("GET /audit_events: X-Total %d, but %d writes were acknowledged", got, want)
	}
	line := sshKeyLine("after-restart")
	p.must("POST", "/api/v4/user/keys", token, map[string]any{"title": "after restart", "key": line}, 201)
	p.stop()
	requireIntegrity(t, filepath.Join(opts.DataDir, "keygate.db"))
	// A freshly loaded index answers exactly what the database holds.
	ix := requireIndexMatchesDB(t, filepath.Join(opts.DataDir, "keygate.db"))
	for _, line := range acked.keys {
		if _, ok := ix.Key(keyFP(t, line)); !ok {
			t.Errorf("acknowledged key %s missing from the reloaded index", fingerprintOf(line))
		}
	}
	for c, line := range acked.cas {
		if ca, ok := ix.CA(keyFP(t, line), c[0]); !ok || ca.ID != c[1] || ca.GroupID != c[0] {
			t.Errorf("acknowledged CA %d of group %d: reloaded index has %+v, %v", c[1], c[0], ca, ok)
		}
	}
}

func totalOf(t *testing.T, r *response) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(r.Header.Get("X-Total"), &n); err != nil {
		t.Fatalf("X-Total %q: %v", r.Header.Get("X-Total"), err)
	}
	return n
}

// requireIntegrity runs SQLite's own consistency checks on a stopped
// keygate's database.
func requireIntegrity(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, pragma := range []string{"integrity_check", "foreign_key_check"} {
		rows, err := db.Query("PRAGMA " + pragma)
		if err != nil {
			t.Fatalf("PRAGMA %s: %v", pragma, err)
		}
		var problems []string
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			problems = append(problems, fmt.Sprint(vals...))
		}
		rows.Close()
		if pragma == "integrity_check" && len(problems) == 1 && problems[0] == "ok" {
			continue
		}
		if len(problems) > 0 {
			t.Errorf("PRAGMA %s: %q", pragma, problems)
		}
	}
}
