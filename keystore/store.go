package keystore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/keygate/keygate/internal/sealed"
)

//go:embed migrations
var migrations embed.FS

// Config configures a Store.
type Config struct {
	// DSN is a SQLite file path (or "file:" URI), or a PostgreSQL URL
	// (postgres://… or postgresql://…, any parameter pgx understands).
	DSN string
	// NoMigrate skips running migrations at open.
	NoMigrate bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives each migration applied and what a migration changed in
	// existing data (nil: discard).
	Log *slog.Logger
	// MustExist refuses a SQLite file that does not exist yet
	// (ErrNoDatabase) instead of creating it: an explicit path with a typo
	// must not start a new, empty keystore. A SQLite file's directory is
	// never created either way.
	MustExist bool
	// CAKey seals the private keys of managed CAs (nil: managed CAs can
	// neither be generated nor sign). It is never stored in the database.
	CAKey *sealed.Key
	// CertMaxTTL caps the validity of every certificate a managed CA
	// issues to a person, whatever a group's own maximum (0: 24h).
	CertMaxTTL time.Duration
}

// Store is the keystore: validated domain writes and reads over SQL. Every
// write records an audit event and change-log rows in its own transaction,
// then tells subscribers (the in-memory auth index) before returning.
type Store struct {
	db      *sql.DB
	dialect dialect
	now     func() time.Time
	// pgConfig is the parsed PostgreSQL configuration (nil on SQLite),
	// kept for the dedicated LISTEN connection.
	pgConfig *pgx.ConnConfig
	// readOnly: the SQLite file was opened read-only (it cannot be written);
	// roInfo says why.
	readOnly bool
	roInfo   *ReadOnlyInfo

	log *slog.Logger

	caKey      *sealed.Key
	certMaxTTL time.Duration

	mu          sync.RWMutex
	subscribers []func(Change)
}

