package authindex

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/keygate/keygate/keystore"
)

// FeedConfig configures a Feed.
type FeedConfig struct {
	// PollInterval is how often the change log is read even without a
	// notification (default 250 ms). A lost notification or a dropped
	// connection delays a change by at most this much once the database
	// answers again.
	PollInterval time.Duration
	// GapGrace is how long a missing change number may stay missing (its
	// transaction could still commit) before the index is reloaded
	// (default 1 s). A change whose Apply keeps failing for this long also
	// causes a reload.
	GapGrace time.Duration
	// QueryTimeout bounds each read of the change log (default 5 s), so an
	// unreachable database is noticed rather than waited on.
	QueryTimeout time.Duration
	// Listen waits for change notifications, calling wake for each, until
	// ctx ends or its connection fails. Nil means the store's
	// ListenChanges; a Listen that returns ErrListenUnsupported leaves the
	// feed polling only.
	Listen func(ctx context.Context, wake func()) error
	// Log receives feed errors; nil discards them.
	Log *slog.Logger
	// Now is the feed's clock for every decision (lag, gap grace, the
	// listener's backoff); nil means time.Now. Waits run on real time.
	Now func() time.Time
}

// FeedStatus is what a Feed reports about the index it keeps in sync.
type FeedStatus struct {
	// Applied is the sequence number of the last change applied (every
	// change up to it is applied).
	Applied int64
	// Lag is how far behind the index is: the time since the oldest
	// committed change not yet applied, or, while the database cannot be
	// read, since the last successful read; 0 when caught up.
	Lag time.Duration
	// DatabaseReachable reports whether the last read of the change log
	// succeeded.
	DatabaseReachable bool
	// LastPoll is when the change log was last read successfully.
	LastPoll time.Time
	// Reloads counts full reloads (gap or persistent Apply failure).
	Reloads uint64
	// Errors counts failed change-log reads, Apply failures, listener
	// failures and failed reloads.
	Errors uint64
}

// Feed keeps an Index in sync with changes committed by other processes
// sharing the database: it wakes on change notifications (PostgreSQL
// LISTEN/NOTIFY) and polls the change log every PollInterval, applying
// changes strictly in sequence order. A gap in the sequence that outlives
// GapGrace, or an Apply that keeps failing, is healed by a full reload built
// off to the side, so lookups never see a half-built index. While the
// database is unreachable the index keeps serving what it has.
//
// Writes made through the index's own store keep their read-your-writes
// path (Index.Follow); the feed re-applies what they did not cover.
type Feed struct {
	ix     *Index
	cfg    FeedConfig
	listen func(ctx context.Context, wake func()) error
	wake   chan struct{}

	mu        sync.Mutex
	reachable bool
	lastPoll  time.Time
	// pendingSeq/pendingAt: the oldest change known committed but not
	// applied at the last read (0: none).
	pendingSeq int64
	pendingAt  time.Time
	gapSince   time.Time // when the current gap or Apply failure began
	failSeq    int64     // the change whose Apply is failing
	reloads    uint64
	errors     uint64
}

// NewFeed returns a feed for ix. Call Run to start it.
func NewFeed(ix *Index, cfg FeedConfig) *Feed {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 250 * time.Millisecond
	}
	if cfg.GapGrace <= 0 {
		cfg.GapGrace = time.Second
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	f := &Feed{ix: ix, cfg: cfg, listen: cfg.Listen, wake: make(chan struct{}, 1), reachable: true, lastPoll: cfg.Now()}
	if f.listen == nil {
		f.listen = ix.src.ListenChanges
	}
	return f
}

// Wake makes the feed read the change log now.
func (f *Feed) Wake() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Run follows the change log until ctx ends; it returns nil then.
func (f *Feed) Run(ctx context.Context) error {
	f.ix.setRetry(f.Wake)
	defer func() {
		f.ix.setRetry(nil)
	}()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.listenLoop(ctx)
	}()
	defer wg.Wait()
	t := time.NewTicker(f.cfg.PollInterval)
	defer t.Stop()
	for {
		f.Step(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-f.wake:
		}
	}
}

