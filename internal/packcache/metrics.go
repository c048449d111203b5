package packcache

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats are the cache's counters since it started.
type Stats struct {
	Hits, Shared, Misses, Bypassed int64
	// ServedFromCache is the bytes hits and shared requests received.
	ServedFromCache int64
	Evictions       int64
	ReadersCut      int64
	// Bytes is what the cache holds on disk now; Entries what it indexes.
	Bytes   int64
	Entries int
}

type counts struct {
	hits, shared, misses, bypassed, served, evictions, cut atomic.Int64
}

func (c *counts) request(result string) {
	switch result {
	case "hit":
		c.hits.Add(1)
	case "shared":
		c.shared.Add(1)
	case "miss":
		c.misses.Add(1)
	case "bypass":
		c.bypassed.Add(1)
	}
}

type metrics struct {
	requests    *prometheus.CounterVec
	servedBytes *prometheus.CounterVec
	generated   prometheus.Counter
	evictions   *prometheus.CounterVec
	cut         prometheus.Counter
	stored      prometheus.Gauge
	entries     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_pack_cache_requests_total",
			Help: "pack-objects requests of upload-pack by result: hit (a completed pack), shared (joined one in flight), miss (ran pack-objects), bypass (no room, or an input too large to key: ran uncached).",
		}, []string{"result"}),
		servedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_pack_cache_served_bytes_total",
			Help: "Bytes of pack-objects output sent to upload-pack through the cache, by source: cache (hits and shared requests: not computed again) or pack_objects (the request that ran it).",
		}, []string{"source"}),
		generated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keygate_pack_cache_generated_bytes_total", Help: "Bytes pack-objects produced into cache entries.",
		}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_pack_cache_evictions_total",
			Help: "Cache entries dropped, by reason: ttl (older than --pack-cache-ttl), size (room for newer ones), push (their repository changed).",
		}, []string{"reason"}),
		cut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keygate_pack_cache_readers_cut_total", Help: "Readers cut because they made no progress for the reader timeout while a pack's producer waited for them.",
		}),
		stored: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keygate_pack_cache_bytes", Help: "Bytes the cache holds on disk (entries in flight and completed), at most --pack-cache-max-bytes.",
		}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keygate_pack_cache_entries", Help: "Entries new requests can join or hit.",
		}),
	}
	for _, r := range []string{"hit", "shared", "miss", "bypass"} {
		m.requests.WithLabelValues(r)
	}
	for _, s := range []string{"cache", "pack_objects"} {
		m.servedBytes.WithLabelValues(s)
	}
	for _, r := range []string{"ttl", "size", "push"} {
		m.evictions.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.servedBytes, m.generated, m.evictions, m.cut, m.stored, m.entries} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{
		Hits: c.counts.hits.Load(), Shared: c.counts.shared.Load(), Misses: c.counts.misses.Load(),
		Bypassed: c.counts.bypassed.Load(), ServedFromCache: c.counts.served.Load(),
		Evictions: c.counts.evictions.Load(), ReadersCut: c.counts.cut.Load(),
		Bytes: c.reserved, Entries: len(c.index),
	}
}
