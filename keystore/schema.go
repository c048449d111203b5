package keystore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// SchemaError: the database's schema is not one this build can serve
// as it is: newer than the build knows (a downgrade, or an old node in a
// rolling upgrade), or — with migrations turned off — missing or older.
type SchemaError struct {
	// Database is the schema version of the database (0: none).
	Database int64
	// Binary is the newest schema version this build knows.
	Binary int64
	// NoMigrate: the caller asked for no migrations.
	NoMigrate bool
}

// Newer reports whether the database was migrated by a newer keygate.
func (e *SchemaError) Newer() bool { return e.Database > e.Binary }

func (e *SchemaError) Error() string {
	switch {
	case e.Newer():
		return fmt.Sprintf("keystore: the database schema is at version %d, newer than this keygate knows (version %d): "+
			"a newer keygate migrated it. Run that keygate release (or a newer one), or restore the backup taken before the upgrade; "+
			"keygate never migrates a schema down", e.Database, e.Binary)
	case e.Database == 0:
		return fmt.Sprintf("keystore: the database has no keygate schema yet (this keygate needs schema version %d), and --no-migrate "+
			"forbids creating it: run `keygate migrate` with the same --db, or start once without --no-migrate", e.Binary)
	}
	return fmt.Sprintf("keystore: the database schema is at version %d and this keygate needs version %d, and --no-migrate "+
		"forbids migrating it: run `keygate migrate` with the same --db, or start without --no-migrate", e.Database, e.Binary)
}

// ErrNoDatabase: the SQLite file named does not exist, and the caller
// asked not to create one (Config.MustExist).
var ErrNoDatabase = errors.New("keystore: no database at that path")

// schemaVersions reads the database's schema version without creating
// anything (0 for a database without keygate's version table) and the
// newest version this build knows.
func (s *Store) schemaVersions(ctx context.Context) (current, latest int64, err error) {
	p, err := s.migrations()
	if err != nil {
		return 0, 0, err
	}
	srcs := p.ListSources()
	if len(srcs) > 0 {
		latest = srcs[len(srcs)-1].Version
	}
	var exists bool
	q := `SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'goose_db_version'`
	if s.dialect.name() == "postgres" {
		q = `SELECT to_regclass('goose_db_version') IS NOT NULL`
	}
	if err := s.db.QueryRowContext(ctx, q).Scan(&exists); err != nil {
		return 0, 0, fmt.Errorf("keystore: schema version: %w", s.dialect.mapErr(err))
	}
	if !exists {
		return 0, latest, nil
	}
	var v sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(version_id) FROM goose_db_version WHERE is_applied`).Scan(&v); err != nil {
		return 0, 0, fmt.Errorf("keystore: schema version: %w", s.dialect.mapErr(err))
	}
	return v.Int64, latest, nil
}

// checkSchema refuses a schema newer than this build knows.
func (s *Store) checkSchema(ctx context.Context) error {
	current, latest, err := s.schemaVersions(ctx)
	if err != nil {
		return err
	}
	if current > latest {
		return &SchemaError{Database: current, Binary: latest}
	}
	return nil
}

// RequireCurrentSchema refuses (*SchemaError with NoMigrate) a database
// whose schema is missing or older than this build's, for a caller that
// runs no migrations: better than the first query's SQL error.
func (s *Store) RequireCurrentSchema(ctx context.Context) error {
	current, latest, err := s.schemaVersions(ctx)
	if err != nil {
		return err
	}
	if current != latest {
		return &SchemaError{Database: current, Binary: latest, NoMigrate: true}
	}
	return nil
}

// ReadOnlyInfo says why a SQLite database was opened read-only, for the
// operator: the file, its owner and mode, who keygate runs as, and the fix.
type ReadOnlyInfo struct {
	File       string
	Owner      string // "root (uid 0)"
	Mode       string // "0644"
	RunningAs  string // "keygate (uid 998)"
	ReadOnlyFS bool   // the file system is mounted read-only
	Fix        string
}

// ReadOnlyInfo reports why the store is read-only (nil when it is not).
func (s *Store) ReadOnlyInfo() *ReadOnlyInfo { return s.roInfo }

// ErrReadOnly: the database file cannot be written; an operator must fix
// it (ReadOnlyInfo says how). It is an ErrUnavailable.
var ErrReadOnly = fmt.Errorf("%w: the database file is read-only", ErrUnavailable)

func describeUID(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("%s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}

// readOnlyInfo describes file, which could not be opened for writing
// because of ferr.
func readOnlyInfo(file string, ferr error) *ReadOnlyInfo {
	info := &ReadOnlyInfo{File: file, RunningAs: describeUID(os.Geteuid()), ReadOnlyFS: errors.Is(ferr, syscall.EROFS)}
	if fi, err := os.Stat(file); err == nil {
		info.Mode = fmt.Sprintf("%04o", fi.Mode().Perm())
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			info.Owner = describeUID(int(st.Uid))
		}
	}
	if info.ReadOnlyFS {
		info.Fix = "the file system holding it is mounted read-only: remount it read-write (or copy the data dir to a writable disk), then restart keygate"
	} else {
		info.Fix = fmt.Sprintf("give the file back to the user keygate runs as, e.g. `chown %s %s %s-wal %s-shm` and `chmod 0600 %s` "+
			"(a restore done as root leaves root's files behind; `keygate restore` run as the keygate user does not), then restart keygate",
			strconv.Itoa(os.Geteuid()), file, file, file, file)
	}
	return info
}
