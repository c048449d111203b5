package packcache

import (
	"bufio"
	"bytes"
	"container/list"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/keygate/keygate/keystore"
)

// entry is one pack-objects answer in a file of Dir: a linear file while it
// fits its reservation (cap), a ring of cap bytes once it does not (the
// producer then waits for its slowest reader). Everything but the file's
// bytes is guarded by Cache.mu.
type entry struct {
	key    string
	repoID int64
	f      *os.File
	path   string
	ctx    context.Context
	cancel context.CancelFunc

	cap       int64 // bytes reserved (the ring's size once wrapping)
	written   int64 // bytes produced so far
	wrapping  bool  // written past cap: no new readers, never kept
	producing bool
	done      bool
	indexed   bool
	released  bool
	completed time.Time
	elem      *list.Element
	readers   map[*reader]struct{}
	changed   chan struct{} // closed (and replaced) when written or a position moves
}

type reader struct {
	pos  int64
	cut  bool
	conn net.Conn
}

var errCut = errors.New("packcache: reader cut: it held the producer back")

func (e *entry) broadcastLocked() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// minPosLocked is the slowest live reader's position (written if none).
func (e *entry) minPosLocked() int64 {
	m := e.written
	for r := range e.readers {
		if !r.cut && r.pos < m {
			m = r.pos
		}
	}
	return m
}

// serve answers a request from the cache: joins the entry of its key or
// starts one.
func (c *Cache) serve(req *request, conn *net.UnixConn) {
	key := c.key(req)
	now := c.cfg.Now()
	c.mu.Lock()
	e := c.index[key]
	if e != nil && e.done && now.Sub(e.completed) >= c.cfg.TTL {
		c.evictLocked(e, "ttl")
		e = nil
	}
	kind := "shared"
	switch {
	case e == nil:
		e = c.newEntryLocked(key, req.sess.repoID)
		if e == nil {
			c.mu.Unlock()
			c.count("bypass")
			c.runDirect(req, conn)
			return
		}
		kind = "miss"
	case e.done:
		kind = "hit"
		c.lru.MoveToFront(e.elem)
	}
	r := &reader{conn: conn}
	e.readers[r] = struct{}{}
	c.mu.Unlock()
	c.count(kind)
	if kind == "miss" {
		go c.produce(e, req)
	}
	source := "cache"
	if kind == "miss" {
		source = "pack_objects"
	}
	n, err := c.read(e, r, conn, source)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		c.log.Debug("pack cache: reader ended", "err", err, "bytes", n, "result", kind)
	}
}

// newEntryLocked reserves a first chunk and creates the entry's file, or
// returns nil when there is no room (the request bypasses the cache).
func (c *Cache) newEntryLocked(key string, repoID int64) *entry {
	want := min(c.cfg.MaxEntryBytes, firstChunk)
	got := c.reserveLocked(want)
	if got < min(want, minChunk) {
		c.reserved -= got
		c.m.stored.Set(float64(c.reserved))
		return nil
	}
	f, err := os.CreateTemp(c.cfg.Dir, "pack-")
	if err != nil {
		c.reserved -= got
		c.log.Error("pack cache: creating an entry failed", "err", err)
		return nil
	}
	ctx, cancel := context.WithCancel(c.ctx)
	e := &entry{key: key, repoID: repoID, f: f, path: f.Name(), ctx: ctx, cancel: cancel, cap: got,
		producing: true, indexed: true, readers: map[*reader]struct{}{}, changed: make(chan struct{})}
	c.index[key] = e
	c.m.entries.Set(float64(len(c.index)))
	return e
}

// reserveLocked grants up to want bytes of the total bound, evicting idle
// completed entries (least recently used first) to make room.
func (c *Cache) reserveLocked(want int64) int64 {
	for c.reserved+want > c.cfg.MaxBytes {
		var victim *entry
		for el := c.lru.Back(); el != nil; el = el.Prev() {
			if e := el.Value.(*entry); len(e.readers) == 0 {
				victim = e
				break
			}
		}
		if victim == nil {
			break
		}
		c.evictLocked(victim, "size")
	}
	got := max(min(want, c.cfg.MaxBytes-c.reserved), 0)
	c.reserved += got
	c.m.stored.Set(float64(c.reserved))
	return got
}

// growLocked widens a linear entry towards need (doubling, up to
// MaxEntryBytes and the room left).
func (c *Cache) growLocked(e *entry, need int64) {
	if e.wrapping || e.cap >= c.cfg.MaxEntryBytes {
		return
	}
	target := min(c.cfg.MaxEntryBytes, max(need, 2*e.cap))
	e.cap += c.reserveLocked(target - e.cap)
}

