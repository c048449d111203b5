package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/keygate/keygate/keystore"
)

// bootstrapAdmin makes sure an admin can log in on a keystore's first
// start (no admin yet): with KEYGATE_ADMIN_TOKEN, root holds that token;
// otherwise root gets a generated token, printed once and written to
// DATA_DIR/admin-token. On later starts KEYGATE_ADMIN_TOKEN changes
// nothing: a token an admin revoked, or a root an admin blocked, stays so
// (keygate reset-admin-token is the explicit way back).
func bootstrapAdmin(ctx context.Context, store *keystore.Store, dataDir string, log *slog.Logger, stderr io.Writer, jsonOut bool) error {
	if store.ReadOnly() {
		log.Warn("the database file cannot be written: opened read-only; serving authentication and reads, refusing writes with 503")
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
	if jsonOut {
		// One JSON object like the log lines around it, so log pipelines
		// parsing stderr do not choke; written directly rather than through
		// the logger, as this is the one place a secret is meant to be shown.
		b, _ := json.Marshal(map[string]string{
			"time": time.Now().Format(time.RFC3339Nano), "level": "WARN",
			"msg":         "created admin user root with an API token, shown once and saved in admin_token_file (mode 0600)",
			"admin_token": secret, "admin_token_file": path,
		})
		fmt.Fprintf(stderr, "%s\n", b)
		return nil
	}
	fmt.Fprintf(stderr, "\nkeygate: created admin user root with API token\n\n    %s\n\nIt is shown once and saved in %s (mode 0600).\n\n", secret, path)
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
