package main

import (
	"context"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
)

// seedOptions configures a seed.
type seedOptions struct {
	DataDir   string
	DB        string // "" : DataDir/keygate.db
	Keys      int
	WriteKeys string    // write the first seeded user's private key here
	Progress  io.Writer // nil: quiet
}

// SeedResult reports a seed.
type SeedResult struct {
	DBPath    string        `json:"db"`
	Users     int           `json:"users"`
	FirstUser string        `json:"first_user"`
	Elapsed   time.Duration `json:"elapsed_ns"`
}

// seedKey is one generated user key.
type seedKey struct {
	text, fpSHA, fpMD5 string
}

const (
	seedBatchRows = 100   // rows per multi-row INSERT
	seedTxRows    = 50000 // rows per transaction
	usernamePref  = "load-user-"
)

// seed bulk-inserts opts.Keys users with one random ed25519 auth key each
// into the SQLite keystore of a stopped keygate. It bypasses the Store's
// per-row validated writes (and writes no audit or change-log rows); the
// rows are what Store.CreateUser and Store.CreateKey would write.
func seed(ctx context.Context, opts seedOptions) (*SeedResult, error) {
	start := time.Now()
	dbPath := opts.DB
	if dbPath == "" {
		if opts.DataDir == "" {
			return nil, errors.New("--data-dir or --db is required")
		}
		dbPath = filepath.Join(opts.DataDir, "keygate.db")
	}
	if strings.HasPrefix(dbPath, "postgres://") || strings.HasPrefix(dbPath, "postgresql://") {
		return nil, errors.New("seed: PostgreSQL is not supported yet (the keystore has no PostgreSQL backend in this build)")
	}
	dbPath = strings.TrimPrefix(dbPath, "file:")
	if opts.Keys <= 0 {
		return nil, errors.New("--keys must be positive")
	}
	// The seeder writes the database behind keygate's back: refuse a data
	// dir that a running keygate holds (its index would never see the keys).
	lockDir := opts.DataDir
	if lockDir == "" {
		lockDir = filepath.Dir(dbPath)
	}
	unlock, err := keystore.LockDataDir(lockDir, true)
	if errors.Is(err, keystore.ErrDataDirBusy) {
		return nil, fmt.Errorf("seed: a running keygate holds %s; stop it, seed, then start it again (it loads the keys at start)", lockDir)
	} else if err != nil {
		return nil, err
	}
	defer unlock()
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	// Create and migrate with the keystore itself.
	st, err := keystore.Open(ctx, keystore.Config{DSN: dbPath})
	if err != nil {
		return nil, err
	}
	if err := st.Close(); err != nil {
		return nil, err
	}

	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(OFF)", "foreign_keys(1)", "cache_size(-262144)", "temp_store(MEMORY)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+dbPath+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()

	// First free user id and username number (never reuse deleted ids).
	var maxID, seqID, maxK int64
	if err := conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM users`).Scan(&maxID); err != nil {
		return nil, err
	}
	if err := conn.QueryRowContext(ctx, `SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'users'), 0)`).Scan(&seqID); err != nil {
		return nil, err
	}
	if err := conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(CAST(substr(username, 11) AS INTEGER)), 0) FROM users WHERE username LIKE 'load-user-%'`).Scan(&maxK); err != nil {
		return nil, err
	}
	nextID := max(maxID, seqID) + 1
	firstK := maxK + 1

	// Generate keys in parallel, in order of k.
	type batch struct {
		first int64 // k of keys[0]
		keys  []seedKey
	}
	n := int64(opts.Keys)
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var firstPriv ed25519.PrivateKey
	var privOnce sync.Once
	workers := runtime.GOMAXPROCS(0)
	results := make([]chan batch, workers)
	for i := range results {
		results[i] = make(chan batch, 2)
	}
	var genErr error
	var genErrOnce sync.Once
	// Worker i handles chunks i, i+workers, … so the writer can read them in
	// order round-robin.
	for i := 0; i < workers; i++ {
		go func(i int) {
			defer close(results[i])
			for c := int64(i); c*seedBatchRows < n; c += int64(workers) {
				off := c * seedBatchRows
				size := min(int64(seedBatchRows), n-off)
				b := batch{first: firstK + off, keys: make([]seedKey, size)}
				for j := range b.keys {
					pub, priv, err := ed25519.GenerateKey(rand.Reader)
					if err != nil {
						genErrOnce.Do(func() { genErr = err })
						return
					}
					if off == 0 && j == 0 {
						privOnce.Do(func() { firstPriv = priv })
					}
					b.keys[j] = makeSeedKey(pub)
				}
				select {
				case results[i] <- b:
				case <-gctx.Done():
					return
				}
			}
		}(i)
	}
	createdMS := time.Now().UnixMilli()
	userStmt, err := conn.PrepareContext(ctx, multiInsert(`INSERT INTO users (id, username, email, name, state, is_admin, created_at) VALUES `, "(?, ?, ?, ?, 'active', 0, ?)", seedBatchRows))
	if err != nil {
		return nil, err
	}
	defer userStmt.Close()
	keyStmt, err := conn.PrepareContext(ctx, multiInsert(`INSERT INTO keys (user_id, title, key, type, bits, fingerprint_sha256, fingerprint_md5, usage_type, created_at) VALUES `, "(?, 'load key', ?, 'ssh-ed25519', 256, ?, ?, 'auth', ?)", seedBatchRows))
	if err != nil {
		return nil, err
	}
	defer keyStmt.Close()

	var tx *sql.Tx
	inTx := 0
	done := int64(0)
	lastReport := time.Now()
	uargs := make([]any, 0, seedBatchRows*5)
	kargs := make([]any, 0, seedBatchRows*5)
	rollback := func() {
		if tx != nil {
			tx.Rollback()
		}
	}
	for c := int64(0); c*seedBatchRows < n; c++ {
		b, ok := <-results[c%int64(workers)]
		if !ok {
			rollback()
			if genErr != nil {
				return nil, genErr
			}
			return nil, ctx.Err()
		}
		if err := ctx.Err(); err != nil {
			rollback()
			return nil, err
		}
		if tx == nil {
			if tx, err = conn.BeginTx(ctx, nil); err != nil {
				return nil, err
			}
		}
		uargs, kargs = uargs[:0], kargs[:0]
		for j, k := range b.keys {
			num := b.first + int64(j)
			id := nextID + (num - firstK)
			name := fmt.Sprintf("%s%d", usernamePref, num)
			uargs = append(uargs, id, name, name+"@load.invalid", name, createdMS)
			kargs = append(kargs, id, k.text, k.fpSHA, k.fpMD5, createdMS)
		}
		us, ks := tx.StmtContext(ctx, userStmt), tx.StmtContext(ctx, keyStmt)
		if len(b.keys) < seedBatchRows { // the last, short batch
			us, err = tx.PrepareContext(ctx, multiInsert(`INSERT INTO users (id, username, email, name, state, is_admin, created_at) VALUES `, "(?, ?, ?, ?, 'active', 0, ?)", len(b.keys)))
			if err != nil {
				rollback()
				return nil, err
			}
			ks, err = tx.PrepareContext(ctx, multiInsert(`INSERT INTO keys (user_id, title, key, type, bits, fingerprint_sha256, fingerprint_md5, usage_type, created_at) VALUES `, "(?, 'load key', ?, 'ssh-ed25519', 256, ?, ?, 'auth', ?)", len(b.keys)))
			if err != nil {
				rollback()
				return nil, err
			}
		}
		if _, err := us.ExecContext(ctx, uargs...); err != nil {
			rollback()
			return nil, fmt.Errorf("inserting users: %w", err)
		}
		if _, err := ks.ExecContext(ctx, kargs...); err != nil {
			rollback()
			return nil, fmt.Errorf("inserting keys: %w", err)
		}
		inTx += len(b.keys)
		done += int64(len(b.keys))
		if inTx >= seedTxRows || done == n {
			if err := tx.Commit(); err != nil {
				return nil, err
			}
			tx, inTx = nil, 0
		}
		if time.Since(lastReport) >= 2*time.Second || done == n {
			lastReport = time.Now()
			el := time.Since(start)
			fmt.Fprintf(progress, "seeded %d/%d users+keys (%.0f%%) in %s, %.0f/s\n", done, n, 100*float64(done)/float64(n),
				el.Round(time.Millisecond), float64(done)/el.Seconds())
		}
	}
	if _, err := conn.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, `ANALYZE`); err != nil {
		return nil, err
	}
	if opts.WriteKeys != "" && firstPriv != nil {
		blk, err := gossh.MarshalPrivateKey(firstPriv, fmt.Sprintf("%s%d", usernamePref, firstK))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(opts.WriteKeys, pem.EncodeToMemory(blk), 0o600); err != nil {
			return nil, err
		}
	}
	return &SeedResult{DBPath: dbPath, Users: opts.Keys, FirstUser: fmt.Sprintf("%s%d", usernamePref, firstK), Elapsed: time.Since(start)}, nil
}

