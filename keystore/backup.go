package keystore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// SnapshotSQLite writes a consistent copy of a SQLite keystore to path
// (which must not exist) while writers go on: VACUUM INTO reads one
// snapshot in a read transaction (WAL lets writes continue) and writes a
// compact, self-contained database file. PostgreSQL keystores are backed
// up through Export instead.
func (s *Store) SnapshotSQLite(ctx context.Context, path string) error {
	if s.dialect.name() != "sqlite" {
		return errors.New("keystore: snapshot: not a SQLite keystore (use Export)")
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("keystore: snapshot: %s already exists", path)
	}
	if _, err := s.db.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		return fmt.Errorf("keystore: snapshot: %w", s.dialect.mapErr(err))
	}
	return os.Chmod(path, 0o600)
}

// MigrateTo applies the migrations up to version v (and no further): a
// restore brings a new keystore to an export's version, imports it, then
// migrates the rest of the way.
func (s *Store) MigrateTo(ctx context.Context, v int64) error {
	if s.readOnly {
		return ErrReadOnly
	}
	p, err := s.migrations()
	if err != nil {
		return err
	}
	current, latest, err := s.schemaVersions(ctx)
	if err != nil {
		return err
	}
	if v > latest {
		return &SchemaError{Database: v, Binary: latest}
	}
	if current >= v {
		return nil
	}
	if _, err := p.UpTo(ctx, v); err != nil {
		return fmt.Errorf("keystore: migrate to %d: %w", v, s.dialect.mapErr(err))
	}
	return nil
}

// LatestSchema is the newest schema version this build knows.
func LatestSchema() int64 {
	entries, err := fs.ReadDir(migrations, "migrations/sqlite")
	if err != nil {
		return 0
	}
	var latest int64
	for _, e := range entries {
		var v int64
		if _, err := fmt.Sscanf(e.Name(), "%d_", &v); err == nil && v > latest {
			latest = v
		}
	}
	return latest
}
