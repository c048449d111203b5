package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/keygate/keygate/keystore"
)

// bootstrapAdmin makes sure an admin can log in on a keystore's first
// start (no admin yet): with KEYGATE_ADMIN_TOKEN, root holds that token;
// otherwise root gets a generated token, written to DATA_DIR/admin-token
// (mode 0600) and never to the log, which says where it is. On later starts KEYGATE_ADMIN_TOKEN changes
// nothing: a token an admin revoked, or a root an admin blocked, stays so
// (keygate reset-admin-token is the explicit way back).
func bootstrapAdmin(ctx context.Context, store *keystore.Store, dataDir string, log *slog.Logger) error {
	if ro := store.ReadOnlyInfo(); ro != nil {
		log.Error("the database file cannot be written: opened read-only; serving authentication and reads, refusing every write with 503 until it is fixed",
			"file", ro.File, "owner", ro.Owner, "mode", ro.Mode, "keygate_runs_as", ro.RunningAs, "read_only_file_system", ro.ReadOnlyFS, "fix", ro.Fix)
	}
	if given := os.Getenv("KEYGATE_ADMIN_TOKEN"); given != "" {
		got, err := store.ApplyAdminToken(ctx, given)
		if err != nil {
			return fmt.Errorf("bootstrap admin: %w", err)
		}
		switch got {
		case keystore.AdminTokenCreated:
			log.Info("created admin user root with the token from KEYGATE_ADMIN_TOKEN")
		case keystore.AdminTokenValid:
			log.Info("admin token from KEYGATE_ADMIN_TOKEN is valid for user root")
		default:
			log.Warn("KEYGATE_ADMIN_TOKEN is not applied: it is not a valid token of an active admin root " +
				"(revoked, expired or never set, or root was blocked or demoted), and keygate applies it only to a keystore " +
				"without an admin, so that a restart never undoes an admin's decision; " +
				"to give root a working token again, run: keygate reset-admin-token")
		}
		return nil
	}
	// Nodes starting together on an empty database may all get here: the
	// store checks for an admin and creates root in one serialised write
	// transaction, so exactly one of them creates the token and writes and
	// prints it. The file is written inside that transaction, before the
	// commit: a start interrupted in between leaves a file with an unusable
	// token that the next start replaces, never a token nobody can read.
	secret := keystore.NewTokenSecret()
	path := filepath.Join(dataDir, "admin-token")
	if abs, err := filepath.Abs(path); err == nil {
		path = abs // the log names the file wherever keygate was started
	}
	created, err := store.BootstrapAdmin(ctx, secret, func() error {
		if err := writeFileSync(path, []byte(secret+"\n"), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	if !created {
		log.Info("an admin user already exists: no admin token generated")
		return nil
	}
	// The token itself goes nowhere but the file: logs are shipped,
	// retained and read by more people than the admin.
	log.Warn("created admin user root with an API token; it is saved in admin_token_file (mode 0600) and shown nowhere else: "+
		"read it there, e.g. `keygate users list` on this host uses it",
		"admin_token_file", path)
	return nil
}

// writeFileSync writes a file atomically and durably.
func writeFileSync(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
