package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// fingerprintOf is the "SHA256:…" fingerprint of an authorized_keys line
// ("" if it does not parse).
func fingerprintOf(line string) string {
	pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return ""
	}
	return gossh.FingerprintSHA256(pub)
}

// keyFP is the index's key for an authorized_keys line.
func keyFP(t *testing.T, line string) [32]byte {
	t.Helper()
	pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return sha256.Sum256(pub.Marshal())
}

// requireIndexMatchesDB loads a fresh index from a stopped keygate's SQLite
// database and checks that it answers, for every key, user, CA, revocation
// and membership row, what the row says. It returns the index.
func requireIndexMatchesDB(t *testing.T, path string) *authindex.Index {
	t.Helper()
	ctx := context.Background()
	store, err := keystore.Open(ctx, keystore.Config{DSN: path, NoMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ix := authindex.New(store)
	if err := ix.Load(ctx); err != nil {
		t.Fatalf("index load: %v", err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	each := func(q string, f func(r *sql.Rows) error) int {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			n++
			if err := f(rows); err != nil {
				t.Fatal(err)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return n
	}
	fp := func(s string) [32]byte {
		b, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(s, "SHA256:"))
		if err != nil || len(b) != 32 {
			t.Fatalf("fingerprint %q: %v", s, err)
		}
		return [32]byte(b)
	}
	bad := 0
	fail := func(format string, args ...any) {
		bad++
		if bad <= 20 {
			t.Errorf(format, args...)
		}
	}
	nusers := each(`SELECT id, username, state FROM users`, func(r *sql.Rows) error {
		var id int64
		var name, state string
		if err := r.Scan(&id, &name, &state); err != nil {
			return err
		}
		u, ok := ix.User(id)
		if !ok || u.Active != (state == "active") || !ix.UsernameIs(id, name) {
			fail("user %d (%s, %s): index has %+v, %v", id, name, state, u, ok)
		}
		return nil
	})
	nkeys := each(`SELECT id, user_id, fingerprint_sha256 FROM keys`, func(r *sql.Rows) error {
		var id, uid int64
		var f string
		if err := r.Scan(&id, &uid, &f); err != nil {
			return err
		}
		if k, ok := ix.Key(fp(f)); !ok || k.ID != id || k.UserID != uid {
			fail("key %d (user %d, %s): index has %+v, %v", id, uid, f, k, ok)
		}
		return nil
	})
	ncas := each(`SELECT id, group_id, fingerprint_sha256 FROM group_cas`, func(r *sql.Rows) error {
		var id, gid int64
		var f string
		if err := r.Scan(&id, &gid, &f); err != nil {
			return err
		}
		if ca, ok := ix.CA(fp(f), gid); !ok || ca.ID != id || ca.GroupID != gid || !ix.CAExists(id) {
			fail("CA %d (group %d): index has %+v, %v", id, gid, ca, ok)
		}
		return nil
	})
	nrevs := each(`SELECT group_id, ca_fingerprint, kind, value FROM cert_revocations`, func(r *sql.Rows) error {
		var gid int64
		var ca, kind, value string
		if err := r.Scan(&gid, &ca, &kind, &value); err != nil {
			return err
		}
		serial := uint64(1<<64 - 1)
		var keyID, certFP string
		switch kind {
		case "serial":
			serial, _ = strconv.ParseUint(value, 10, 64)
		case "key_id":
			keyID = value
		case "fingerprint":
			certFP = value
		}
		if !ix.Revoked(gid, fp(ca), serial, keyID, certFP, 0) {
			fail("revocation %s=%s of CA %s (group %d) not in the index", kind, value, ca, gid)
		}
		return nil
	})
	nmembers := each(`SELECT group_id, user_id, access_level FROM members`, func(r *sql.Rows) error {
		var gid, uid int64
		var level int
		if err := r.Scan(&gid, &uid, &level); err != nil {
			return err
		}
		if got := ix.AccessLevel(uid, gid); got < level {
			fail("member %d of group %d at %d: index says %d", uid, gid, level, got)
		}
		return nil
	})
	if ix.Len() != nkeys {
		fail("index holds %d keys, the database %d", ix.Len(), nkeys)
	}
	t.Logf("reloaded index matches the database: %d users, %d keys, %d CAs, %d revocations, %d memberships",
		nusers, nkeys, ncas, nrevs, nmembers)
	return ix
}
