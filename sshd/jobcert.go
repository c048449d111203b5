package sshd

import (
	"net"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
)

// CI job certificates. A managed CA (keygate holds its private key)
// signs, for a CI job whose ID token matched a project's trust rule, a
// certificate with the critical option keystore.JobCertOption naming the
// project and the access ("17:write"). Only keygate can sign with a managed
// CA's key, so the option is honoured only in certificates of a managed
// CA; anywhere else (an uploaded CA whose holder wrote it) it refuses the
// certificate. The certificate logs in like a deploy key of that project:
// as the git user only, that project only, no forwarding.

// decideJobCert decides a certificate that carries JobCertOption; the CA's
// signature and the validity window are checked already.
func (s *Server) decideJobCert(login string, remote net.Addr, cert *gossh.Certificate, caFP [32]byte, before time.Time) (*Identity, error) {
	ca, ok := s.cfg.Auth.ManagedCA(caFP)
	if !ok {
		return nil, refuse("CI job option in a certificate not signed by a managed CA")
	}
	projectID, write, ok := keystore.ParseJobCertOption(cert.CriticalOptions[keystore.JobCertOption])
	if !ok {
		return nil, refuse("malformed CI job option")
	}
	certKeyFP := gossh.FingerprintSHA256(cert.Key)
	if s.cfg.Auth.Revoked(ca.GroupID, caFP, cert.Serial, cert.KeyId, certKeyFP, 0) {
		return nil, refuseLoudly("certificate revoked", "keygate: your certificate has been revoked")
	}
	if login != s.cfg.GitUser {
		return nil, refuseLoudly("CI job certificate with a login other than the git user",
			"keygate: a CI job's certificate logs in only as "+s.cfg.GitUser+"@")
	}
	if len(cert.ValidPrincipals) > 0 && !contains(cert.ValidPrincipals, login) {
		return nil, refuseLoudly("login name not among the certificate's principals", principalsBanner(cert.ValidPrincipals, login, s.cfg.GitUser))
	}
	for opt, val := range cert.CriticalOptions {
		switch opt {
		case keystore.JobCertOption:
		case "source-address":
			if err := checkSourceAddress(remote, val); err != nil {
				return nil, refuse(err.Error())
			}
		default:
			return nil, refuse("unsupported critical option " + opt)
		}
	}
	id := &Identity{
		Login: login, KeyFingerprint: certKeyFP,
		CAID: ca.ID, CAGroupID: ca.GroupID, CAFingerprint: caFP, CertKeyID: cert.KeyId, CertSerial: cert.Serial,
		CertValidBefore: before, JobProjectID: projectID, JobWrite: write,
	}
	if reason := s.jobStillValid(id, s.cfg.Now()); reason != "" {
		return nil, refuse(reason)
	}
	return id, nil
}

// jobStillValid re-checks a CI job's certificate against the index: its CA
// still registered, not revoked, not expired, its project still in the
// CA's group.
func (s *Server) jobStillValid(id *Identity, now time.Time) string {
	switch {
	case !s.cfg.Auth.CAExists(id.CAID):
		return "certificate authority deleted"
	case s.cfg.Auth.Revoked(id.CAGroupID, id.CAFingerprint, id.CertSerial, id.CertKeyID, id.KeyFingerprint, 0):
		return "certificate revoked"
	case !id.CertValidBefore.IsZero() && !now.Add(-s.cfg.CertClockSkew).Before(id.CertValidBefore):
		return "certificate expired"
	}
	gid, ok := s.cfg.Auth.ProjectGroup(id.JobProjectID)
	if !ok {
		return "CI job certificate's project deleted"
	}
	if g, ok := s.cfg.Auth.Group(gid); !ok || g.TopLevelID != id.CAGroupID {
		return "CI job certificate's project no longer in the certificate authority's group"
	}
	return ""
}
