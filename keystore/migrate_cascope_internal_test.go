package keystore

import (
	"context"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/internal/testutil"
)

// TestCAScopeMigration opens a database written before CA keys became
// their group's own (schema version 5) with the current keygate, on each
// backend. Group 1 revoked certificates of a key, deleted its CA, and
// group 2 registered the same key and revoked one certificate of its own;
// group 3, since deleted, had revoked one too. After the migration each
// revocation stays with the group that made them, listed to that group
// only; the deleted group's is gone; group 1 can register the key again
// beside group 2 and finds its revocations in force again.
func TestCAScopeMigration(t *testing.T) {
	t.Parallel()
	onEachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		old, err := Open(ctx, Config{DSN: dsn, NoMigrate: true})
		if err != nil {
			t.Fatal(err)
		}
		p, err := old.migrations()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.UpTo(ctx, 5); err != nil {
			t.Fatal(err)
		}
		exec := func(q string, args ...any) {
			t.Helper()
			if _, err := old.db.ExecContext(ctx, old.dialect.rebind(q), args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		exec(`INSERT INTO groups (id, name, path, full_path, created_at) VALUES (1, 'one', 'one', 'one', 0)`)
		exec(`INSERT INTO groups (id, name, path, full_path, created_at) VALUES (2, 'two', 'two', 'two', 0)`)
		caLine := string(gossh.MarshalAuthorizedKey(testutil.NewSigner(t).PublicKey()))
		pk, err := ParseCAKey(caLine)
		if err != nil {
			t.Fatal(err)
		}
		caFP := pk.FingerprintSHA256
		exec(`INSERT INTO group_cas (id, group_id, title, key, fingerprint_sha256, created_at) VALUES (7, 2, 'ca', ?, ?, 0)`, pk.Normalized, caFP)
		exec(`INSERT INTO cert_revocations (id, kind, value, reason, created_at, ca_fingerprint, group_id) VALUES (1, 'key_id', 'alice', 'laptop stolen', 0, ?, 1)`, caFP)
		exec(`INSERT INTO cert_revocations (id, kind, value, reason, created_at, ca_fingerprint, group_id) VALUES (2, 'serial', '7', '', 0, ?, 1)`, caFP)
		exec(`INSERT INTO cert_revocations (id, kind, value, reason, created_at, ca_fingerprint, group_id) VALUES (3, 'serial', '8', '', 0, ?, 2)`, caFP)
		exec(`INSERT INTO cert_revocations (id, kind, value, reason, created_at, ca_fingerprint, group_id) VALUES (4, 'serial', '9', 'hr case', 0, ?, 3)`, caFP)
		// Explicit ids do not move PostgreSQL's sequences.
		if err := old.dialect.resetSequences(ctx, old.db, []string{"group_cas", "cert_revocations"}); err != nil {
			t.Fatal(err)
		}
		old.Close()

		s, err := Open(ctx, Config{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ids := func(groupID int64) string {
			t.Helper()
			rs, _, err := s.ListRevocations(ctx, groupID, caFP, Page{PerPage: 10})
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, r := range rs {
				out = append(out, r.Kind+"="+r.Value)
			}
			return strings.Join(out, ",")
		}
		if got := ids(1); got != "key_id=alice,serial=7" {
			t.Errorf("group 1's revocations after the migration: %q", got)
		}
		if got := ids(2); got != "serial=8" {
			t.Errorf("group 2's revocations after the migration: %q, want only its own", got)
		}
		if got := ids(3); got != "" {
			t.Errorf("the deleted group's revocations survived: %q", got)
		}
		again, err := s.CreateCA(ctx, Actor{}, 1, CAInput{Title: "ours again", Key: caLine})
		if err != nil {
			t.Fatalf("group 1 re-registering its key beside group 2: %v", err)
		}
		if got := ids(1); got != "key_id=alice,serial=7" {
			t.Errorf("group 1's revocations after re-registering: %q", got)
		}
		// Group 2 may revoke what group 1 revoked: the same values, another group.
		ca2, err := s.CA(ctx, 2, 7)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateRevocation(ctx, Actor{}, ca2, RevocationInput{Kind: RevokeSerial, Value: "7"}); err != nil {
			t.Fatalf("group 2 revoking serial 7 too: %v", err)
		}
		if _, err := s.CreateRevocation(ctx, Actor{}, again, RevocationInput{Kind: RevokeSerial, Value: "7"}); err == nil {
			t.Error("group 1 revoked serial 7 twice")
		}
	})
}
