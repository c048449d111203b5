// Package packcache shares one git pack-objects among identical
// upload-pack requests (clone storms) and keeps completed packs for a while.
//
// keygate runs upload-pack with -c uploadpack.packObjectsHook=<hook>, the
// keygate binary in hook mode (HookMain). git honours that setting only
// from protected configuration (the command line, not the repository), so
// only keygate can set it. upload-pack runs the hook with pack-objects'
// arguments and input; the hook hands both, with the token of the session
// it belongs to, to the serving process over a private unix socket. The
// Cache keys the request by the repository (project id, directory, push
// generation, the pack directory's and packed-refs' state), pack-objects'
// arguments and its whole input (wants, haves, shallow lines; the filter is
// an argument), runs one pack-objects per key and fans its output out to
// every identical request: each reader has its own position in the entry's
// file, the producer never waits for a reader while the entry fits its
// bound, and a reader that holds a full ring back for ReaderTimeout is cut.
//
// Safe by construction: a token exists only while an authorized git
// session runs (Attach is called after the access decision and released
// when the session ends or is revoked), the token — never the hook —
// names the repository, and the repository is part of every key.
package packcache

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/keystore"
)

// HookCommand is the first argument that puts the keygate binary (or a
// test binary) in hook mode: `keygate pack-objects-hook git pack-objects …`.
const HookCommand = "pack-objects-hook"

// The hook finds the serving process and proves its session through these
// variables, which keygate adds to upload-pack's sealed environment (never
// to its command line, which other local accounts can read).
const (
	envSocket = "KEYGATE_PACK_CACHE_SOCKET"
	envToken  = "KEYGATE_PACK_CACHE_TOKEN"
)

// Defaults (keygate serve's flags).
const (
	DefaultMaxBytes      = 1 << 30
	DefaultMaxEntryBytes = 256 << 20
	DefaultTTL           = 5 * time.Minute
	DefaultReaderTimeout = 30 * time.Second
)

const (
	maxStdinBuffered = 16 << 20 // larger inputs bypass the cache
	firstChunk       = 1 << 20  // an entry's first reservation
	minChunk         = 64 << 10 // below this an entry is not worth a file
	requestTimeout   = time.Minute
)

// Config configures a Cache.
type Config struct {
	// Dir holds the entries' files and the socket; it is emptied at start
	// (nothing of an earlier run is ever served) and created 0700.
	Dir string
	// HookBin is the executable upload-pack runs in hook mode (default: this
	// process's own executable).
	HookBin string
	// GitBin and GitHome run pack-objects as keygate runs every git
	// (keystore.GitEnv).
	GitBin, GitHome string
	// MaxBytes bounds the bytes of all entries (in flight and completed) on
	// disk; MaxEntryBytes bounds one entry (a larger pack is still shared
	// while it is produced, through a ring of this size, but not kept).
	MaxBytes, MaxEntryBytes int64
	// TTL is how long a completed pack is served after it was produced.
	TTL time.Duration
	// ReaderTimeout: a reader that made no progress for this long while the
	// producer waited for it (its ring full) is cut.
	ReaderTimeout time.Duration
	Log           *slog.Logger
	// Registry gets the cache's metrics (optional).
	Registry prometheus.Registerer
	// Now is the clock of TTLs (default time.Now).
	Now func() time.Time
}

// Cache is the serving process's side: the socket, the sessions and the
// entries.
type Cache struct {
	cfg      Config
	log      *slog.Logger
	ln       *net.UnixListener
	sockPath string
	sockDir  string // a short private directory for the socket, when Dir's path is too long
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	m        *metrics
	counts   counts

	mu       sync.Mutex
	sessions map[string]*session
	index    map[string]*entry
	lru      *list.List // completed entries in the index, most recently used first
	gen      map[int64]uint64
	reserved int64

	holdProducer chan struct{} // tests only
}

type session struct {
	ctx    context.Context
	repoID int64
	dir    string
}

