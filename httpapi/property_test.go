package httpapi_test

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// TestRESTProperty sends a few thousand seeded random requests to every
// documented route (random methods, ids, JSON, form, query and junk
// bodies; as admin, as users, unauthenticated) straight into the handler.
// No answer may be a 5xx (a panic is recovered into a 500). Afterwards the
// data invariants hold: every key's fingerprint is unique and is the one
// computed from its key text; nothing refers to a deleted row; and an index
// loaded fresh from the database answers exactly like the index that
// followed the changes. KEYGATE_PROPERTY_SEED replays a run,
// KEYGATE_PROPERTY_N sets the number of requests (default 3000).
func TestRESTProperty(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("KEYGATE_PROPERTY_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	n := 3000
	if s := os.Getenv("KEYGATE_PROPERTY_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	t.Logf("seed %d (replay with KEYGATE_PROPERTY_SEED=%d)", seed, seed)
	rnd := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	e := newEnv(t)
	followed := authindex.New(e.store)
	if err := followed.Load(e.ctx); err != nil {
		t.Fatal(err)
	}
	followed.Follow()

	alice, aliceTok := e.newUser(t, "alice")
	_, bobTok := e.newUser(t, "bob")
	tokens := []string{adminSecret, adminSecret, aliceTok, bobTok, "", "kgpat-not-a-token", "x"}

	// A pool of keys, so that duplicates and re-use happen.
	var keyPool []string
	var fpPool [][32]byte
	for i := range 24 {
		line, pub := newKey(t, fmt.Sprintf("pool-%d", i))
		keyPool = append(keyPool, line)
		fpPool = append(fpPool, sha256.Sum256(pub.Marshal()))
	}
	paths := documentedPaths(t, e)
	var writes []route
	for _, r := range paths {
		if r.method == "POST" || r.method == "PUT" {
			writes = append(writes, r)
		}
	}
	ids := []string{"1", "2", "3", "4", "5", strconv.FormatInt(alice.ID, 10)}
	g := &gen{rnd: rnd, keys: keyPool, ids: &ids}

	// The random requests delete, block and revoke the actors too; revive
	// them now and then so most requests stay authenticated.
	revived := 0
	revive := func() {
		for k, tok := range tokens[:4] {
			if e.do(t, "GET", "/api/v4/user", tok, nil).Code == 200 {
				continue
			}
			revived++
			name, email, admin := fmt.Sprintf("actor%d", revived), fmt.Sprintf("actor%d@example.org", revived), k < 2
			u, err := e.store.CreateUser(e.ctx, keystore.Actor{}, keystore.UserInput{Username: &name, Email: &email, IsAdmin: &admin})
			if err != nil {
				t.Fatal(err)
			}
			tokens[k] = e.newToken(t, u.ID, nil, keystore.ScopeAPI)
		}
	}
	codes := map[int]int{}
	for i := range n {
		if i%50 == 0 {
			revive()
		}
		op := paths[rnd.IntN(len(paths))]
		if rnd.IntN(5) < 2 { // writes more often than their share, so data builds up
			op = writes[rnd.IntN(len(writes))]
		}
		method := op.method
		if rnd.IntN(6) == 0 {
			method = []string{"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"}[rnd.IntN(7)]
		}
		path := g.fill(op.path)
		if rnd.IntN(3) == 0 {
			path += "?" + g.form().Encode()
		}
		body, ctype := g.body(method)
		req := httptest.NewRequest(method, path, body)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		// Many client addresses, so the failed-token limit (tested on its
		// own) does not answer most requests.
		req.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:4000", rnd.IntN(256), rnd.IntN(256), rnd.IntN(256))
		tok := tokens[rnd.IntN(len(tokens))]
		switch {
		case tok == "":
		case rnd.IntN(4) == 0:
			req.Header.Set("Authorization", "Bearer "+tok)
		default:
			req.Header.Set("PRIVATE-TOKEN", tok)
		}
		rec := httptest.NewRecorder()
		e.api.ServeHTTP(rec, req)
		codes[rec.Code]++
		if rec.Code >= 500 {
			t.Fatalf("request %d (seed %d): %s %s (%s) -> %d %s", i, seed, method, path, ctype, rec.Code, rec.Body.String())
		}
		g.learn(rec.Body.Bytes())
	}
	t.Logf("status codes: %v (actors revived %d times)", codes, revived)
	if codes[201] == 0 || codes[204] == 0 {
		t.Fatalf("the random requests created or deleted nothing (codes %v): the generator is too weak", codes)
	}

	driver, dsn := "sqlite", "file:"+filepath.Join(e.dir, "keygate.db")+"?mode=ro"
	if e.store.Backend() == "postgres" {
		driver, dsn = "pgx", e.dsn
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checkInvariants(t, db)
	if err := followed.CatchUp(e.ctx); err != nil {
		t.Fatal(err)
	}
	fresh := authindex.New(e.store)
	if err := fresh.Load(e.ctx); err != nil {
		t.Fatal(err)
	}
	compareIndexes(t, db, followed, fresh, fpPool)
}

type route struct{ method, path string }

// documentedPaths lists the routes of the OpenAPI operations table.
func documentedPaths(t *testing.T, e *env) []route {
	r := e.raw(t, "GET", "/api/v4/openapi.json", nil, nil)
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatal(err)
	}
	var out []route
	for p, ops := range doc.Paths {
		for m := range ops {
			if httpMethods[m] {
				out = append(out, route{strings.ToUpper(m), p})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path+out[i].method < out[j].path+out[j].method })
	if len(out) < 40 {
		t.Fatalf("only %d documented routes", len(out))
	}
	return out
}

// gen makes random request parts.
type gen struct {
	rnd  *rand.Rand
	keys []string
	ids  *[]string // ids seen in answers, for plausible paths
}

var paramRE = regexp.MustCompile(`\{[a-z_]+\}`)

func (g *gen) fill(p string) string {
	return paramRE.ReplaceAllStringFunc(p, func(name string) string {
		switch g.rnd.IntN(10) {
		case 0:
			return []string{"0", "-1", "99999999999999999999", "abc", "%00", "..", "1.5", "%2F", "root", "alice", "acme%2Fteam"}[g.rnd.IntN(11)]
		case 1:
			if name == "{username}" || name == "{id}" {
				return []string{"alice", "bob", "root", "nobody"}[g.rnd.IntN(4)]
			}
		}
		return (*g.ids)[g.rnd.IntN(len(*g.ids))]
	})
}

var fieldNames = []string{"title", "key", "expires_at", "usage_type", "name", "path", "parent_id", "user_id",
	"access_level", "username", "email", "scopes", "serial", "key_id", "fingerprint", "reason", "pattern",
	"min_access_level", "description", "namespace_id", "group_id", "enforce_ssh_certificates", "admin", "is_admin",
	"password", "page", "per_page", "search", "state", "fingerprint_sha256", "entity_type", "entity_id"}

func (g *gen) value(field string) any {
	switch g.rnd.IntN(14) {
	case 0:
		return nil
	case 1:
		return g.rnd.IntN(60) - 5
	case 2:
		return []int{10, 20, 30, 40, 50}[g.rnd.IntN(5)]
	case 3:
		return g.rnd.IntN(2) == 0
	case 4:
		return []any{"api", "read_api", 3}
	case 5:
		return map[string]any{"nested": "x"}
	case 6:
		return strings.Repeat("A", g.rnd.IntN(6000))
	case 7:
		return []string{"2020-01-01", "2999-12-31", "2999-12-31T00:00:00Z", "yesterday", ""}[g.rnd.IntN(5)]
	case 8:
		return []string{"auth", "signing", "auth_and_signing", "bogus"}[g.rnd.IntN(4)]
	case 9, 10:
		k := g.keys[g.rnd.IntN(len(g.keys))]
		if g.rnd.IntN(5) == 0 {
			k = k[:g.rnd.IntN(len(k))]
		}
		return k
	case 11:
		return (*g.ids)[g.rnd.IntN(len(*g.ids))]
	case 12:
		return []string{"*.example.com:22", "10.0.0.0/8:*", "host", "[::1]:22", "::::", "ops.internal:2222"}[g.rnd.IntN(6)]
	}
	// A name-like string, so groups, users and projects get created.
	return fmt.Sprintf("%s%d", []string{"acme", "team", "u", "x.y", "_bad", "Über"}[g.rnd.IntN(6)], g.rnd.IntN(8))
}

func (g *gen) fields() map[string]any {
	m := map[string]any{}
	for range g.rnd.IntN(6) + 1 {
		f := fieldNames[g.rnd.IntN(len(fieldNames))]
		m[f] = g.value(f)
	}
	if g.rnd.IntN(3) == 0 {
		m[[]string{"serial", "key_id", "fingerprint"}[g.rnd.IntN(3)]] = []any{g.rnd.IntN(100), "alice", "SHA256:" + strings.Repeat("A", 43), "nope"}[g.rnd.IntN(4)]
		m["access_level"] = []int{10, 20, 30, 40, 50}[g.rnd.IntN(5)]
		m["user_id"] = (*g.ids)[g.rnd.IntN(len(*g.ids))]
	}
	if g.rnd.IntN(2) == 0 { // most creates need a title/name and a key/path
		m["title"], m["key"] = "t", g.keys[g.rnd.IntN(len(g.keys))]
		m["name"] = fmt.Sprintf("g%d", g.rnd.IntN(10))
		m["path"] = m["name"]
	}
	return m
}

func (g *gen) form() url.Values {
	v := url.Values{}
	for k, x := range g.fields() {
		switch y := x.(type) {
		case nil:
			v.Set(k, "")
		case []any:
			for _, z := range y {
				v.Add(k+"[]", fmt.Sprint(z))
			}
		default:
			v.Set(k, fmt.Sprint(y))
		}
	}
	return v
}

func (g *gen) body(method string) (io.Reader, string) {
	if method == "GET" || method == "DELETE" || method == "HEAD" || g.rnd.IntN(10) == 0 {
		if g.rnd.IntN(4) != 0 {
			return nil, ""
		}
	}
	switch g.rnd.IntN(8) {
	case 0, 1, 2:
		b, _ := json.Marshal(g.fields())
		return bytes.NewReader(b), "application/json"
	case 3, 4:
		return strings.NewReader(g.form().Encode()), "application/x-www-form-urlencoded"
	case 5:
		junk := make([]byte, g.rnd.IntN(300))
		for i := range junk {
			junk[i] = byte(g.rnd.IntN(256))
		}
		return bytes.NewReader(junk), []string{"application/json", "application/x-www-form-urlencoded", "text/plain", ""}[g.rnd.IntN(4)]
	case 6:
		return strings.NewReader([]string{`[]`, `"x"`, `{"key":`, `{"title":{"a":1}}`, `null`, `{"access_level":"30"}`, `{"id":1e400}`}[g.rnd.IntN(7)]), "application/json"
	}
	return strings.NewReader("--x\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nt\r\n--x--\r\n"), "multipart/form-data; boundary=x"
}

var idRE = regexp.MustCompile(`"id":(\d+)`)

// learn remembers ids from answers so later paths name real objects.
func (g *gen) learn(body []byte) {
	for _, m := range idRE.FindAllSubmatch(body, 4) {
		id := string(m[1])
		if len(*g.ids) < 400 {
			*g.ids = append(*g.ids, id)
		}
	}
}

// checkInvariants checks the database after the random requests.
func checkInvariants(t *testing.T, db *sql.DB) {
	t.Helper()
	rows, err := db.Query(`SELECT id, key, fingerprint_sha256 FROM keys`)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int64{}
	nkeys := 0
	for rows.Next() {
		var id int64
		var text, fp string
		if err := rows.Scan(&id, &text, &fp); err != nil {
			t.Fatal(err)
		}
		nkeys++
		pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(text))
		if err != nil {
			t.Fatalf("key %d: stored key text does not parse: %v", id, err)
		}
		if got := gossh.FingerprintSHA256(pub); got != fp {
			t.Fatalf("key %d: stored fingerprint %s, key text has %s", id, fp, got)
		}
		if other, dup := seen[fp]; dup {
			t.Fatalf("keys %d and %d share fingerprint %s", other, id, fp)
		}
		seen[fp] = id
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	counts := []any{"keys", nkeys}
	for _, tbl := range []string{"users", "groups", "members", "group_cas", "cert_revocations", "projects", "bastion_targets", "personal_access_tokens"} {
		var c int
		if err := db.QueryRow(`SELECT count(*) FROM ` + tbl).Scan(&c); err != nil {
			t.Fatal(err)
		}
		counts = append(counts, tbl, c)
	}
	t.Logf("rows after the run: %v", counts)
	orphans := map[string]string{
		"keys":            `SELECT count(*) FROM keys WHERE user_id NOT IN (SELECT id FROM users)`,
		"tokens":          `SELECT count(*) FROM personal_access_tokens WHERE user_id NOT IN (SELECT id FROM users)`,
		"gpg keys":        `SELECT count(*) FROM gpg_keys WHERE user_id NOT IN (SELECT id FROM users)`,
		"members (user)":  `SELECT count(*) FROM members WHERE user_id NOT IN (SELECT id FROM users)`,
		"members (group)": `SELECT count(*) FROM members WHERE group_id NOT IN (SELECT id FROM groups)`,
		"subgroups":       `SELECT count(*) FROM groups WHERE parent_id IS NOT NULL AND parent_id NOT IN (SELECT id FROM groups)`,
		"cas":             `SELECT count(*) FROM group_cas WHERE group_id NOT IN (SELECT id FROM groups)`,
		"projects":        `SELECT count(*) FROM projects WHERE group_id NOT IN (SELECT id FROM groups)`,
		"bastion targets": `SELECT count(*) FROM bastion_targets WHERE group_id NOT IN (SELECT id FROM groups)`,
		"ca fingerprints": `SELECT count(*) - count(DISTINCT fingerprint_sha256) FROM group_cas`,
	}
	for what, q := range orphans {
		var n int
		if err := db.QueryRow(q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n != 0 {
			t.Errorf("%d orphan/duplicate %s", n, what)
		}
	}
}

// fpBytes decodes "SHA256:base64" to the index's key.
func fpBytes(t *testing.T, fp string) [32]byte {
	t.Helper()
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(fp, "SHA256:"))
	if err != nil || len(b) != 32 {
		t.Fatalf("fingerprint %q: %v", fp, err)
	}
	return [32]byte(b)
}

// compareIndexes checks that two indexes answer alike for every user, key,
// CA, revocation and membership in the database and for every key of the
// pool (also those deleted since), and that they match the database.
func compareIndexes(t *testing.T, db *sql.DB, followed, fresh *authindex.Index, pool [][32]byte) {
	t.Helper()
	query := func(q string, scan func(*sql.Rows) error) {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				t.Fatal(err)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	var maxUser int64
	query(`SELECT coalesce(max(id), 0) FROM users`, func(r *sql.Rows) error { return r.Scan(&maxUser) })
	for id := int64(1); id <= maxUser+3; id++ {
		a, aok := followed.User(id)
		b, bok := fresh.User(id)
		if a != b || aok != bok || followed.Username(id) != fresh.Username(id) || followed.UserBlocked(id) != fresh.UserBlocked(id) {
			t.Errorf("user %d: followed %+v %v %q, fresh %+v %v %q", id, a, aok, followed.Username(id), b, bok, fresh.Username(id))
		}
	}
	keys := map[[32]byte]int64{}
	query(`SELECT id, fingerprint_sha256 FROM keys`, func(r *sql.Rows) error {
		var id int64
		var fp string
		if err := r.Scan(&id, &fp); err != nil {
			return err
		}
		keys[fpBytes(t, fp)] = id
		return nil
	})
	// Deploy keys share the index's key table under id -ID.
	query(`SELECT id, fingerprint_sha256 FROM deploy_keys`, func(r *sql.Rows) error {
		var id int64
		var fp string
		if err := r.Scan(&id, &fp); err != nil {
			return err
		}
		keys[fpBytes(t, fp)] = -id
		return nil
	})
	check := func(fp [32]byte) {
		a, aok := followed.Key(fp)
		b, bok := fresh.Key(fp)
		id, inDB := keys[fp]
		if a != b || aok != bok || bok != inDB || (inDB && b.ID != id) {
			t.Errorf("key %x: followed %+v %v, fresh %+v %v, database id %d %v", fp[:6], a, aok, b, bok, id, inDB)
		}
	}
	for fp := range keys {
		check(fp)
	}
	for _, fp := range pool {
		check(fp)
		ca, cb := followed.CAs(fp), fresh.CAs(fp)
		if !slices.Equal(ca, cb) || followed.CAKnown(fp) != fresh.CAKnown(fp) {
			t.Errorf("CA %x: followed %+v, fresh %+v", fp[:6], ca, cb)
		}
	}
	query(`SELECT id, group_id, fingerprint_sha256 FROM group_cas`, func(r *sql.Rows) error {
		var id, gid int64
		var fp string
		if err := r.Scan(&id, &gid, &fp); err != nil {
			return err
		}
		a, aok := followed.CA(fpBytes(t, fp), gid)
		b, bok := fresh.CA(fpBytes(t, fp), gid)
		if !aok || !bok || a != b || b.ID != id {
			t.Errorf("CA %d: followed %+v %v, fresh %+v %v", id, a, aok, b, bok)
		}
		return nil
	})
	query(`SELECT group_id, ca_fingerprint, kind, value FROM cert_revocations`, func(r *sql.Rows) error {
		var gid int64
		var caFP, kind, value string
		if err := r.Scan(&gid, &caFP, &kind, &value); err != nil {
			return err
		}
		ca := fpBytes(t, caFP)
		var serial uint64
		var keyID, fp string
		switch kind {
		case "serial":
			serial, _ = strconv.ParseUint(value, 10, 64)
		case "key_id":
			keyID = value
			serial = 1<<64 - 1
		case "fingerprint":
			fp = value
			serial = 1<<64 - 1
		}
		if !followed.Revoked(gid, ca, serial, keyID, fp, 0) || !fresh.Revoked(gid, ca, serial, keyID, fp, 0) {
			t.Errorf("revocation %d/%s/%s=%s: followed %v, fresh %v", gid, caFP, kind, value,
				followed.Revoked(gid, ca, serial, keyID, fp, 0), fresh.Revoked(gid, ca, serial, keyID, fp, 0))
		}
		return nil
	})
	var maxGroup int64
	query(`SELECT coalesce(max(id), 0) FROM groups`, func(r *sql.Rows) error { return r.Scan(&maxGroup) })
	for gid := int64(1); gid <= maxGroup+2; gid++ {
		a, aok := followed.Group(gid)
		b, bok := fresh.Group(gid)
		if a != b || aok != bok {
			t.Errorf("group %d: followed %+v %v, fresh %+v %v", gid, a, aok, b, bok)
		}
		for uid := int64(1); uid <= maxUser+1; uid++ {
			if x, y := followed.AccessLevel(uid, gid), fresh.AccessLevel(uid, gid); x != y {
				t.Errorf("access of user %d in group %d: followed %d, fresh %d", uid, gid, x, y)
			}
		}
	}
	if followed.Len() != fresh.Len() {
		t.Errorf("Len: followed %d, fresh %d", followed.Len(), fresh.Len())
	}
}
