package pgtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/keystore/pgtest"
)

func TestPrivateServerRestart(t *testing.T) {
	t.Parallel()
	s := pgtest.PrivateServer(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)`); err != nil {
		t.Fatal(err)
	}
	s.Restart(t, 200*time.Millisecond)
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("a connection survived the restart")
	}
	conn2, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	defer conn2.Close(ctx)
	var v int
	if err := conn2.QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil || v != 7 {
		t.Fatalf("data after restart: %d, %v", v, err)
	}
	s.Stop(t)
	if _, err := pgx.Connect(ctx, s.URL); err == nil {
		t.Fatal("connected to a stopped server")
	}
	s.Start(t)
}
