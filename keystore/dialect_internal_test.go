package keystore

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keygate/keygate/keystore/pgtest"
)

func TestPGRebind(t *testing.T) {
	cases := []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT a FROM t WHERE x = ? AND y = ?`, `SELECT a FROM t WHERE x = $1 AND y = $2`},
		{`SELECT '?' , "we?ird", ? FROM t`, `SELECT '?' , "we?ird", $1 FROM t`},
		{`SELECT 'it''s ?', ?`, `SELECT 'it''s ?', $1`},
		{"SELECT ? -- what?\n, ?", "SELECT $1 -- what?\n, $2"},
		{`INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, `INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`},
		{`SELECT 'unterminated ?`, `SELECT 'unterminated ?`},
	}
	for _, c := range cases {
		if got := (pgDialect{}).rebind(c.in); got != c.want {
			t.Errorf("rebind(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestPGMapErrCodes(t *testing.T) {
	d := pgDialect{}
	unavailable := []string{"57P01", "57P02", "57P03", "08006", "08001", "25006", "53100", "53200", "53300"}
	for _, code := range unavailable {
		err := d.mapErr(fmt.Errorf("exec: %w", &pgconn.PgError{Code: code}))
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("code %s: %v, want ErrUnavailable", code, err)
		}
	}
	for _, err := range []error{syscall.ECONNREFUSED, &pgconn.ConnectError{}} {
		if got := d.mapErr(err); !errors.Is(got, ErrUnavailable) {
			t.Errorf("%T: %v, want ErrUnavailable", err, got)
		}
	}
	for _, err := range []error{context.Canceled, context.DeadlineExceeded, &pgconn.PgError{Code: "42601"}} {
		if got := d.mapErr(err); errors.Is(got, ErrUnavailable) {
			t.Errorf("%v mapped to ErrUnavailable", err)
		}
	}
	if err := d.mapErr(&pgconn.PgError{Code: "23503", ConstraintName: "keys_user_id_fkey"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("23503: %v", err)
	}
	if err := d.mapErr(&pgconn.PgError{Code: "23505", ConstraintName: "something_else"}); !errors.Is(err, ErrConflict) {
		t.Errorf("23505 unknown constraint: %v", err)
	}
}

// TestPGMapErrReal: the constraint names PostgreSQL reports for our schema
// map to the same fields as on SQLite. Raw statements bypass the store's
// own checks so that the database itself refuses them.
func TestPGMapErrReal(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	s, err := Open(ctx, Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	setup := []string{
		`INSERT INTO users (username, email, created_at) VALUES ('alice', 'alice@example.com', 0)`,
		`INSERT INTO groups (name, path, full_path, created_at) VALUES ('g', 'g', 'g', 0)`,
		`INSERT INTO members (group_id, user_id, access_level, created_at) VALUES (1, 1, 50, 0)`,
		`INSERT INTO keys (user_id, title, key, type, bits, fingerprint_sha256, fingerprint_md5, usage_type, created_at) VALUES (1, 't', 'k', 'ssh-ed25519', 256, 'SHA256:x', 'm', 'auth', 0)`,
		`INSERT INTO projects (group_id, name, path, created_at) VALUES (1, 'p', 'p', 0)`,
	}
	for _, q := range setup {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	cases := []struct{ stmt, field string }{
		{`INSERT INTO users (username, email, created_at) VALUES ('ALICE', 'other@example.com', 0)`, "username"},
		{`INSERT INTO users (username, email, created_at) VALUES ('bob', 'Alice@Example.com', 0)`, "email"},
		{`INSERT INTO groups (name, path, full_path, created_at) VALUES ('G', 'G', 'G', 0)`, "path"},
		{`INSERT INTO members (group_id, user_id, access_level, created_at) VALUES (1, 1, 30, 0)`, "user_id"},
		{`INSERT INTO keys (user_id, title, key, type, bits, fingerprint_sha256, fingerprint_md5, usage_type, created_at) VALUES (1, 't', 'k', 'ssh-ed25519', 256, 'SHA256:x', 'm', 'auth', 0)`, "fingerprint_sha256"},
		{`INSERT INTO projects (group_id, name, path, created_at) VALUES (1, 'P', 'P', 0)`, "path"},
	}
	for _, c := range cases {
		_, err := conn.Exec(ctx, c.stmt)
		var ve *ValidationError
		if !errors.As(s.dialect.mapErr(err), &ve) || len(ve.Fields[c.field]) == 0 || ve.Fields[c.field][0] != "has already been taken" {
			t.Errorf("%s: %v → %v, want %s has already been taken", c.stmt, err, s.dialect.mapErr(err), c.field)
		}
	}
	_, err = conn.Exec(ctx, `INSERT INTO keys (user_id, title, key, type, bits, fingerprint_sha256, fingerprint_md5, usage_type, created_at) VALUES (99, 't', 'k', 'ssh-ed25519', 256, 'SHA256:y', 'm', 'auth', 0)`)
	if got := s.dialect.mapErr(err); !errors.Is(got, ErrNotFound) {
		t.Errorf("foreign key: %v → %v", err, got)
	}
	// A read-only transaction refuses writes: unavailable, not a 500.
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO users (username, email, created_at) VALUES ('carol', 'carol@example.com', 0)`)
	tx.Rollback(ctx)
	if got := s.dialect.mapErr(err); !errors.Is(got, ErrUnavailable) {
		t.Errorf("read-only: %v → %v", err, got)
	}
}

func TestASCIILower(t *testing.T) {
	for in, want := range map[string]string{"": "", "abc": "abc", "AbC-9": "abc-9", "ÉCOLE": "École"} {
		if got := asciiLower(in); got != want {
			t.Errorf("asciiLower(%q) = %q, want %q", in, got, want)
		}
	}
}
