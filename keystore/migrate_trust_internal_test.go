package keystore

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

// TestTrustMigration opens a database written before the trust-boundaries
// migration (schema version 3) with the current keygate, on each backend:
// an admin's bastion target is kept, an owner's is disabled (not deleted)
// and logged; revocations move from the CA row to the CA key, with serials
// canonical and fingerprints unpadded, and survive the CA's deletion.
func TestTrustMigration(t *testing.T) {
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
		if _, err := p.UpTo(ctx, 3); err != nil {
			t.Fatal(err)
		}
		exec := func(q string, args ...any) {
			t.Helper()
			if _, err := old.db.ExecContext(ctx, old.dialect.rebind(q), args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		exec(`INSERT INTO users (id, username, email, state, is_admin, created_at) VALUES (1, 'root', 'root@example.com', 'active', 1, 0)`)
		exec(`INSERT INTO users (id, username, email, state, is_admin, created_at) VALUES (2, 'mallory', 'm@example.com', 'active', 0, 0)`)
		exec(`INSERT INTO groups (id, name, path, full_path, created_at) VALUES (1, 'g', 'g', 'g', 0)`)
		exec(`INSERT INTO bastion_targets (id, group_id, pattern, created_at) VALUES (1, 1, '*.internal:22', 0)`)
		exec(`INSERT INTO bastion_targets (id, group_id, pattern, created_at) VALUES (2, 1, '127.0.0.1:8080', 0)`)
		exec(`INSERT INTO bastion_targets (id, group_id, pattern, created_at) VALUES (3, 1, 'db.internal:5432', 0)`)
		exec(`INSERT INTO audit_events (at, actor_id, action, target_type, target_id) VALUES (0, 1, 'bastion_target_created', 'bastion_target', 1)`)
		exec(`INSERT INTO audit_events (at, actor_id, action, target_type, target_id) VALUES (0, 2, 'bastion_target_created', 'bastion_target', 2)`)
		// Target 3 has no creation event (the system made it): kept.
		caFP := "SHA256:" + strings.Repeat("A", 42) + "E"
		exec(`INSERT INTO group_cas (id, group_id, title, key, fingerprint_sha256, created_at) VALUES (1, 1, 'ca', 'ssh-ed25519 AAAA', ?, 0)`, caFP)
		certFP := "SHA256:" + strings.Repeat("B", 42) + "A"
		exec(`INSERT INTO cert_revocations (id, ca_id, kind, value, created_at) VALUES (1, 1, 'serial', '007', 0)`)
		exec(`INSERT INTO cert_revocations (id, ca_id, kind, value, created_at) VALUES (2, 1, 'serial', '7', 0)`)
		exec(`INSERT INTO cert_revocations (id, ca_id, kind, value, created_at) VALUES (3, 1, 'fingerprint', ?, 0)`, certFP+"=")
		exec(`INSERT INTO cert_revocations (id, ca_id, kind, value, created_at) VALUES (4, 1, 'key_id', 'Bob', 0)`)
		old.Close()

		var logs bytes.Buffer
		s, err := Open(ctx, Config{DSN: dsn, Log: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		want := map[int64]struct {
			origin   string
			disabled bool
		}{1: {OriginAdmin, false}, 2: {OriginOwner, true}, 3: {OriginAdmin, false}}
		for id, w := range want {
			b, err := s.BastionTargetByID(ctx, 0, id)
			if err != nil {
				t.Fatalf("target %d: %v", id, err)
			}
			if b.Origin != w.origin || (b.DisabledReason != "") != w.disabled {
				t.Errorf("target %d: origin %q, disabled %q; want %q, disabled %v", id, b.Origin, b.DisabledReason, w.origin, w.disabled)
			}
		}
		if !strings.Contains(logs.String(), "bastion target disabled") || !strings.Contains(logs.String(), "target_id=2") {
			t.Errorf("the disabled target is not logged:\n%s", logs.String())
		}

		rs, n, err := s.ListRevocations(ctx, 1, caFP, Page{PerPage: 10})
		if err != nil || n != 3 {
			t.Fatalf("revocations after migration: %d, %v; want 3 (007 and 7 are one)", n, err)
		}
		got := map[string]string{}
		for _, r := range rs {
			got[r.Kind] += r.Value
			if r.GroupID != 1 {
				t.Errorf("revocation %d: group %d, want 1", r.ID, r.GroupID)
			}
		}
		if got["serial"] != "7" || got["fingerprint"] != certFP || got["key_id"] != "Bob" {
			t.Errorf("revocations after migration: %v", got)
		}
		if err := s.DeleteCA(ctx, Actor{}, 1, 1); err != nil {
			t.Fatal(err)
		}
		if _, n, _ := s.ListRevocations(ctx, 1, caFP, Page{}); n != 3 {
			t.Errorf("%d revocations after the CA row was deleted, want 3", n)
		}
	})
}
