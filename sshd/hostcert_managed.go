package sshd

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
)

// Managed host certificates: with a HostCA, every host key that has no
// certificate from a file presents one keygate's managed host CA signed
// for Hostname and HostCertNames. At start (before the first connection is
// accepted) and every HostCertCheckInterval the server asks the CA which
// certificate to present; the store answers with the current one until two
// of its validity has passed, then a new one — so certificates are
// renewed without a restart, and a new host CA, a deleted one or a
// revocation takes effect within one interval. Each connection's key
// exchange offers the certificates of that moment (serverConfig).

// managedHostCerts holds the certificate signers currently presented.
type managedHostCerts struct {
	signers atomic.Pointer[[]gossh.Signer]

	mu      sync.Mutex // serialises refresh
	byKey   map[string]*managedCert
	lastErr map[string]string
}

type managedCert struct {
	id     int64
	cert   *gossh.Certificate
	signer gossh.Signer
}

// current returns the signers to offer (nil without a host CA).
func (m *managedHostCerts) current() []gossh.Signer {
	if m == nil {
		return nil
	}
	if p := m.signers.Load(); p != nil {
		return *p
	}
	return nil
}

// PresentedHostCertificates returns the host certificates offered now:
// those from files and the managed host CA's.
func (s *Server) PresentedHostCertificates() []gossh.Signer {
	return append(slices.Clone(s.cfg.HostCertificates), s.managedHostCerts.current()...)
}

// managedKeys are the host keys the managed host CA certifies: those with
// no certificate from a file.
func (s *Server) managedKeys() []gossh.Signer {
	var out []gossh.Signer
	for _, k := range s.cfg.HostKeys {
		fromFile := slices.ContainsFunc(s.cfg.HostCertificates, func(c gossh.Signer) bool {
			cert, ok := c.PublicKey().(*gossh.Certificate)
			return ok && bytes.Equal(cert.Key.Marshal(), k.PublicKey().Marshal())
		})
		if !fromFile {
			out = append(out, k)
		}
	}
	return out
}

// hostCertNames are the principals of the managed host certificates.
func (s *Server) hostCertNames() []string {
	names := []string{s.cfg.Hostname}
	for _, n := range s.cfg.HostCertNames {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// RefreshHostCertificates asks the host CA, once, for the certificate of
// every managed host key, and presents what it answers. When the CA cannot
// be asked (the database is down, the CA encryption key is wrong) the
// certificate presented so far stays until it expires; the error is
// logged once. Serve calls it before accepting connections and then every
// HostCertCheckInterval.
func (s *Server) RefreshHostCertificates(ctx context.Context) {
	m := s.managedHostCerts
	if s.cfg.HostCA == nil || m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	names := s.hostCertNames()
	now := s.cfg.Now()
	changed := false
	for _, key := range s.managedKeys() {
		fp := gossh.FingerprintSHA256(key.PublicKey())
		cur := m.byKey[fp]
		rec, err := s.cfg.HostCA.OwnHostCertificate(ctx, key.PublicKey(), names)
		var next *managedCert
		if err == nil && rec != nil {
			if cur != nil && cur.id == rec.ID {
				next = cur
			} else {
				next, err = parseManagedCert(rec.ID, rec.Certificate, key)
			}
		}
		var revoked *keystore.HostKeyRevokedError
		switch {
		case errors.As(err, &revoked):
			// Withdrawn at once: the certificate must not be shown again.
			if msg := err.Error(); m.lastErr[fp] != msg {
				m.lastErr[fp] = msg
				s.log.Error("managed host certificate revoked: this host key gets none any more; replace the host key "+
					"(remove its files from the data directory and restart)", "key", fp)
			}
			next = nil
		case err != nil:
			if msg := err.Error(); m.lastErr[fp] != msg {
				m.lastErr[fp] = msg
				s.log.Warn("managed host certificate: the host CA cannot be asked; the current certificate stays until it expires",
					"key", fp, "err", err)
			}
			next = cur
			if cur != nil && uint64(now.Unix()) >= cur.cert.ValidBefore {
				s.log.Warn("managed host certificate expired: presenting the plain host key only", "key", fp)
				next = nil
			}
		default:
			delete(m.lastErr, fp)
		}
		switch {
		case next == cur:
		case next == nil:
			s.log.Info("managed host certificate withdrawn: no host CA signs for this key now", "key", fp)
		default:
			s.log.Info("managed host certificate", "key", fp, "type", key.PublicKey().Type(),
				"ca", gossh.FingerprintSHA256(next.cert.SignatureKey), "serial", next.cert.Serial,
				"principals", strings.Join(next.cert.ValidPrincipals, ","),
				"valid_before", time.Unix(int64(next.cert.ValidBefore), 0).UTC(), "renewed", cur != nil)
		}
		if next != cur {
			changed = true
			if next == nil {
				delete(m.byKey, fp)
			} else {
				m.byKey[fp] = next
			}
		}
	}
	if changed || m.signers.Load() == nil {
		var list []gossh.Signer
		for _, k := range s.cfg.HostKeys { // in the host keys' order
			if c := m.byKey[gossh.FingerprintSHA256(k.PublicKey())]; c != nil {
				list = append(list, c.signer)
			}
		}
		m.signers.Store(&list)
	}
}

var errNotHostCert = errors.New("sshd: the host CA answered with something other than a host certificate of the key")

func parseManagedCert(id int64, line string, key gossh.Signer) (*managedCert, error) {
	pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, err
	}
	cert, ok := pub.(*gossh.Certificate)
	if !ok || cert.CertType != gossh.HostCert || !bytes.Equal(cert.Key.Marshal(), key.PublicKey().Marshal()) {
		return nil, errNotHostCert
	}
	signer, err := hostCertSigner(cert, key)
	if err != nil {
		return nil, err
	}
	return &managedCert{id: id, cert: cert, signer: signer}, nil
}

// hostCertLoop refreshes the managed host certificates until Shutdown.
func (s *Server) hostCertLoop() {
	t := time.NewTicker(s.cfg.HostCertCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			s.RefreshHostCertificates(ctx)
			cancel()
		}
	}
}