// New empties and prepares cfg.Dir, listens on its socket and serves hook
// requests until Close.
func New(cfg Config) (*Cache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("packcache: no directory")
	}
	if cfg.MaxBytes <= 0 || cfg.MaxEntryBytes <= 0 || cfg.TTL <= 0 || cfg.ReaderTimeout <= 0 {
		return nil, errors.New("packcache: bounds, TTL and reader timeout must be positive")
	}
	if cfg.MaxEntryBytes > cfg.MaxBytes {
		cfg.MaxEntryBytes = cfg.MaxBytes
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.GitBin == "" {
		cfg.GitBin = "git"
	}
	var err error
	if cfg.GitBin, err = keystore.ResolveGit(cfg.GitBin); err != nil {
		return nil, fmt.Errorf("packcache: git: %w", err)
	}
	if cfg.HookBin == "" {
		if cfg.HookBin, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("packcache: own executable: %w", err)
		}
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	// Nothing of an earlier run survives: entries in flight at a crash are
	// partial, and none is known to this process.
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("packcache: clearing %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("packcache: %w", err)
	}
	cfg.Dir = dir
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	c := &Cache{cfg: cfg, log: cfg.Log, m: m, sessions: map[string]*session{}, index: map[string]*entry{},
		lru: list.New(), gen: map[int64]uint64{}}
	c.sockPath = filepath.Join(dir, "hook.sock")
	if len(c.sockPath) > 100 { // sun_path holds 108 bytes
		if c.sockDir, err = os.MkdirTemp("", "keygate-pc-"); err != nil {
			return nil, err
		}
		c.sockPath = filepath.Join(c.sockDir, "s")
	}
	c.ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: c.sockPath, Net: "unix"})
	if err != nil {
		c.removeSockDir()
		return nil, fmt.Errorf("packcache: listen: %w", err)
	}
	if err := os.Chmod(c.sockPath, 0o600); err != nil {
		c.ln.Close()
		c.removeSockDir()
		return nil, err
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(2)
	go c.accept()
	go c.janitor()
	return c, nil
}

func (c *Cache) removeSockDir() {
	if c.sockDir != "" {
		_ = os.RemoveAll(c.sockDir)
	}
}

// Close stops serving, ends every entry and removes the directory.
func (c *Cache) Close() error {
	c.cancel()
	err := c.ln.Close()
	c.wg.Wait()
	c.mu.Lock()
	for _, e := range c.index {
		c.unindexLocked(e)
	}
	c.mu.Unlock()
	c.removeSockDir()
	_ = os.RemoveAll(c.cfg.Dir)
	return err
}

// Attach prepares one upload-pack run on a repository whose access decision
// passed: args go before git's subcommand, env is added to git's sealed
// environment, release ends the session (its hook requests are cut).
func (c *Cache) Attach(ctx context.Context, repoID int64, dir string) (args, env []string, release func()) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	c.mu.Lock()
	c.sessions[token] = &session{ctx: ctx, repoID: repoID, dir: dir}
	c.mu.Unlock()
	hook := shellQuote(c.cfg.HookBin) + " " + HookCommand
	return keystore.PackObjectsHookArgs(hook), []string{envSocket + "=" + c.sockPath, envToken + "=" + token}, func() {
		c.mu.Lock()
		delete(c.sessions, token)
		c.mu.Unlock()
	}
}

