package auditstream

import (
	"context"
	"os"
	"time"
)

// runFile appends every event, one JSON object a line, to the file sink,
// and records its place after each batch is on disk (fsync): a crash
// between the two writes a batch again, with the same event ids.
func (s *Streamer) runFile(ctx context.Context) {
	const label = "file"
	name := "file:" + s.cfg.Node
	cursor := s.fileCursor
	for !s.fileRegistered {
		c, err := s.cfg.Store.RegisterSink(ctx, name)
		if err == nil {
			cursor = c
			break
		}
		s.log.Warn("audit streaming: registering the file sink", "file", s.cfg.File, "err", err)
		if !sleep(ctx, s.cfg.Poll) {
			return
		}
	}
	lastSeen := s.cfg.Now()
	for ctx.Err() == nil {
		evs, err := s.cfg.Store.OutboxAfter(ctx, cursor, 500)
		if err != nil {
			sleep(ctx, s.cfg.Poll)
			continue
		}
		if n, err := s.cfg.Store.OutboxPending(ctx, cursor); err == nil {
			s.m.queued.WithLabelValues(label).Set(float64(n))
		}
		if len(evs) == 0 {
			// Tell the keystore this sink is alive (stale sinks are forgotten).
			if s.cfg.Now().Sub(lastSeen) > time.Hour {
				if err := s.cfg.Store.AdvanceSink(ctx, name, cursor); err == nil {
					lastSeen = s.cfg.Now()
				}
			}
			sleep(ctx, s.cfg.Poll)
			continue
		}
		var buf []byte
		for _, ev := range evs {
			b, err := payload(ev)
			if err != nil {
				s.m.dropped.WithLabelValues(label).Inc()
				s.log.Error("audit streaming: event dropped: cannot encode it", "event_id", ev.Event.ID, "err", err)
				continue
			}
			buf = append(append(buf, b...), '\n')
		}
		if err := appendSync(s.cfg.File, buf); err != nil {
			s.m.retries.WithLabelValues(label).Inc()
			s.log.Warn("audit streaming: writing the file sink", "file", s.cfg.File, "err", err)
			sleep(ctx, s.backoff(0))
			continue
		}
		s.m.delivered.WithLabelValues(label).Add(float64(len(evs)))
		s.m.lastDelivery.WithLabelValues(label).Set(float64(s.cfg.Now().Unix()))
		cursor = evs[len(evs)-1].Seq
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err = s.cfg.Store.AdvanceSink(actx, name, cursor)
		cancel()
		if err != nil {
			s.log.Warn("audit streaming: recording the file sink's place", "err", err)
		} else {
			lastSeen = s.cfg.Now()
		}
	}
}

func appendSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
