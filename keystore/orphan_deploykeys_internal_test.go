package keystore

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

// TestOrphanedDeployKeysSettledAtStart: deploy keys an earlier keygate left
// enabled nowhere (their project deleted) are deleted when the store
// migrates, each logged and audited; instance keys and keys still enabled
// somewhere stay. Both backends.
func TestOrphanedDeployKeysSettledAtStart(t *testing.T) {
	t.Parallel()
	onEachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s, err := Open(ctx, Config{DSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		exec := func(q string, args ...any) {
			t.Helper()
			if _, err := s.db.ExecContext(ctx, s.dialect.rebind(q), args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		exec(`INSERT INTO groups (id, name, path, full_path, created_at) VALUES (1, 'g', 'g', 'g', 0)`)
		exec(`INSERT INTO projects (id, group_id, name, path, description, created_at) VALUES (1, 1, 'p', 'p', '', 0)`)
		for id, instance := range map[int]int{1: 0, 2: 0, 3: 1} {
			exec(`INSERT INTO deploy_keys (id, title, key, type, bits, fingerprint_sha256, fingerprint_md5, instance, created_at)
					VALUES (?, ?, 'ssh-ed25519 AAAA', 'ssh-ed25519', 256, ?, ?, ?, 0)`, id, "k"+strings.Repeat("x", id), "SHA256:fp"+strings.Repeat("x", id), "md5"+strings.Repeat("x", id), instance)
		}
		exec(`INSERT INTO deploy_key_projects (deploy_key_id, project_id, can_push, created_at) VALUES (2, 1, 0, 0)`)
		// Key 1: enabled nowhere, not an instance key (what deleting
		// its project left before). Key 2: still enabled. Key 3: an
		// instance key, enabled nowhere.
		var logs bytes.Buffer
		s.log = slog.New(slog.NewTextHandler(&logs, nil))
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		for id, want := range map[int64]bool{1: false, 2: true, 3: true} {
			_, err := s.DeployKey(ctx, id)
			if got := err == nil; got != want {
				t.Errorf("deploy key %d: exists=%v (%v), want %v", id, got, err, want)
			}
		}
		if n := strings.Count(logs.String(), "deploy key deleted"); n != 1 || !strings.Contains(logs.String(), "deploy_key_id=1") {
			t.Errorf("want one warning naming key 1:\n%s", logs.String())
		}
		events, _, err := s.ListAuditEvents(ctx, AuditFilter{}, Page{PerPage: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != 1 || events[0].Action != "deploy_key_deleted" || events[0].TargetID != 1 {
			t.Errorf("audit events %+v, want one deploy_key_deleted of key 1", events)
		}
		// A second start finds nothing to do.
		logs.Reset()
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(logs.String(), "deploy key deleted") {
			t.Errorf("second start deleted again:\n%s", logs.String())
		}
		s.Close()
	})
}