// Open opens (creating a SQLite file if needed, unless cfg.MustExist) the
// store at cfg.DSN and runs migrations (unless cfg.NoMigrate). A schema
// newer than this build knows is refused (*SchemaError).
func Open(ctx context.Context, cfg Config) (*Store, error) {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	var s *Store
	if IsPostgresDSN(cfg.DSN) {
		db, pgc, err := openPostgres(ctx, cfg.DSN)
		if err != nil {
			return nil, err
		}
		s = &Store{db: db, dialect: pgDialect{}, now: now, pgConfig: pgc}
	} else {
		db, ro, err := openSQLite(cfg.DSN, cfg.MustExist)
		if err != nil {
			return nil, err
		}
		s = &Store{db: db, dialect: sqliteDialect{}, now: now, readOnly: ro != nil, roInfo: ro}
	}
	s.log = cfg.Log
	s.caKey, s.certMaxTTL = cfg.CAKey, cfg.CertMaxTTL
	if s.certMaxTTL <= 0 {
		s.certMaxTTL = DefaultCertMaxTTL
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	db := s.db
	if err := s.checkSchema(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if !cfg.NoMigrate {
		if err := s.Migrate(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	return s, nil
}

// openSQLite opens the SQLite database at path, read-only (ro not nil,
// saying why) when the file exists but cannot be written. It never
// creates the file's directory, and with mustExist not the file either.
func openSQLite(path string, mustExist bool) (db *sql.DB, ro *ReadOnlyInfo, err error) {
	if path == "" {
		return nil, nil, errors.New("keystore: empty database path")
	}
	file := strings.TrimPrefix(path, "file:")
	if i := strings.IndexByte(file, '?'); i >= 0 {
		file = file[:i]
	}
	if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
		if mustExist {
			return nil, nil, fmt.Errorf("%w: %s does not exist", ErrNoDatabase, file)
		}
		if _, err := os.Stat(filepath.Dir(file)); errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("%w: %s: its directory %s does not exist (keygate does not create it)", ErrNoDatabase, file, filepath.Dir(file))
		}
	}
	// Create the database file private to keygate (SQLite's -wal and -shm
	// files inherit its mode).
	flags := os.O_RDWR | os.O_CREATE
	if mustExist {
		flags = os.O_RDWR
	}
	f, ferr := os.OpenFile(file, flags, 0o600)
	if ferr == nil {
		f.Close()
	}
	q := url.Values{}
	pragmas := []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)"}
	readOnly := errors.Is(ferr, syscall.EROFS) || errors.Is(ferr, syscall.EACCES)
	if readOnly {
		// An existing database that cannot be written (a read-only mount,
		// no write permission): opened read-only, so keygate serves
		// authentication and reads and refuses writes (SQLite answers
		// "attempt to write a readonly database": ErrUnavailable).
		if _, serr := os.Stat(file); serr != nil {
			return nil, nil, fmt.Errorf("keystore: %w", ferr)
		}
		ro = readOnlyInfo(file, ferr)
		pragmas = []string{"busy_timeout(10000)", "foreign_keys(1)"}
		q.Set("mode", "ro")
		if fi, werr := os.Stat(file + "-wal"); errors.Is(ferr, syscall.EROFS) && (werr != nil || fi.Size() == 0) {
			// A read-only file system with no write-ahead log to read,
			// where no -shm file can be created: immutable tells SQLite
			// not to look for either. Nothing writes the file here.
			q.Set("immutable", "1")
		}
		// Otherwise committed transactions may live in the -wal file,
		// which SQLite reads only with its -shm file beside it (or one it
		// can create): opening fails below without, never a view that
		// misses them.
	}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err = sql.Open("sqlite", "file:"+file+"?"+q.Encode())
	if err != nil {
		return nil, nil, fmt.Errorf("keystore: open %s: %w", file, err)
	}
	// SQLite has one writer; a small pool keeps readers concurrent without
	// piling up writers on the busy handler.
	db.SetMaxOpenConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.Ping(); err != nil {
		db.Close()
		if readOnly {
			return nil, nil, fmt.Errorf("keystore: open %s: the file cannot be written, and it cannot be read without write access (a write-ahead log without its -shm file?): %w", file, err)
		}
		return nil, nil, fmt.Errorf("keystore: open %s: %w", file, err)
	}
	return db, ro, nil
}

// IsPostgresDSN reports whether dsn selects the PostgreSQL backend.
func IsPostgresDSN(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// ReadOnly reports whether the store was opened read-only because its
// SQLite file cannot be written (a read-only mount): reads work, writes fail
// with ErrUnavailable.
func (s *Store) ReadOnly() bool { return s.readOnly }

// Backend names the database behind the store: "sqlite" or "postgres".
func (s *Store) Backend() string { return s.dialect.name() }

// Migrate applies pending schema migrations. On PostgreSQL it holds a
// session advisory lock meanwhile, so nodes starting together migrate one
// after the other.
func (s *Store) Migrate(ctx context.Context) error {
	p, err := s.migrations()
	if err != nil {
		return err
	}
	if s.readOnly {
		// Nothing can change: checkSchema (at Open) refused a schema this
		// build cannot serve as it is, and a read-only file with pending
		// migrations fails below with ErrReadOnly's reason.
		current, latest, err := s.schemaVersions(ctx)
		if err != nil {
			return err
		}
		if current < latest {
			return fmt.Errorf("keystore: migrate: the schema is at version %d and this keygate needs %d, but %w", current, latest, ErrReadOnly)
		}
		return nil
	}
	before, _, err := s.schemaVersions(ctx)
	if err != nil {
		return err
	}
	if err := s.checkSchema(ctx); err != nil {
		return err
	}
	results, err := p.Up(ctx)
	for _, r := range results {
		if r.Error == nil {
			s.log.Info("schema migration applied", "version", r.Source.Version, "file", r.Source.Path, "took", r.Duration.Round(time.Millisecond))
		}
	}
	if err != nil {
		return fmt.Errorf("keystore: migrate: %w", s.dialect.mapErr(err))
	}
	if len(results) > 0 {
		s.log.Info("database schema migrated", "from", before, "to", results[len(results)-1].Source.Version, "backend", s.Backend())
	}
	// Bastion targets made before the trust-boundaries migration: an
	// admin's stay, an owner's are disabled (not deleted), each logged.
	legacy, err := s.classifyLegacyTargets(ctx)
	if err != nil {
		return fmt.Errorf("keystore: migrate: classifying bastion targets: %w", err)
	}
	for _, l := range legacy {
		if l.Disabled {
			s.log.Warn("bastion target disabled: an owner made it, and targets are now admin policy (see README, Security model)",
				"target_id", l.ID, "group_id", l.GroupID, "pattern", l.Pattern)
		} else {
			s.log.Info("bastion target kept: an admin made it", "target_id", l.ID, "group_id", l.GroupID, "pattern", l.Pattern)
		}
	}
	// Deploy keys left enabled nowhere by a project or group deleted
	// before such deletions settled them (keygate 0.2.0).
	orphans, err := s.deleteOrphanedDeployKeys(ctx)
	if err != nil {
		return fmt.Errorf("keystore: migrate: orphaned deploy keys: %w", err)
	}
	for _, k := range orphans {
		s.log.Warn("deploy key deleted: it was enabled nowhere (its project or group was deleted)", "deploy_key_id", k.ID, "title", k.Title, "fingerprint", k.FingerprintSHA256)
	}
	return nil
}

// SchemaVersion reports the schema version of the database and the newest
// this build knows.
func (s *Store) SchemaVersion(ctx context.Context) (current, latest int64, err error) {
	p, err := s.migrations()
	if err != nil {
		return 0, 0, err
	}
	current, latest, err = p.GetVersions(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("keystore: schema version: %w", err)
	}
	return current, latest, nil
}

func (s *Store) migrations() (*goose.Provider, error) {
	sub, err := fs.Sub(migrations, "migrations/"+s.dialect.name())
	if err != nil {
		return nil, err
	}
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	locker, err := s.dialect.sessionLocker()
	if err != nil {
		return nil, err
	}
	if locker != nil {
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(s.dialect.gooseDialect(), s.db, sub, opts...)
	if err != nil {
		return nil, fmt.Errorf("keystore: migrations: %w", err)
	}
	return p, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Now reports the store's clock.
func (s *Store) Now() time.Time { return s.now() }

// Subscribe registers fn to be called, synchronously and in order, with each
// change after its transaction commits. Subscribers must be fast.
func (s *Store) Subscribe(fn func(Change)) {
	s.mu.Lock()
	s.subscribers = append(s.subscribers, fn)
	s.mu.Unlock()
}

// tx is a write transaction that collects its change-log rows.
type tx struct {
	s       *Store
	sqltx   *sql.Tx
	now     time.Time
	actor   Actor
	changes []Change
	// serial: the transaction holds the cluster-wide write lock (always on
	// SQLite, whose writers are serialised by BEGIN IMMEDIATE).
	serial bool
}

// Write transactions and the change log.
//
// Followers (the in-memory indexes of other nodes) apply changes strictly
// in seq order and take a missing number for a gap to heal, so seq must be
// gapless and follow commit order.
//
// On SQLite that holds by construction: BEGIN IMMEDIATE serialises writers
// and AUTOINCREMENT numbers rows in that order.
//
// On PostgreSQL a sequence would not do: a rolled-back transaction burns a
// number, and two transactions can commit in the opposite order of their
// numbers. So every write transaction first takes a transaction-scoped
// advisory lock on one fixed key (pg_advisory_xact_lock(writeLockKey)),
// which queues writers on every node behind each other (keystore writes
// are admin-rate), and assigns seq = MAX(seq)+1 while holding it. The lock
// is released only after the commit is visible to new snapshots, so the
// next writer's MAX(seq) sees it; a rollback leaves no number behind. The
// lock also gives check-then-write logic (the last owner of a group, a
// fingerprint already in use) the same isolation as SQLite's single writer,
// across nodes. The same transaction queues pg_notify('keygate_changes',
// <last seq>), which PostgreSQL delivers to listeners at commit and drops
// on rollback (see ListenChanges).
const writeLockKey int64 = 0x6b657967617465 // "keygate"

// changesChannel is the LISTEN/NOTIFY channel of the change log.
const changesChannel = "keygate_changes"

// write runs fn in a serialised write transaction; on commit it notifies
// subscribers.
func (s *Store) write(ctx context.Context, actor Actor, fn func(t *tx) error) error {
	return s.writeTx(ctx, actor, true, fn)
}

// writeTx runs fn in a transaction. Without serial (audit events only, no
// change-log rows) a PostgreSQL transaction does not queue for the write
// lock.
func (s *Store) writeTx(ctx context.Context, actor Actor, serial bool, fn func(t *tx) error) error {
	if s.readOnly {
		return ErrReadOnly
	}
	sqltx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.dialect.mapErr(err)
	}
	t := &tx{s: s, sqltx: sqltx, now: s.now().UTC().Truncate(time.Millisecond), actor: actor, serial: serial || s.dialect.serialisesWrites()}
	if serial && !s.dialect.serialisesWrites() {
		if err := s.dialect.lockWrites(ctx, sqltx); err != nil {
			sqltx.Rollback()
			return s.dialect.mapErr(err)
		}
	}
	if err := fn(t); err != nil {
		sqltx.Rollback()
		return s.dialect.mapErr(err)
	}
	if len(t.changes) > 0 {
		if err := s.dialect.notifyChanges(ctx, sqltx, t.changes[len(t.changes)-1].Seq); err != nil {
			sqltx.Rollback()
			return s.dialect.mapErr(err)
		}
	}
	if err := sqltx.Commit(); err != nil {
		return s.dialect.mapErr(err)
	}
	s.mu.RLock()
	subs := s.subscribers
	s.mu.RUnlock()
	for _, c := range t.changes {
		for _, fn := range subs {
			fn(c)
		}
	}
	return nil
}
