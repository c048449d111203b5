package keystore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"time"
	"unicode/utf8"
)

// SQL helpers: statements inside a write transaction with its audit and
// change-log rows, reads outside one, time columns, paging and scanning.

func (t *tx) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := checkText(args); err != nil {
		return nil, err
	}
	return t.sqltx.ExecContext(ctx, t.s.dialect.rebind(query), args...)
}

func (t *tx) queryRow(ctx context.Context, query string, args ...any) rowScanner {
	if err := checkText(args); err != nil {
		return errRow{err}
	}
	return t.sqltx.QueryRowContext(ctx, t.s.dialect.rebind(query), args...)
}

func (t *tx) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := checkText(args); err != nil {
		return nil, err
	}
	return t.sqltx.QueryContext(ctx, t.s.dialect.rebind(query), args...)
}

// execOne runs a statement that must change a row: none is notFound(what).
func (t *tx) execOne(ctx context.Context, what, query string, args ...any) error {
	res, err := t.exec(ctx, query, args...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return notFound(what)
	}
	return nil
}

// checkText refuses text arguments that no backend stores faithfully: a NUL
// byte or invalid UTF-8 (PostgreSQL rejects both; SQLite would keep them).
// No stored value can equal one, so refusing is the same answer on every
// backend, and a clear 400 instead of a driver error.
func checkText(args []any) error {
	for _, a := range args {
		if v, ok := a.(string); ok && (strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v)) {
			return invalid("value", "must be valid UTF-8 without NUL bytes")
		}
	}
	return nil
}

// errRow is a row whose Scan fails with err.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// insert runs an INSERT … RETURNING id.
func (t *tx) insert(ctx context.Context, query string, args ...any) (int64, error) {
	var id int64
	err := t.queryRow(ctx, query+" RETURNING id", args...).Scan(&id)
	return id, err
}

// record appends an audit event and a change-log row for one entity.
func (t *tx) record(ctx context.Context, action string, entity Entity, id int64, op string, details map[string]any) error {
	if err := t.audit(ctx, action, string(entity), id, details); err != nil {
		return err
	}
	return t.change(ctx, entity, id, op)
}

func (t *tx) audit(ctx context.Context, action, targetType string, targetID int64, details map[string]any) error {
	if details == nil {
		details = map[string]any{}
	}
	if t.actor.SudoBy != 0 {
		details = maps.Clone(details)
		details["sudo_by"] = t.actor.SudoBy
	}
	b, err := json.Marshal(details)
	if err != nil {
		return err
	}
	var actor any
	if t.actor.UserID != 0 {
		actor = t.actor.UserID
	}
	id, err := t.insert(ctx, `INSERT INTO audit_events (at, actor_id, action, target_type, target_id, details, remote_ip)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, ms(t.now), actor, action, targetType, targetID, string(b), t.actor.RemoteIP)
	if err != nil {
		return err
	}
	// Streamed from the outbox, written in this transaction (stream.go).
	return t.outbox(ctx, id)
}

func (t *tx) change(ctx context.Context, entity Entity, id int64, op string) error {
	seq, err := t.s.dialect.insertChange(ctx, t, entity, id, op)
	if err != nil {
		return err
	}
	t.changes = append(t.changes, Change{Seq: seq, At: t.now, Entity: entity, EntityID: id, Op: op})
	return nil
}

// Time helpers: the database holds integer milliseconds since the epoch.

func ms(t time.Time) int64 { return t.UnixMilli() }

func msPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func fromNullMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

// Reads outside a write transaction report a database that cannot be
// reached (PostgreSQL down or restarting) as ErrUnavailable, like writes.

func (s *Store) queryRow(ctx context.Context, query string, args ...any) rowScanner {
	if err := checkText(args); err != nil {
		return errRow{err}
	}
	return readRow{s.db.QueryRowContext(ctx, s.dialect.rebind(query), args...), s}
}

func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := checkText(args); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, s.dialect.rebind(query), args...)
	return rows, s.readErr(err)
}

// readRow is a *sql.Row whose Scan maps an unreachable database to
// ErrUnavailable (sql.ErrNoRows stays as it is).
type readRow struct {
	r *sql.Row
	s *Store
}

func (r readRow) Scan(dest ...any) error { return r.s.readErr(r.r.Scan(dest...)) }

// readErr keeps err unless it means the database is unavailable.
func (s *Store) readErr(err error) error {
	if err == nil || errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if m := s.dialect.mapErr(err); errors.Is(m, ErrUnavailable) {
		return m
	}
	if errors.Is(err, sql.ErrConnDone) || strings.Contains(err.Error(), "sql: database is closed") {
		return errors.Join(ErrUnavailable, err)
	}
	return err
}

// count runs a SELECT COUNT(*) query.
func (s *Store) count(ctx context.Context, query string, args ...any) (int, error) {
	var n int
	err := s.queryRow(ctx, query, args...).Scan(&n)
	return n, err
}

// rowScanner is what *sql.Row and *sql.Rows have in common.
type rowScanner interface{ Scan(dest ...any) error }

// listPage counts the rows of from (a FROM … WHERE … clause) and returns
// one page of them, scanned with scan, in order.
func listPage[T any](ctx context.Context, s *Store, cols, from string, args []any, order string, pg Page,
	scan func(rowScanner) (*T, error)) ([]*T, int, error) {
	total, err := s.count(ctx, `SELECT COUNT(*) FROM `+from, args...)
	if err != nil {
		return nil, 0, err
	}
	limit, offset := pg.limitOffset()
	rows, err := s.query(ctx, `SELECT `+cols+` FROM `+from+` ORDER BY `+order+` LIMIT ? OFFSET ?`,
		append(args[:len(args):len(args)], limit, offset)...)
	out, err := scanRows(rows, err, scan)
	return out, total, err
}

// scanRows scans every row of a query's result with scan and closes it;
// err is the query's error.
func scanRows[T any](rows *sql.Rows, err error, scan func(rowScanner) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
