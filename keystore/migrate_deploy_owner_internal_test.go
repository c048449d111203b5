package keystore

import (
	"context"
	"strconv"
	"testing"
)

// TestDeployKeyOwnerMigration opens a database written before deploy keys
// recorded whether their owner was known (schema version 5), on each
// backend: a key whose owner still exists keeps them; a key whose user_id
// a deletion cleared, but whose creation the audit log names, is "deleted";
// a key nobody is named for is "unknown". Neither of the last two does
// anything until an admin transfers it.
func TestDeployKeyOwnerMigration(t *testing.T) {
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
		exec(`INSERT INTO users (id, username, email, state, is_admin, created_at) VALUES (1, 'alice', 'alice@example.com', 'active', 0, 0)`)
		exec(`INSERT INTO groups (id, name, path, full_path, created_at) VALUES (1, 'g', 'g', 'g', 0)`)
		exec(`INSERT INTO members (group_id, user_id, access_level, created_at) VALUES (1, 1, 40, 0)`)
		exec(`INSERT INTO projects (id, group_id, name, path, description, created_at) VALUES (1, 1, 'p', 'p', '', 0)`)
		for id, user := range map[int]any{1: 1, 2: nil, 3: nil} {
			exec(`INSERT INTO deploy_keys (id, title, key, type, bits, fingerprint_sha256, fingerprint_md5, instance, user_id, created_at)
				VALUES (?, 'k', 'ssh-ed25519 AAAA', 'ssh-ed25519', 256, ?, ?, 0, ?, 0)`, id, "SHA256:fp"+strconv.Itoa(id), "md5"+strconv.Itoa(id), user)
			exec(`INSERT INTO deploy_key_projects (deploy_key_id, project_id, can_push, created_at) VALUES (?, 1, 1, 0)`, id)
		}
		// Key 2 was made by user 7, since deleted; key 3's creation event
		// names no one.
		exec(`INSERT INTO audit_events (at, actor_id, action, target_type, target_id) VALUES (0, 7, 'deploy_key_created', 'deploy_key', 2)`)
		exec(`INSERT INTO audit_events (at, actor_id, action, target_type, target_id) VALUES (0, NULL, 'deploy_key_created', 'deploy_key', 3)`)
		old.Close()

		s, err := Open(ctx, Config{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for id, want := range map[int64]string{1: OwnerActive, 2: OwnerDeleted, 3: OwnerUnknown} {
			k, err := s.DeployKey(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := s.DeployKeyOwnerStatus(ctx, k); err != nil || got != want {
				t.Errorf("deploy key %d: owner status %q (%v), want %q", id, got, err, want)
			}
		}
	})
}