// listenLoop keeps a notification listener running, retrying with backoff.
func (f *Feed) listenLoop(ctx context.Context) {
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	for ctx.Err() == nil {
		started := f.cfg.Now()
		// Changes may have been missed while no listener ran.
		f.Wake()
		err := f.listen(ctx, f.Wake)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, keystore.ErrListenUnsupported) {
			return // this database has no notifications: polling only
		}
		f.count(func() { f.errors++ })
		f.cfg.Log.Warn("change notifications interrupted; polling meanwhile", "err", err, "retry_in", backoff)
		if f.cfg.Now().Sub(started) > 30*time.Second {
			backoff = minBackoff
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func (f *Feed) count(fn func()) {
	f.mu.Lock()
	fn()
	f.mu.Unlock()
}

// Step reads the change log once and applies what it finds, reloading the
// index if a gap or a failing change has outlived the grace period.
func (f *Feed) Step(ctx context.Context) {
	for ctx.Err() == nil {
		more, err := f.step(ctx)
		if err != nil || !more {
			return
		}
	}
}

const feedBatch = 1000

// step handles one batch; more reports whether a full batch was read.
func (f *Feed) step(ctx context.Context) (more bool, err error) {
	qctx, cancel := context.WithTimeout(ctx, f.cfg.QueryTimeout)
	defer cancel()
	applied := f.ix.Applied()
	changes, err := f.ix.src.ChangesSince(qctx, applied, feedBatch)
	now := f.cfg.Now()
	if err != nil {
		if ctx.Err() != nil {
			return false, err
		}
		f.mu.Lock()
		if f.reachable {
			f.cfg.Log.Warn("change log unreadable; the auth index keeps serving what it has", "err", err)
		}
		f.reachable = false
		f.errors++
		f.mu.Unlock()
		return false, err
	}
	f.mu.Lock()
	if !f.reachable {
		f.cfg.Log.Info("change log readable again", "applied", applied)
	}
	f.reachable = true
	f.lastPoll = now
	f.pendingSeq = 0
	if len(changes) > 0 {
		f.pendingSeq, f.pendingAt = changes[0].Seq, changes[0].At
	}
	f.mu.Unlock()

	for i, c := range changes {
		applied = f.ix.Applied()
		if c.Seq <= applied {
			continue // applied meanwhile by a local write
		}
		f.setPending(c)
		if c.Seq != applied+1 {
			// A missing change number: its transaction may not have
			// committed yet. Wait up to the grace period, then reload.
			return f.trouble(ctx, applied+1, now, "gap in the change log", nil)
		}
		if err := f.ix.Apply(qctx, c); err != nil {
			if ctx.Err() != nil {
				return false, err
			}
			f.count(func() { f.errors++ })
			return f.trouble(ctx, c.Seq, now, "applying a change failed", err)
		}
		f.mu.Lock()
		if f.failSeq != 0 || !f.gapSince.IsZero() {
			f.failSeq, f.gapSince = 0, time.Time{}
		}
		if i == len(changes)-1 {
			f.pendingSeq = 0
		}
		f.mu.Unlock()
	}
	return len(changes) == feedBatch, nil
}

func (f *Feed) setPending(c keystore.Change) {
	f.mu.Lock()
	f.pendingSeq, f.pendingAt = c.Seq, c.At
	f.mu.Unlock()
}

// trouble notes that change seq cannot be applied yet; once that has lasted
// GapGrace it reloads the index. reloaded reports a successful reload (the
// caller then catches up at once).
func (f *Feed) trouble(ctx context.Context, seq int64, now time.Time, what string, cause error) (reloaded bool, err error) {
	f.mu.Lock()
	if f.failSeq != seq || f.gapSince.IsZero() {
		f.failSeq, f.gapSince = seq, now
	}
	since := f.gapSince
	f.mu.Unlock()
	if now.Sub(since) < f.cfg.GapGrace {
		if cause == nil {
			cause = errGap
		}
		return false, cause
	}
	f.cfg.Log.Warn("reloading the auth index", "reason", what, "seq", seq, "err", cause)
	if err := f.Reload(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// errGap stops a step at a missing change number.
var errGap = errors.New("keystore: gap in the change log")

// Reload rebuilds the index from the database off to the side and swaps it
// in; on failure the index keeps serving what it had.
func (f *Feed) Reload(ctx context.Context) error {
	start := time.Now()
	err := f.ix.reload(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.errors++
		f.cfg.Log.Error("reloading the auth index failed; it keeps serving what it had", "err", err)
		return err
	}
	f.reloads++
	f.failSeq, f.gapSince = 0, time.Time{}
	f.cfg.Log.Info("auth index reloaded", "applied", f.ix.Applied(), "keys", f.ix.Len(), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Status reports the feed's view of the index.
func (f *Feed) Status() FeedStatus {
	applied := f.ix.Applied()
	now := f.cfg.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	st := FeedStatus{
		Applied:           applied,
		DatabaseReachable: f.reachable,
		LastPoll:          f.lastPoll,
		Reloads:           f.reloads,
		Errors:            f.errors,
	}
	switch {
	case !f.reachable:
		st.Lag = now.Sub(f.lastPoll)
	case f.pendingSeq != 0 && f.pendingSeq > applied:
		st.Lag = now.Sub(f.pendingAt)
	}
	if st.Lag < 0 {
		st.Lag = 0
	}
	return st
}
