package main

import (
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"

	gossh "golang.org/x/crypto/ssh"

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

// buildRevision is the commit keygate was built from, as `keygate version`
// prints it ("unknown" outside a checkout, "+dirty" with changes).
func buildRevision() string {
	rev, dirty := vcsCommit()
	if rev == "" {
		rev = "unknown"
	}
	if dirty {
		rev += "+dirty"
	}
	return rev
}

// buildInfo is keygate_build_info: 1, labelled with what was built.
func buildInfo() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "keygate_build_info", Help: "keygate's version, the commit it was built from and the Go version (always 1).",
		ConstLabels: prometheus.Labels{"version": version, "revision": buildRevision(), "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

// certificateExpiry exports when the certificates keygate presents
// expire: keygate_certificate_not_after_timestamp_seconds{kind,name} —
// kind "tls" for --tls-cert (as reloaded; name: the file), "ssh_host" for
// each SSH host certificate presented now, from a file or the managed host
// CA (name: the host key's type). Certificates valid forever are not
// exported. contrib/prometheus/keygate-alerts.yml warns before one
// expires.
func certificateExpiry(tlsCerts *certReloader, hostCerts func() []gossh.Signer) prometheus.Collector {
	return &certExpiry{tls: tlsCerts, host: hostCerts, desc: prometheus.NewDesc("keygate_certificate_not_after_timestamp_seconds",
		"When a certificate keygate presents expires (Unix seconds), by kind (tls: --tls-cert; ssh_host: an SSH host certificate) and name.",
		[]string{"kind", "name"}, nil)}
}

type certExpiry struct {
	tls  *certReloader
	host func() []gossh.Signer
	desc *prometheus.Desc
}

func (c *certExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *certExpiry) Collect(ch chan<- prometheus.Metric) {
	if c.tls != nil {
		c.tls.mu.Lock()
		cert := c.tls.cert
		c.tls.mu.Unlock()
		if cert != nil && cert.Leaf != nil {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(cert.Leaf.NotAfter.Unix()), "tls", filepath.Base(c.tls.certFile))
		}
	}
	for _, s := range c.host() {
		hc, ok := s.PublicKey().(*gossh.Certificate)
		if !ok || hc.ValidBefore == gossh.CertTimeInfinity || hc.ValidBefore > math.MaxInt64 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(hc.ValidBefore), "ssh_host", hc.Key.Type())
	}
}
