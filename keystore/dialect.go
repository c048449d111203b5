package keystore

import (
	"context"
	"database/sql"
	"errors"
	"regexp"
	"strings"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"modernc.org/sqlite"
)

// dialect hides the differences between SQL backends: placeholders,
// migration set, and the mapping of driver errors to keystore sentinels
// (the one place that knows driver error shapes).
type dialect interface {
	name() string
	gooseDialect() goose.Dialect
	rebind(query string) string
	mapErr(err error) error
	// contains is a SQL condition: needle occurs in haystack (both
	// expressions), compared byte for byte.
	contains(haystack, needle string) string

	// serialisesWrites reports whether every write transaction already
	// runs alone (SQLite: BEGIN IMMEDIATE), so none needs lockWrites.
	serialisesWrites() bool
	// lockWrites takes the write lock for the rest of the transaction
	// (PostgreSQL: an advisory lock, so change-log rows are gapless and in
	// commit order).
	lockWrites(ctx context.Context, ex execer) error
	// insertChange appends a change-log row and returns its seq.
	insertChange(ctx context.Context, t *tx, entity Entity, id int64, op string) (int64, error)
	// notifyChanges tells other nodes, inside the committing transaction,
	// that changes up to seq exist (PostgreSQL NOTIFY; SQLite: nothing).
	notifyChanges(ctx context.Context, ex execer, seq int64) error
	// sessionLocker serialises migrations across nodes (nil: none needed).
	sessionLocker() (lock.SessionLocker, error)
	// snapshotIsolation is the isolation of a consistent read-only snapshot.
	snapshotIsolation() sql.IsolationLevel
	// tablesQuery lists the schema's tables.
	tablesQuery() string
	// resetSequences moves id sequences past explicitly inserted ids.
	resetSequences(ctx context.Context, ex execer, tables []string) error
	// unavailable reports whether err means the database could not be
	// reached at all (beyond what mapErr already classifies).
	unavailable(err error) bool
}

// execer runs a statement (a *sql.Tx or *sql.DB).
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// keystoreError reports whether err is already one of the store's own
// errors, which mapErr passes through unchanged.
func keystoreError(err error) bool {
	var ve *ValidationError
	var nf *NotFoundError
	var ce *ConflictError
	return errors.As(err, &ve) || errors.As(err, &nf) || errors.As(err, &ce)
}

// asciiLower folds A-Z only, as the lower() of SQLite (and of PostgreSQL on
// the "C"-collated columns of our schema) does. The store folds parameters
// in Go rather than with lower(?), whose result on PostgreSQL would follow
// the database's locale.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// uniqueFields maps unique index names to the API field they protect.
var uniqueFields = map[string]string{
	"users_username_unique":                "username",
	"users_email_unique":                   "email",
	"groups_full_path_unique":              "path",
	"keys_fingerprint_sha256_unique":       "fingerprint_sha256",
	"group_cas_group_fingerprint_unique":   "fingerprint_sha256",
	"gpg_keys_fingerprint_unique":          "fingerprint",
	"cert_revocations_unique":              "value",
	"personal_access_tokens_digest_unique": "token",
	"projects_group_path_unique":           "path",
	"lfs_locks_project_path_unique":        "path",
}

var uniqueColumnRE = regexp.MustCompile(`([a-z_]+)\.([a-z_0-9]+)`)

type sqliteDialect struct{}

func (sqliteDialect) name() string                { return "sqlite" }
func (sqliteDialect) gooseDialect() goose.Dialect { return goose.DialectSQLite3 }
func (sqliteDialect) rebind(q string) string      { return q }

func (sqliteDialect) contains(h, n string) string { return "instr(" + h + ", " + n + ") > 0" }

func (sqliteDialect) serialisesWrites() bool                             { return true }
func (sqliteDialect) lockWrites(context.Context, execer) error           { return nil }
func (sqliteDialect) notifyChanges(context.Context, execer, int64) error { return nil }
func (sqliteDialect) sessionLocker() (lock.SessionLocker, error)         { return nil, nil }
func (sqliteDialect) snapshotIsolation() sql.IsolationLevel              { return sql.LevelDefault }
func (sqliteDialect) unavailable(error) bool                             { return false }

