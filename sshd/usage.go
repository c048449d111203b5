package sshd

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// usageBatcher collects key uses and writes last_used_at in batches, off
// the authentication path.
type usageBatcher struct {
	rec  UsageRecorder
	log  *slog.Logger
	now  func() time.Time
	mu   sync.Mutex
	used map[int64]time.Time
}

func newUsageBatcher(rec UsageRecorder, log *slog.Logger, now func() time.Time) *usageBatcher {
	return &usageBatcher{rec: rec, log: log, now: now, used: map[int64]time.Time{}}
}

func (b *usageBatcher) record(keyID int64) {
	if b.rec == nil {
		return
	}
	b.mu.Lock()
	b.used[keyID] = b.now()
	b.mu.Unlock()
}

func (b *usageBatcher) run(done <-chan struct{}) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			b.flush()
		}
	}
}

func (b *usageBatcher) flush() {
	if b.rec == nil {
		return
	}
	b.mu.Lock()
	batch := b.used
	b.used = map[int64]time.Time{}
	b.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.rec.TouchKeys(ctx, batch); err != nil {
		b.log.Warn("recording key use failed", "keys", len(batch), "err", err)
	}
}
