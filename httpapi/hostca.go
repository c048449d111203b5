package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/krl"
	"github.com/keygate/keygate/keystore"
)

// Managed host CAs (admins): generate, list, delete; fleet servers' host
// certificates signed, listed and revoked; the host KRL, readable by
// anyone (clients' ssh reads it with RevokedHostKeys). keygate's own host
// keys are signed by sshd (hostcert_managed.go). See
// docs/openssh-fleet.md.

type hostCAJSON struct {
	ID                int64  `json:"id"`
	Title             string `json:"title"`
	Key               string `json:"key"`
	FingerprintSHA256 string `json:"fingerprint_sha256"`
	KeyType           string `json:"key_type"`
	CreatedBy         *int64 `json:"created_by"`
	CreatedAt         string `json:"created_at"`
}

func renderHostCA(c *keystore.HostCA) hostCAJSON {
	return hostCAJSON{ID: c.ID, Title: c.Title, Key: c.Key, FingerprintSHA256: c.FingerprintSHA256, KeyType: c.KeyType,
		CreatedBy: c.CreatedBy, CreatedAt: fmtTime(c.CreatedAt)}
}

type hostCertJSON struct {
	ID               int64    `json:"id"`
	CAID             int64    `json:"ca_id"`
	Serial           uint64   `json:"serial"`
	KeyID            string   `json:"key_id"`
	KeyType          string   `json:"key_type"`
	KeyFingerprint   string   `json:"key_fingerprint"`
	Principals       []string `json:"principals"`
	Certificate      string   `json:"certificate"`
	Own              bool     `json:"own"`
	RequestedBy      *int64   `json:"requested_by"`
	ValidAfter       string   `json:"valid_after"`
	ValidBefore      string   `json:"valid_before"`
	Revoked          bool     `json:"revoked"`
	RevokedAt        *string  `json:"revoked_at"`
	RevokedBy        *int64   `json:"revoked_by"`
	RevocationReason string   `json:"revocation_reason"`
	CreatedAt        string   `json:"created_at"`
}

func renderHostCert(c *keystore.HostCertificate) hostCertJSON {
	return hostCertJSON{ID: c.ID, CAID: c.CAID, Serial: c.Serial, KeyID: c.KeyID, KeyType: c.KeyType, KeyFingerprint: c.KeyFingerprint,
		Principals: c.Principals, Certificate: c.Certificate, Own: c.Own, RequestedBy: c.RequestedBy,
		ValidAfter: fmtTime(c.ValidAfter), ValidBefore: fmtTime(c.ValidBefore), Revoked: c.RevokedAt != nil,
		RevokedAt: fmtTimePtr(c.RevokedAt), RevokedBy: c.RevokedBy, RevocationReason: c.RevocationReason, CreatedAt: fmtTime(c.CreatedAt)}
}

// createHostCA is POST /admin/ssh_host_certificate_authorities (title,
// key_type): keygate generates the key pair and keeps the private key
// sealed; the answer holds the public key only.
func (a *API) createHostCA(w http.ResponseWriter, r *http.Request) error {
	p, err := readParams(r, "title")
	if err != nil {
		return err
	}
	title, _ := p.str("title")
	keyType, _ := p.str("key_type")
	c, err := a.store.GenerateHostCA(r.Context(), actor(r), title, keyType)
	if err != nil {
		return err
	}
	a.log.Info("ssh host CA created", "host_ca_id", c.ID, "fingerprint", c.FingerprintSHA256, "key_type", c.KeyType)
	return respond(w, http.StatusCreated, renderHostCA(c))
}

func (a *API) listHostCAs(w http.ResponseWriter, r *http.Request) error {
	return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.HostCA, int, error) {
		return a.store.ListHostCAs(r.Context(), pg)
	}, renderHostCA)
}

func (a *API) getHostCA(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "ca_id", "SSH Host Certificate Authority")
	if err != nil {
		return err
	}
	c, err := a.store.HostCA(r.Context(), id)
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, renderHostCA(c))
}

func (a *API) deleteHostCA(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "ca_id", "SSH Host Certificate Authority")
	if err != nil {
		return err
	}
	return noContent(w, a.store.DeleteHostCA(r.Context(), actor(r), id))
}

