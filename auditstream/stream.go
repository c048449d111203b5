// Package auditstream delivers keygate's audit events from the keystore's
// persistent outbox to the streaming destinations admins added (HTTPS
// POSTs carrying the verification token in X-Gitlab-Event-Streaming-Token,
// as GitLab's audit event streaming does) and, optionally, to a local JSON
// lines file for log shippers.
//
// Every event reaches every destination that wants it at least once and in
// order: a destination's next event is not sent before the one before it
// was delivered (or dropped); its position in the outbox is stored after
// each delivery, so a node killed at any point resends at most the event
// it was sending, with the same id. A destination that fails is retried
// with exponential backoff capped at MaxBackoff; one that has failed for
// longer than DropAfter has its events dropped, each counted in metrics and
// logged, until it answers again. With several nodes on one PostgreSQL one
// node delivers (keystore.StreamLeader); the file sink is each node's own.
package auditstream

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/keystore"
)

// Store is the part of the keystore the streamer uses.
type Store interface {
	TryStreamLeader(ctx context.Context) (*keystore.StreamLeader, error)
	ListStreamDestinations(ctx context.Context, pg keystore.Page) ([]*keystore.StreamDestination, int, error)
	OutboxAfter(ctx context.Context, after int64, limit int) ([]keystore.OutboxEvent, error)
	OutboxPending(ctx context.Context, after int64) (int, error)
	AdvanceStream(ctx context.Context, id, seq int64) error
	RegisterSink(ctx context.Context, name string) (int64, error)
	AdvanceSink(ctx context.Context, name string, seq int64) error
	TrimOutbox(ctx context.Context, staleAfter time.Duration) (int64, error)
}

var _ Store = (*keystore.Store)(nil)

// Config configures a Streamer.
type Config struct {
	Store    Store
	Log      *slog.Logger
	Registry prometheus.Registerer
	// Client posts to destinations (default: 10 s timeout, the system's CA
	// store, which honours SSL_CERT_FILE and SSL_CERT_DIR; no redirects).
	Client *http.Client
	// Poll is how often the outbox and the destinations are read (default 1s).
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts (defaults
	// 30s, and 500ms or a quarter of MaxBackoff if less).
	MinBackoff, MaxBackoff time.Duration
	// DropAfter: a destination failing for longer than this has its events
	// dropped (counted and logged) until it answers again (default 24h).
	DropAfter time.Duration
	// File, when set, is a JSON lines file that receives every event.
	File string
	// Node names this node's file sink in the keystore (default: the
	// file's path).
	Node string
	Now  func() time.Time
}

// Streamer delivers the outbox.
type Streamer struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	// The file sink's place, when Register found it before Run.
	fileCursor     int64
	fileRegistered bool
}

// Register makes the file sink (if any) a consumer of the outbox now, so
// that every event recorded after it returns reaches the file: serve calls
// it before its listeners accept anything. Run registers by itself when
// Register was not called or failed.
func (s *Streamer) Register(ctx context.Context) error {
	if s.cfg.File == "" {
		return nil
	}
	c, err := s.cfg.Store.RegisterSink(ctx, "file:"+s.cfg.Node)
	if err != nil {
		return err
	}
	s.fileCursor, s.fileRegistered = c, true
	return nil
}

// New returns a Streamer; Run starts it.
func New(cfg Config) (*Streamer, error) {
	if cfg.Store == nil {
		return nil, errors.New("auditstream: no store")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = min(500*time.Millisecond, cfg.MaxBackoff/4)
	}
	if cfg.DropAfter <= 0 {
		cfg.DropAfter = 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Node == "" {
		cfg.Node = cfg.File
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	return &Streamer{cfg: cfg, log: cfg.Log, m: m}, nil
}

// Run delivers until ctx ends: the file sink (if any) always, the
// destinations while this node is the streaming leader.
func (s *Streamer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if s.cfg.File != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runFile(ctx)
		}()
	}
	defer wg.Wait()
	for ctx.Err() == nil {
		l, err := s.cfg.Store.TryStreamLeader(ctx)
		switch {
		case err != nil:
			s.log.Warn("audit streaming: cannot claim the streaming lock", "err", err)
		case l == nil:
			// Another node delivers.
		default:
			s.m.leader.Set(1)
			s.lead(ctx, l)
			s.m.leader.Set(0)
			l.Release()
			continue
		}
		sleep(ctx, 5*s.cfg.Poll)
	}
	return nil
}

// worker is one destination's delivery loop.
type worker struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	dest   *keystore.StreamDestination
}

func (w *worker) current() *keystore.StreamDestination {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dest
}