// SQLite's AUTOINCREMENT follows explicit ids by itself.
func (sqliteDialect) resetSequences(context.Context, execer, []string) error { return nil }

func (sqliteDialect) tablesQuery() string {
	return `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`
}

func (sqliteDialect) insertChange(ctx context.Context, t *tx, entity Entity, id int64, op string) (int64, error) {
	var seq int64
	err := t.queryRow(ctx, `INSERT INTO changes (at, entity, entity_id, op) VALUES (?, ?, ?, ?) RETURNING seq`,
		ms(t.now), entity, id, op).Scan(&seq)
	return seq, err
}

// SQLite result codes (https://sqlite.org/rescode.html): the primary code
// is the low byte of the extended one.
const (
	sqliteBusy       = 5
	sqliteLocked     = 6
	sqliteReadOnly   = 8
	sqliteIOErr      = 10
	sqliteCorrupt    = 11
	sqliteFull       = 13
	sqliteCantOpen   = 14
	sqliteConstraint = 19

	sqliteConstraintForeignKey = 787
	sqliteConstraintPrimaryKey = 1555
	sqliteConstraintUnique     = 2067
)

// mapErr classifies a driver error by its SQLite result code; the message
// is read only to name the column of a unique violation. An error that is
// not a *sqlite.Error (wrapped away by a library) is classified by its
// text as before.
func (sqliteDialect) mapErr(err error) error {
	if err == nil || keystoreError(err) {
		return err
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return sqliteMapText(err)
	}
	switch code := se.Code(); {
	case code == sqliteConstraintUnique || code == sqliteConstraintPrimaryKey:
		return uniqueViolation(err.Error())
	case code == sqliteConstraintForeignKey:
		return notFound("Record")
	case code&0xff == sqliteConstraint:
		return &ConflictError{Msg: "conflicts with existing data"}
	case code&0xff == sqliteReadOnly, code&0xff == sqliteFull, code&0xff == sqliteIOErr,
		// A file system that fails every read makes SQLite report its pages
		// as malformed: the storage is unusable, not the request wrong.
		code&0xff == sqliteCorrupt,
		code&0xff == sqliteBusy, code&0xff == sqliteLocked, code&0xff == sqliteCantOpen:
		return errors.Join(ErrUnavailable, err)
	}
	return err
}

// uniqueViolation names the field of a unique-constraint message.
func uniqueViolation(msg string) error {
	for idx, field := range uniqueFields {
		if strings.Contains(msg, idx) {
			return invalid(field, "has already been taken")
		}
	}
	// Column form: "UNIQUE constraint failed: keys.fingerprint_sha256 (2067)".
	// For a multi-column index the last column names the field.
	_, cols, _ := strings.Cut(msg, "UNIQUE constraint failed:")
	if all := uniqueColumnRE.FindAllStringSubmatch(cols, -1); all != nil {
		m := all[len(all)-1]
		field := m[2]
		if m[1] == "personal_access_tokens" && field == "digest" {
			field = "token"
		}
		return invalid(field, "has already been taken")
	}
	return &ConflictError{Msg: "already exists"}
}

// sqliteMapText is mapErr for an error without a result code.
func sqliteMapText(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "UNIQUE constraint failed"):
		return uniqueViolation(msg)
	case strings.Contains(msg, "FOREIGN KEY constraint failed"):
		return notFound("Record")
	case strings.Contains(msg, "readonly database"),
		strings.Contains(msg, "database or disk is full"),
		strings.Contains(msg, "disk I/O error"),
		strings.Contains(msg, "database disk image is malformed"),
		strings.Contains(msg, "database is locked"),
		strings.Contains(msg, "SQLITE_BUSY"),
		strings.Contains(msg, "unable to open database"):
		return errors.Join(ErrUnavailable, err)
	}
	return err
}
