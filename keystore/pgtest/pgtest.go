// Package pgtest gives tests a fresh PostgreSQL database on the test server
// named by KEYGATE_TEST_POSTGRES (scripts/test.sh starts one with
// scripts/pg-test-server.sh and sets it).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the variable holding the test server's admin URL.
const EnvURL = "KEYGATE_TEST_POSTGRES"

// AdminURL is the test server's admin URL, or "" when none is configured.
func AdminURL() string { return os.Getenv(EnvURL) }

// Require skips t when no PostgreSQL test server is configured (no
// PostgreSQL binaries on this machine; CI installs them) and returns the
// admin URL otherwise.
func Require(t testing.TB) string {
	t.Helper()
	u := AdminURL()
	if u == "" {
		t.Skip(EnvURL + " is not set (scripts/test.sh sets it when PostgreSQL is installed)")
	}
	return u
}

// NewDatabase creates an empty database kg_<random> and returns its URL;
// the database is dropped (WITH (FORCE)) when t ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin := Require(t)
	var b [8]byte
	rand.Read(b[:])
	name := "kg_" + hex.EncodeToString(b[:])
	execSQL(t, admin, "CREATE DATABASE "+name)
	t.Cleanup(func() {
		execSQL(t, admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return WithDatabase(t, admin, name)
}

// WithDatabase returns u with its database name replaced by name.
func WithDatabase(t testing.TB, u, name string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatalf("%s: %v", EnvURL, err)
	}
	p.Path = "/" + name
	return p.String()
}

// Exec runs one statement on the database at u.
func Exec(t testing.TB, u, stmt string, args ...any) {
	t.Helper()
	execSQL(t, u, stmt, args...)
}

func execSQL(t testing.TB, u, stmt string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("connect to the PostgreSQL test server: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, stmt, args...); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}
