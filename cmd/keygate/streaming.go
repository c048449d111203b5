package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/auditstream"
	"github.com/keygate/keygate/keystore"
)

// newStreamer builds the audit event streamer: the destinations admins
// add (delivered by one node of a cluster) and --audit-stream-file.
func newStreamer(c *serveConfig, store *keystore.Store, reg prometheus.Registerer, log *slog.Logger) (*auditstream.Streamer, error) {
	file := c.AuditStreamFile
	if file != "" {
		abs, err := filepath.Abs(file)
		if err != nil {
			return nil, err
		}
		file = abs
	}
	host, _ := os.Hostname()
	return auditstream.New(auditstream.Config{
		Store: store, Log: log.With("component", "audit-stream"), Registry: reg,
		Poll: c.AuditStreamPoll, MaxBackoff: c.AuditStreamMaxBackoff, DropAfter: c.AuditStreamDropAfter,
		File: file, Node: host + ":" + file,
	})
}

// buildInfo is keygate_build_info: 1, labelled with what was built.
func buildInfo() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "keygate_build_info", Help: "keygate's version, the commit it was built from and the Go version (always 1).",
		ConstLabels: prometheus.Labels{"version": version, "revision": buildCommit(), "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

// certificateExpiry exports when the HTTPS certificate keygate presents
// (--tls-cert, as reloaded) expires: keygate_certificate_not_after_timestamp_seconds
// {kind="tls"}. contrib/prometheus/keygate-alerts.yml warns before it does;
// other certificates keygate presents use the same metric with their kind.
func certificateExpiry(r *certReloader) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keygate_certificate_not_after_timestamp_seconds", Help: "When a certificate keygate presents expires (Unix seconds), by kind (tls: --tls-cert).",
		ConstLabels: prometheus.Labels{"kind": "tls"},
	}, func() float64 {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.cert == nil || r.cert.Leaf == nil {
			return 0
		}
		return float64(r.cert.Leaf.NotAfter.Unix())
	})
}
