package keystore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// ErrListenUnsupported: the backend has no change notifications (SQLite,
// where one process owns the database and subscribers see every write).
var ErrListenUnsupported = errors.New("keystore: change notifications need PostgreSQL")

// applicationName is set on every connection keygate opens (unless the DSN
// names one), so operators and tests can find them in pg_stat_activity.
const applicationName = "keygate"

// openPostgres opens a database/sql pool over pgx for dsn.
func openPostgres(ctx context.Context, dsn string) (*sql.DB, *pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN, password included: keep it out.
		return nil, nil, errors.New("keystore: invalid PostgreSQL URL")
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = applicationName
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("keystore: connect to PostgreSQL at %s: %w", describe(cfg), err)
	}
	return db, cfg, nil
}

// describe names a server without credentials.
func describe(cfg *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
}

// ListenChanges calls wake whenever another transaction commits change-log
// rows (PostgreSQL NOTIFY on keygate_changes; the payload, the newest seq,
// is not needed: the caller reads the log). It uses a dedicated connection,
// outside the pool, and calls wake once as soon as it listens, so the caller
// can catch up on what was committed before. It returns ctx.Err() when ctx
// is done, or the error that broke the connection (the caller retries with
// backoff). On SQLite it returns ErrListenUnsupported at once.
func (s *Store) ListenChanges(ctx context.Context, wake func()) error {
	if s.pgConfig == nil {
		return ErrListenUnsupported
	}
	conn, err := pgx.ConnectConfig(ctx, s.pgConfig.Copy())
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return s.dialect.mapErr(err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+changesChannel); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return s.dialect.mapErr(err)
	}
	wake()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return s.dialect.mapErr(err)
		}
		wake()
	}
}
