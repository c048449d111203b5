package auditstream

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	queued       *prometheus.GaugeVec
	delivered    *prometheus.CounterVec
	retries      *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	lastDelivery *prometheus.GaugeVec
	leader       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	dest := []string{"destination"}
	m := &metrics{
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keygate_audit_stream_queued", Help: "Audit events in the outbox not yet delivered, by destination (its id, or \"file\" for the file sink).",
		}, dest),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_audit_stream_delivered_total", Help: "Audit events delivered, by destination.",
		}, dest),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_audit_stream_retries_total", Help: "Failed delivery attempts that were retried, by destination.",
		}, dest),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_audit_stream_dropped_total", Help: "Audit events dropped (the destination failed for longer than the drop limit), by destination.",
		}, dest),
		lastDelivery: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keygate_audit_stream_last_delivery_timestamp_seconds", Help: "When an event was last delivered, by destination (Unix seconds).",
		}, dest),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keygate_audit_stream_leader", Help: "1 while this node delivers to the streaming destinations (one node of a cluster does).",
		}),
	}
	for _, c := range []prometheus.Collector{m.queued, m.delivered, m.retries, m.dropped, m.lastDelivery, m.leader} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// forget drops a deleted destination's series.
func (m *metrics) forget(label string) {
	m.queued.DeleteLabelValues(label)
	m.delivered.DeleteLabelValues(label)
	m.retries.DeleteLabelValues(label)
	m.dropped.DeleteLabelValues(label)
	m.lastDelivery.DeleteLabelValues(label)
}