// unindexLocked takes an entry out of the index and the directory; its
// readers keep reading their open file.
func (c *Cache) unindexLocked(e *entry) {
	if !e.indexed {
		return
	}
	e.indexed = false
	delete(c.index, e.key)
	if e.elem != nil {
		c.lru.Remove(e.elem)
		e.elem = nil
	}
	_ = os.Remove(e.path)
	c.m.entries.Set(float64(len(c.index)))
	c.releaseLocked(e)
}

func (c *Cache) evictLocked(e *entry, reason string) {
	if !e.indexed {
		return
	}
	c.m.evictions.WithLabelValues(reason).Inc()
	c.counts.evictions.Add(1)
	c.unindexLocked(e)
}

// releaseLocked gives an entry's reservation back once nothing uses its
// file any more.
func (c *Cache) releaseLocked(e *entry) {
	if e.indexed || e.producing || len(e.readers) > 0 || e.released {
		return
	}
	e.released = true
	_ = e.f.Close()
	c.reserved -= e.cap
	c.m.stored.Set(float64(c.reserved))
}

// produce runs pack-objects into the entry.
func (c *Cache) produce(e *entry, req *request) {
	if c.holdProducer != nil { // tests: let readers gather first
		<-c.holdProducer
	}
	var mu sync.Mutex
	sink := entryWriter{c: c, e: e}
	stdout := bufio.NewWriterSize(framer{typ: frameStdout, mu: &mu, sink: sink}, 64<<10)
	cmd := c.packObjects(e.ctx, req)
	cmd.Stdin = bytes.NewReader(req.stdin)
	cmd.Stdout = stdout
	cmd.Stderr = framer{typ: frameStderr, mu: &mu, sink: sink}
	err := cmd.Run()
	if err == nil {
		err = stdout.Flush()
	}
	code := exitCode(err)
	if e.ctx.Err() == nil {
		if err != nil {
			c.log.Warn("pack cache: pack-objects failed", "err", err, "repo_id", e.repoID)
		}
		if werr := c.appendTo(e, exitFrame(code)); werr != nil && err == nil {
			err = werr
		}
	}
	c.finish(e, err == nil && code == 0 && e.ctx.Err() == nil)
}

func (c *Cache) packObjects(ctx context.Context, req *request) *exec.Cmd {
	args := append([]string{"--git-dir=" + req.sess.dir}, req.global...)
	args = append(append(args, "pack-objects"), req.args...)
	cmd := exec.CommandContext(ctx, c.cfg.GitBin, args...)
	cmd.Env = keystore.GitEnv(c.cfg.GitHome, c.cfg.GitBin)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		return ee.ExitCode()
	}
	return 128
}

// finish ends production: a complete, successful pack that never wrapped
// stays in the index (its reservation shrunk to its size) for TTL.
func (c *Cache) finish(e *entry, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.done, e.producing = true, false
	switch {
	case ok && e.indexed && !e.wrapping:
		c.reserved -= e.cap - e.written
		e.cap = e.written
		c.m.stored.Set(float64(c.reserved))
		e.completed = c.cfg.Now()
		e.elem = c.lru.PushFront(e)
	default:
		c.unindexLocked(e)
	}
	e.broadcastLocked()
	c.releaseLocked(e)
}

type entryWriter struct {
	c *Cache
	e *entry
}

