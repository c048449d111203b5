package keystore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// pgDialect is PostgreSQL through pgx's database/sql driver.
type pgDialect struct{}

func (pgDialect) name() string                { return "postgres" }
func (pgDialect) gooseDialect() goose.Dialect { return goose.DialectPostgres }

func (pgDialect) contains(h, n string) string { return "strpos(" + h + ", " + n + ") > 0" }

func (pgDialect) serialisesWrites() bool { return false }

func (pgDialect) lockWrites(ctx context.Context, ex execer) error {
	_, err := ex.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, writeLockKey)
	return err
}

func (pgDialect) insertChange(ctx context.Context, t *tx, entity Entity, id int64, op string) (int64, error) {
	if !t.serial {
		return 0, errors.New("keystore: change-log row outside a serialised write")
	}
	// Under the write lock: gapless, in commit order (see writeLockKey).
	var seq int64
	err := t.queryRow(ctx, `INSERT INTO changes (seq, at, entity, entity_id, op)
		SELECT COALESCE(MAX(seq), 0) + 1, CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS TEXT) FROM changes RETURNING seq`,
		ms(t.now), entity, id, op).Scan(&seq)
	return seq, err
}

func (pgDialect) notifyChanges(ctx context.Context, ex execer, seq int64) error {
	_, err := ex.ExecContext(ctx, `SELECT pg_notify($1, $2)`, changesChannel, strconv.FormatInt(seq, 10))
	return err
}

// sessionLocker: nodes starting together migrate one after the other;
// retry every second (goose's default is 5 s) for up to 5 minutes.
func (pgDialect) sessionLocker() (lock.SessionLocker, error) {
	return lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
}

func (pgDialect) snapshotIsolation() sql.IsolationLevel { return sql.LevelRepeatableRead }

func (pgDialect) tablesQuery() string {
	return `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`
}

// resetSequences: explicit ids do not move a BIGSERIAL's sequence; set
// each past the largest imported id.
func (pgDialect) resetSequences(ctx context.Context, ex execer, tables []string) error {
	for _, name := range tables {
		if _, err := ex.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence('`+name+`', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM `+name); err != nil {
			return fmt.Errorf("keystore: import: reset the %s id sequence: %w", name, err)
		}
	}
	return nil
}

func (pgDialect) unavailable(err error) bool { return connectionFailure(err) }

// rebind turns the store's `?` placeholders into PostgreSQL's $1..$n,
// leaving question marks inside quoted literals, quoted identifiers and
// comments alone.
func (pgDialect) rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			// Copy through the closing quote; a doubled quote is an
			// escaped one and keeps the literal open.
			j := i + 1
			for j < len(q) {
				if q[j] == c {
					if j+1 < len(q) && q[j+1] == c {
						j += 2
						continue
					}
					break
				}
				j++
			}
			if j >= len(q) {
				j = len(q) - 1
			}
			b.WriteString(q[i : j+1])
			i = j
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i - 1
			}
			b.WriteString(q[i : i+j+1])
			i += j
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// pgConstraintFields maps constraints that are not in uniqueFields (primary
// keys) to the field SQLite's column-form message names for them.
var pgConstraintFields = map[string]string{
	"members_pkey": "user_id",
}

func (pgDialect) mapErr(err error) error {
	if err == nil || keystoreError(err) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505": // unique_violation
			if field, ok := uniqueFields[pe.ConstraintName]; ok {
				return invalid(field, "has already been taken")
			}
			if field, ok := pgConstraintFields[pe.ConstraintName]; ok {
				return invalid(field, "has already been taken")
			}
			return &ConflictError{Msg: "already exists"}
		case pe.Code == "23503": // foreign_key_violation
			return notFound("Record")
		case pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", // admin/crash shutdown, cannot connect now
			pe.Code == "25006",               // read_only_sql_transaction (a standby, or default_transaction_read_only)
			strings.HasPrefix(pe.Code, "08"), // connection exception
			strings.HasPrefix(pe.Code, "53"): // insufficient resources: disk full, out of memory, too many connections
			return errors.Join(ErrUnavailable, err)
		}
		return err
	}
	if connectionFailure(err) {
		return errors.Join(ErrUnavailable, err)
	}
	return err
}

// connectionFailure reports errors that mean the server could not be
// reached or the connection broke, as opposed to a refused statement.
func connectionFailure(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ce) || errors.As(err, &oe) || errors.As(err, &ne) ||
		errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		pgconn.SafeToRetry(err)
}