// Invalidate makes every pack of a repository stale at once (a push began or
// ended): completed entries are dropped, entries in flight finish for their
// readers but take no new ones, and later requests key on a new generation.
func (c *Cache) Invalidate(repoID int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen[repoID]++
	for _, e := range c.index {
		if e.repoID == repoID {
			c.evictLocked(e, "push")
		}
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (c *Cache) accept() {
	defer c.wg.Done()
	for {
		conn, err := c.ln.AcceptUnix()
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			c.log.Warn("pack cache: accept failed", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer conn.Close()
			c.handle(conn)
		}()
	}
}

func (c *Cache) janitor() {
	defer c.wg.Done()
	tick := min(max(c.cfg.TTL/2, 10*time.Millisecond), 30*time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			now := c.cfg.Now()
			c.mu.Lock()
			for el := c.lru.Back(); el != nil; {
				prev := el.Prev()
				if e := el.Value.(*entry); now.Sub(e.completed) >= c.cfg.TTL {
					c.evictLocked(e, "ttl")
				}
				el = prev
			}
			c.mu.Unlock()
		}
	}
}

// request is one hook call: what pack-objects would have run.
type request struct {
	sess   *session
	args   []string // pack-objects' flags
	global []string // git's options before pack-objects (--shallow-file "")
	stdin  []byte
	more   *stdinReader // the rest of a stdin too large to buffer, or nil
}

// handle serves one hook connection.
func (c *Cache) handle(conn *net.UnixConn) {
	_ = conn.SetReadDeadline(time.Now().Add(requestTimeout))
	req, err := c.readRequest(conn)
	if err != nil {
		var pe *protocolError
		if errors.As(err, &pe) {
			_ = writeFrame(conn, frameError, []byte(pe.msg))
		}
		c.log.Info("pack cache: hook request refused", "err", err)
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	// The session's end (its client gone, its access revoked) cuts this
	// request, whatever it waits for.
	stop := context.AfterFunc(req.sess.ctx, func() { _ = conn.Close() })
	defer stop()
	if req.more != nil {
		c.count("bypass")
		c.runDirect(req, conn)
		return
	}
	c.serve(req, conn)
}

func (c *Cache) readRequest(conn *net.UnixConn) (*request, error) {
	typ, p, err := readFrame(conn, nil, maxFrame)
	if err != nil {
		return nil, err
	}
	if typ != frameHello {
		return nil, refusef("keygate: pack cache: protocol error")
	}
	parts := strings.Split(string(p), "\x00")
	c.mu.Lock()
	sess := c.sessions[parts[0]]
	c.mu.Unlock()
	if sess == nil || sess.ctx.Err() != nil {
		return nil, refusef("keygate: pack cache: no such session")
	}
	global, args, err := parseArgs(parts[1:])
	if err != nil {
		return nil, refusef("keygate: pack cache: %v", err)
	}
	req := &request{sess: sess, global: global, args: args}
	buf := make([]byte, 64<<10)
	for {
		typ, p, err := readFrame(conn, buf, maxFrame)
		if err != nil {
			return nil, err
		}
		switch typ {
		case frameStdinEOF:
			return req, nil
		case frameStdin:
			if len(req.stdin)+len(p) > maxStdinBuffered {
				req.more = &stdinReader{conn: conn, pending: append([]byte(nil), p...)}
				return req, nil
			}
			req.stdin = append(req.stdin, p...)
		default:
			return nil, refusef("keygate: pack cache: protocol error")
		}
	}
}

// parseArgs checks what upload-pack asks for: git [--shallow-file ""]
// pack-objects --stdout and flags only (never a path, never another
// command).
func parseArgs(a []string) (global, args []string, err error) {
	if len(a) == 0 || a[0] != "git" {
		return nil, nil, errors.New("not a git command")
	}
	a = a[1:]
	if len(a) >= 2 && a[0] == "--shallow-file" && a[1] == "" {
		global = []string{"--shallow-file", ""}
		a = a[2:]
	}
	if len(a) == 0 || a[0] != "pack-objects" {
		return nil, nil, errors.New("not pack-objects")
	}
	stdout := false
	for _, f := range a[1:] {
		if !strings.HasPrefix(f, "-") || strings.ContainsRune(f, '\n') {
			return nil, nil, fmt.Errorf("unexpected argument %q", f)
		}
		stdout = stdout || f == "--stdout"
	}
	if !stdout {
		return nil, nil, errors.New("pack-objects without --stdout")
	}
	return global, a[1:], nil
}

// key is everything that changes the pack: the repository (its project,
// directory, push generation and the state of its packs and packed refs),
// pack-objects' options and its whole input.
func (c *Cache) key(req *request) string {
	c.mu.Lock()
	gen := c.gen[req.sess.repoID]
	c.mu.Unlock()
	h := sha256.New()
	field := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field("keygate-pack-cache-1")
	field(fmt.Sprint(req.sess.repoID, " ", gen))
	field(req.sess.dir)
	diskState(h, req.sess.dir)
	field(strings.Join(req.global, "\x00"))
	field(strings.Join(req.args, "\x00"))
	field(string(req.stdin))
	return hex.EncodeToString(h.Sum(nil))
}

// diskState adds what a repack, a gc or a ref update outside keygate
// changes: the pack directory and packed-refs.
func diskState(h hash.Hash, dir string) {
	for _, name := range []string{"objects/pack", "packed-refs", "objects/info/alternates", "shallow"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			fmt.Fprintf(h, "%s:-;", name)
			continue
		}
		var ino uint64
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
		}
		fmt.Fprintf(h, "%s:%d:%d:%d;", name, fi.ModTime().UnixNano(), fi.Size(), ino)
	}
}