// makeSeedKey computes the stored form of an ed25519 public key, as
// keystore.ParseUserKey would (no comment).
func makeSeedKey(pub ed25519.PublicKey) seedKey {
	// The SSH wire form of an ed25519 key: string "ssh-ed25519", string key.
	wire := make([]byte, 0, 4+11+4+32)
	wire = append(wire, 0, 0, 0, 11)
	wire = append(wire, "ssh-ed25519"...)
	wire = append(wire, 0, 0, 0, 32)
	wire = append(wire, pub...)
	sha := sha256.Sum256(wire)
	md := md5.Sum(wire)
	hx := hex.EncodeToString(md[:])
	var fmd strings.Builder
	fmd.Grow(47)
	for i := 0; i < len(hx); i += 2 {
		if i > 0 {
			fmd.WriteByte(':')
		}
		fmd.WriteString(hx[i : i+2])
	}
	return seedKey{
		text:  "ssh-ed25519 " + base64.StdEncoding.EncodeToString(wire),
		fpSHA: "SHA256:" + base64.RawStdEncoding.EncodeToString(sha[:]),
		fpMD5: fmd.String(),
	}
}

func multiInsert(prefix, row string, n int) string {
	var b strings.Builder
	b.Grow(len(prefix) + n*(len(row)+2))
	b.WriteString(prefix)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return b.String()
}
