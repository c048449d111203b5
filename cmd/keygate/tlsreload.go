package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloader serves --tls-cert/--tls-key and picks up a renewed pair
// (certbot, cert-manager) without a restart: on SIGHUP, and on the first
// handshake at least a second after either file's size or modification
// time changed. A pair that fails to load is logged and the old one kept.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, fmt.Errorf("--tls-cert %s --tls-key %s: %w", certFile, keyFile, err)
	}
	return r, nil
}

func (r *certReloader) fileStamp() string {
	s := ""
	for _, f := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "missing"
		}
		s += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return s
}

func (r *certReloader) load() error {
	stamp := r.fileStamp()
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.cert, r.stamp, r.checked = &c, stamp, time.Now()
	r.mu.Unlock()
	return nil
}

// Reload loads the pair now (SIGHUP).
func (r *certReloader) Reload() {
	if err := r.load(); err != nil {
		r.log.Warn("TLS certificate reload failed; keeping the old one", "cert", r.certFile, "err", err)
		return
	}
	r.log.Info("TLS certificate loaded", "cert", r.certFile)
}

// GetCertificate is tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	stale := time.Since(r.checked) >= time.Second
	if stale {
		r.checked = time.Now()
	}
	cert, stamp := r.cert, r.stamp
	r.mu.Unlock()
	if stale && r.fileStamp() != stamp {
		r.Reload()
		r.mu.Lock()
		cert = r.cert
		r.mu.Unlock()
	}
	return cert, nil
}

// tlsConfig is TLS 1.2 and 1.3 with, for TLS 1.2, only ECDHE with AEAD
// ciphers (AES-GCM, ChaCha20-Poly1305), as Mozilla's "intermediate"
// profile: no CBC, no RSA key exchange. TLS 1.3's suites are all AEAD
// (Go does not let them be configured).
func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: tls12Suites(), GetCertificate: r.GetCertificate}
}

// tls12Suites are the TLS 1.2 cipher suites keygate offers, in Mozilla's
// "intermediate" order (Go implements none of its DHE suites).
func tls12Suites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}