// lead runs one worker per destination while l holds.
func (s *Streamer) lead(ctx context.Context, l *keystore.StreamLeader) {
	workers := map[int64]*worker{}
	stopAll := func() {
		for id, w := range workers {
			w.cancel()
			<-w.done
			delete(workers, id)
		}
	}
	defer stopAll()
	lastTrim := time.Time{}
	for ctx.Err() == nil {
		if !l.Alive(ctx) {
			s.log.Warn("audit streaming: lost the streaming lock (database connection); another node may take over")
			return
		}
		dests, _, err := s.cfg.Store.ListStreamDestinations(ctx, keystore.Page{PerPage: -1})
		if err != nil {
			s.log.Warn("audit streaming: reading destinations", "err", err)
			sleep(ctx, s.cfg.Poll)
			continue
		}
		seen := map[int64]bool{}
		for _, d := range dests {
			seen[d.ID] = true
			if w, ok := workers[d.ID]; ok {
				w.mu.Lock()
				cursor := w.dest.DeliveredSeq
				w.dest = d
				w.dest.DeliveredSeq = cursor
				w.mu.Unlock()
				continue
			}
			wctx, cancel := context.WithCancel(ctx)
			w := &worker{cancel: cancel, done: make(chan struct{}), dest: d}
			workers[d.ID] = w
			go func() {
				defer close(w.done)
				s.deliverLoop(wctx, w)
			}()
		}
		for id, w := range workers {
			if !seen[id] {
				w.cancel()
				<-w.done
				delete(workers, id)
				s.m.forget(destLabel(id))
			}
		}
		if s.cfg.Now().Sub(lastTrim) > 10*s.cfg.Poll {
			lastTrim = s.cfg.Now()
			if _, err := s.cfg.Store.TrimOutbox(ctx, 7*24*time.Hour); err != nil && ctx.Err() == nil {
				s.log.Warn("audit streaming: trimming the outbox", "err", err)
			}
		}
		sleep(ctx, s.cfg.Poll)
	}
}

func destLabel(id int64) string { return strconv.FormatInt(id, 10) }

// deliverLoop delivers the outbox to one destination, in order.
func (s *Streamer) deliverLoop(ctx context.Context, w *worker) {
	d := w.current()
	label := destLabel(d.ID)
	cursor := d.DeliveredSeq
	var failingSince time.Time
	for ctx.Err() == nil {
		evs, err := s.cfg.Store.OutboxAfter(ctx, cursor, 100)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("audit streaming: reading the outbox", "destination_id", d.ID, "err", err)
			}
			sleep(ctx, s.cfg.Poll)
			continue
		}
		if n, err := s.cfg.Store.OutboxPending(ctx, cursor); err == nil {
			s.m.queued.WithLabelValues(label).Set(float64(n))
		}
		if len(evs) == 0 {
			sleep(ctx, s.cfg.Poll)
			continue
		}
		for _, ev := range evs {
			d = w.current()
			if d.Wants(ev.Event.Action) {
				if !s.deliver(ctx, d, label, ev, &failingSince) {
					return // stopped before it was delivered: not advanced
				}
			}
			cursor = ev.Seq
			// Recorded even when ctx just ended (a node stopping): the next
			// leader must not send it again.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			err := s.cfg.Store.AdvanceStream(actx, d.ID, cursor)
			cancel()
			if errors.Is(err, keystore.ErrNotFound) {
				return // deleted
			} else if err != nil {
				// Delivered but not recorded: at worst sent again.
				s.log.Warn("audit streaming: recording delivery", "destination_id", d.ID, "seq", cursor, "err", err)
			}
			w.mu.Lock()
			w.dest.DeliveredSeq = cursor
			w.mu.Unlock()
		}
	}
}

// deliver sends one event until it is delivered or dropped; false when ctx
// ended first.
func (s *Streamer) deliver(ctx context.Context, d *keystore.StreamDestination, label string, ev keystore.OutboxEvent, failingSince *time.Time) bool {
	body, err := payload(ev)
	if err != nil {
		s.m.dropped.WithLabelValues(label).Inc()
		s.log.Error("audit streaming: event dropped: cannot encode it", "destination_id", d.ID, "event_id", ev.Event.ID, "err", err)
		return true
	}
	for attempt := 0; ; attempt++ {
		err := s.post(ctx, d, ev, body)
		if err == nil {
			s.m.delivered.WithLabelValues(label).Inc()
			s.m.lastDelivery.WithLabelValues(label).Set(float64(s.cfg.Now().Unix()))
			if !failingSince.IsZero() {
				s.log.Info("audit streaming: destination answers again", "destination_id", d.ID, "name", d.Name,
					"down_for", s.cfg.Now().Sub(*failingSince).Round(time.Second).String())
				*failingSince = time.Time{}
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		now := s.cfg.Now()
		if failingSince.IsZero() {
			*failingSince = now
			s.log.Warn("audit streaming: destination failing; retrying with backoff", "destination_id", d.ID, "name", d.Name, "event_id", ev.Event.ID, "err", err)
		} else if attempt%20 == 19 {
			s.log.Warn("audit streaming: destination still failing", "destination_id", d.ID, "name", d.Name, "event_id", ev.Event.ID,
				"since", failingSince.UTC().Format(time.RFC3339), "err", err)
		}
		if now.Sub(*failingSince) > s.cfg.DropAfter {
			s.m.dropped.WithLabelValues(label).Inc()
			s.log.Error("audit streaming: event dropped: destination failing for longer than the drop limit",
				"destination_id", d.ID, "name", d.Name, "event_id", ev.Event.ID, "action", ev.Event.Action,
				"failing_since", failingSince.UTC().Format(time.RFC3339), "drop_after", s.cfg.DropAfter.String(), "err", err)
			return true
		}
		s.m.retries.WithLabelValues(label).Inc()
		if !sleep(ctx, s.backoff(attempt)) {
			return false
		}
	}
}

// backoff is the wait after the attempt-th failure: doubling from
// MinBackoff, capped at MaxBackoff, with ±20 % jitter.
func (s *Streamer) backoff(attempt int) time.Duration {
	d := s.cfg.MinBackoff
	for i := 0; i < attempt && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.cfg.MaxBackoff)
	j := time.Duration(rand.Int64N(int64(d)/5*2+1)) - d/5
	return min(d+j, s.cfg.MaxBackoff)
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