func (w entryWriter) Write(p []byte) (int, error) {
	if err := w.c.appendTo(w.e, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

var errAbandoned = errors.New("packcache: entry abandoned")

// appendTo writes produced bytes: it grows the reservation while it can,
// then wraps the ring, waiting for the slowest reader and cutting readers
// that hold it back for ReaderTimeout.
func (c *Cache) appendTo(e *entry, p []byte) error {
	var stuckPos int64 = -1
	var stuckSince time.Time
	for len(p) > 0 {
		c.mu.Lock()
		var free int64
		for {
			if e.ctx.Err() != nil {
				c.mu.Unlock()
				return errAbandoned
			}
			if e.written+int64(len(p)) > e.cap {
				c.growLocked(e, e.written+int64(len(p)))
			}
			slowest := e.minPosLocked()
			if free = e.cap - (e.written - slowest); free > 0 {
				break
			}
			now := time.Now()
			if slowest != stuckPos {
				stuckPos, stuckSince = slowest, now
			}
			wait := c.cfg.ReaderTimeout - now.Sub(stuckSince)
			if wait <= 0 {
				for r := range e.readers {
					if !r.cut && r.pos == slowest {
						r.cut = true
						_ = r.conn.Close()
						c.m.cut.Inc()
						c.counts.cut.Add(1)
						c.log.Info("pack cache: reader cut: it made no progress while the producer waited",
							"repo_id", e.repoID, "reader_timeout", c.cfg.ReaderTimeout)
					}
				}
				e.broadcastLocked()
				continue
			}
			ch := e.changed
			c.mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-ch:
			case <-t.C:
			case <-e.ctx.Done():
			}
			t.Stop()
			c.mu.Lock()
		}
		if e.written >= e.cap && !e.wrapping {
			// Overwriting the beginning: nobody new can start from it.
			e.wrapping = true
			c.unindexLocked(e)
		}
		off := e.written % e.cap
		n := min(int64(len(p)), free, e.cap-off)
		c.mu.Unlock()
		if _, err := e.f.WriteAt(p[:n], off); err != nil {
			c.log.Error("pack cache: writing an entry failed", "err", err)
			e.cancel()
			return err
		}
		c.mu.Lock()
		e.written += n
		e.broadcastLocked()
		c.mu.Unlock()
		c.m.generated.Add(float64(n))
		p = p[n:]
	}
	return nil
}

// read copies the entry to one reader's connection from its own position.
func (c *Cache) read(e *entry, r *reader, w io.Writer, source string) (int64, error) {
	served := c.m.servedBytes.WithLabelValues(source)
	defer func() {
		c.mu.Lock()
		delete(e.readers, r)
		if len(e.readers) == 0 && !e.done {
			// Nobody left to answer: stop pack-objects, forget the entry.
			e.cancel()
			c.unindexLocked(e)
		}
		e.broadcastLocked()
		c.releaseLocked(e)
		c.mu.Unlock()
	}()
	buf := make([]byte, 256<<10)
	var total int64
	for {
		c.mu.Lock()
		for r.pos == e.written && !e.done && !r.cut && e.ctx.Err() == nil {
			ch := e.changed
			c.mu.Unlock()
			select {
			case <-ch:
			case <-e.ctx.Done():
			}
			c.mu.Lock()
		}
		switch {
		case r.cut:
			c.mu.Unlock()
			return total, errCut
		case r.pos == e.written && e.done:
			c.mu.Unlock()
			return total, nil
		case r.pos == e.written:
			c.mu.Unlock()
			return total, errAbandoned
		}
		off := r.pos % e.cap
		n := min(e.written-r.pos, int64(len(buf)), e.cap-off)
		c.mu.Unlock()
		if _, err := e.f.ReadAt(buf[:n], off); err != nil {
			return total, err
		}
		c.mu.Lock()
		cut := r.cut // cut readers' bytes may have been overwritten
		c.mu.Unlock()
		if cut {
			return total, errCut
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return total, err
		}
		total += n
		served.Add(float64(n))
		if source == "cache" {
			c.counts.served.Add(n)
		}
		c.mu.Lock()
		r.pos += n
		e.broadcastLocked()
		c.mu.Unlock()
	}
}

// runDirect answers a request without the cache (no room, or an input too
// large to key): pack-objects writes straight to the hook.
func (c *Cache) runDirect(req *request, conn *net.UnixConn) {
	var mu sync.Mutex
	stdout := bufio.NewWriterSize(framer{typ: frameStdout, mu: &mu, sink: conn}, 64<<10)
	cmd := c.packObjects(req.sess.ctx, req)
	var stdin io.Reader = bytes.NewReader(req.stdin)
	if req.more != nil {
		stdin = io.MultiReader(stdin, req.more)
	}
	cmd.Stdin = stdin
	cmd.Stdout = stdout
	cmd.Stderr = framer{typ: frameStderr, mu: &mu, sink: conn}
	err := cmd.Run()
	if err == nil {
		err = stdout.Flush()
	}
	_, _ = conn.Write(exitFrame(exitCode(err)))
}

// stdinReader reads the rest of a hook's stdin frames.
type stdinReader struct {
	conn    net.Conn
	pending []byte
	eof     bool
	buf     []byte
}

func (s *stdinReader) Read(p []byte) (int, error) {
	for len(s.pending) == 0 {
		if s.eof {
			return 0, io.EOF
		}
		typ, b, err := readFrame(s.conn, s.buf, maxFrame)
		if err != nil {
			return 0, err
		}
		s.buf = b[:0]
		switch typ {
		case frameStdin:
			s.pending = b
		case frameStdinEOF:
			s.eof = true
		default:
			return 0, errors.New("packcache: protocol error")
		}
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

func (c *Cache) count(result string) {
	c.m.requests.WithLabelValues(result).Inc()
	c.counts.request(result)
}