// issueHostCertificate is POST /admin/ssh_host_certificates: a fleet
// server's host key (key) signed for its names (principals, a list or
// comma-separated), by ca_id or the oldest host CA, for ttl seconds
// (default 90 days), with key_id (default the first name).
func (a *API) issueHostCertificate(w http.ResponseWriter, r *http.Request) error {
	p, err := readParams(r, "key", "principals")
	if err != nil {
		return err
	}
	req := keystore.HostCertRequest{RequestedBy: actor(r).UserID}
	req.PublicKey, _ = p.str("key")
	req.Principals = p.list("principals")
	req.KeyID, _ = p.str("key_id")
	if cid, err := p.int64Ptr("ca_id"); err != nil {
		return err
	} else if cid != nil {
		req.CAID = *cid
	}
	if v, ok := p.str("ttl"); ok && v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || n > 1<<31 {
			return badRequest("ttl", "must be a positive number of seconds")
		}
		req.TTL = time.Duration(n) * time.Second
	}
	c, err := a.store.IssueHostCertificate(r.Context(), actor(r), req)
	if err != nil {
		return err
	}
	a.log.Info("ssh host certificate issued", "host_ca_id", c.CAID, "serial", c.Serial, "key_fingerprint", c.KeyFingerprint,
		"principals", strings.Join(c.Principals, ","), "valid_before", c.ValidBefore)
	return respond(w, http.StatusCreated, renderHostCert(c))
}

// listHostCertificates is GET /admin/ssh_host_certificates, newest first;
// filters ca_id, key_fingerprint, own, revoked.
func (a *API) listHostCertificates(w http.ResponseWriter, r *http.Request) error {
	p, err := readParams(r)
	if err != nil {
		return err
	}
	var f keystore.HostCertFilter
	if cid, err := p.int64Ptr("ca_id"); err != nil {
		return err
	} else if cid != nil {
		f.CAID = *cid
	}
	if fp, ok := p.str("key_fingerprint"); ok {
		c, ok := keystore.CanonicalSHA256Fingerprint(fp)
		if !ok {
			return badRequest("key_fingerprint", "must be a SHA256:… fingerprint")
		}
		f.KeyFingerprint = c
	}
	if f.Own, err = p.boolPtr("own"); err != nil {
		return err
	}
	if f.Revoked, err = p.boolPtr("revoked"); err != nil {
		return err
	}
	return paged(w, r, 20, func(pg keystore.Page) ([]*keystore.HostCertificate, int, error) {
		return a.store.ListHostCertificates(r.Context(), f, pg)
	}, renderHostCert)
}

func (a *API) getHostCertificate(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "certificate_id", "SSH Host Certificate")
	if err != nil {
		return err
	}
	c, err := a.store.HostCertificate(r.Context(), id)
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, renderHostCert(c))
}

// revokeHostCertificate is POST /admin/ssh_host_certificates/:id/revoke
// (reason): the serial and the host key go into the host KRL.
func (a *API) revokeHostCertificate(w http.ResponseWriter, r *http.Request) error {
	id, err := pathInt(r, "certificate_id", "SSH Host Certificate")
	if err != nil {
		return err
	}
	p, err := readParams(r)
	if err != nil {
		return err
	}
	reason, _ := p.str("reason")
	c, err := a.store.RevokeHostCertificate(r.Context(), actor(r), id, reason)
	if err != nil {
		return err
	}
	a.log.Info("ssh host certificate revoked", "host_ca_id", c.CAID, "serial", c.Serial, "key_fingerprint", c.KeyFingerprint)
	return respond(w, http.StatusOK, renderHostCert(c))
}

// hostKRL answers GET /ssh_host_certificate_authorities/krl (anyone): the
// host certificates' revocations as an OpenSSH KRL, for ssh's
// RevokedHostKeys. Served like a group's KRL: one version is the same
// bytes on every node, ETag/If-None-Match, X-KRL-Version.
func (a *API) hostKRL(w http.ResponseWriter, r *http.Request) error {
	st, err := a.store.HostKRLState(r.Context())
	if err != nil {
		return err
	}
	// GroupID 0 in st: the cache keeps it apart from every group's.
	return a.serveKRL(w, r, st, "ssh_host_revoked_keys.krl", func() (*krl.KRL, keystore.KRLState, error) {
		return a.store.HostKRL(r.Context())
	})
}
