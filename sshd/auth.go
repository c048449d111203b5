package sshd

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// Identity is who a connection authenticated as. It is created only in the
// verified-key callback, for the key whose signature was checked, and
// travels in that connection's own *gossh.Permissions.
type Identity struct {
	UserID int64
	// Login is the SSH user name the client authenticated with.
	Login string
	// KeyID is the user key used (0 for a certificate).
	KeyID int64
	// KeyFingerprint is "SHA256:…" of the key that signed (for a
	// certificate, of the certificate's key).
	KeyFingerprint string
	keyFP          [32]byte // plain keys: the fingerprint looked up in the index
	// Certificate logins:
	CAID, CAGroupID      int64
	CAFingerprint        [32]byte // of the CA's public key
	CertKeyID            string
	CertSerial           uint64
	CertValidBefore      time.Time
	PermitPortForwarding bool
	// Deploy-key logins (UserID is 0; KeyID is -DeployKeyID):
	DeployKeyID    int64
	DeployKeyTitle string
	cert           certShape // certificate logins: what the key policy judges
	// CI job certificates (a managed CA's, with keystore.JobCertOption;
	// UserID is 0): the one project they reach, and whether they push.
	JobProjectID int64
	JobWrite     bool
}

// IsJob reports whether the login used a CI job's certificate.
func (id *Identity) IsJob() bool { return id.JobProjectID != 0 }

// IsDeployKey reports whether the login used a deploy key.
func (id *Identity) IsDeployKey() bool { return id.DeployKeyID != 0 }

// IsCertificate reports whether the login used a group-CA certificate.
func (id *Identity) IsCertificate() bool { return id.CAID != 0 }

type identityKey struct{}

// identityFromContext reads the identity from the authenticated connection's
// Permissions; nil before authentication completes.
func identityFromContext(ctx ssh.Context) *Identity {
	conn, ok := ctx.Value(ssh.ContextKeyConn).(*gossh.ServerConn)
	if !ok || conn == nil || conn.Permissions == nil {
		return nil
	}
	id, _ := conn.Permissions.ExtraData[identityKey{}].(*Identity)
	return id
}

// authError is a refusal. Public refusals carry a banner sent only to a
// client that proved it holds the key.
type authError struct {
	reason string     // for logs and metrics
	banner string     // for the client; "" for none
	audit  *auditNote // an audit event to record (nil: none)
}

func (e *authError) Error() string { return "keygate: " + e.reason }

func refuse(reason string) error { return &authError{reason: reason} }

func refuseLoudly(reason, banner string) error {
	return &authError{reason: reason, banner: banner}
}

func fingerprint(key gossh.PublicKey) [32]byte { return sha256.Sum256(key.Marshal()) }

// fingerprintString is OpenSSH's "SHA256:…" form of a fingerprint.
func fingerprintString(fp [32]byte) string { return keystore.FingerprintString(fp) }

// offeredKey answers the unverified query phase: "maybe" for a known key
// fingerprint or a certificate of a known CA, nothing else is revealed.
func (s *Server) offeredKey(ctx ssh.Context, key ssh.PublicKey) bool {
	if cert, ok := key.(*gossh.Certificate); ok {
		if cert.SignatureKey == nil {
			return false
		}
		return s.cfg.Auth.CAKnown(fingerprint(cert.SignatureKey))
	}
	_, known := s.cfg.Auth.Key(fingerprint(key))
	if !known && ctx != nil && s.refusalLog.Allow() {
		// "Why can't I log in?": the key that was not found, and for whom.
		s.log.Info("ssh key not registered", "fingerprint", gossh.FingerprintSHA256(key), "type", key.Type(),
			"login", ctx.User(), "remote", ctx.RemoteAddr().String())
	}
	return known
}

// verifiedKey runs after x/crypto verified the client's signature with key.
// It makes the whole decision and returns fresh Permissions that carry the
// identity.
func (s *Server) verifiedKey(conn gossh.ConnMetadata, key gossh.PublicKey) (*gossh.Permissions, error) {
	start := time.Now()
	method := "publickey"
	var id *Identity
	var err error
	if cert, ok := key.(*gossh.Certificate); ok {
		method = "certificate"
		id, err = s.decideCert(conn.User(), conn.RemoteAddr(), cert)
	} else {
		id, err = s.decideKey(conn.User(), key)
		if id != nil && id.IsDeployKey() {
			method = "deploy_key"
		}
	}
	s.metrics.authLatency.Observe(time.Since(start).Seconds())
	remote := conn.RemoteAddr().String()
	if err != nil {
		var ae *authError
		reason := err.Error()
		if errors.As(err, &ae) {
			reason = ae.reason
		}
		s.metrics.authAttempts.WithLabelValues(method, "rejected").Inc()
		s.log.Info("ssh auth rejected", "method", method, "login", conn.User(), "remote", remote,
			"fingerprint", gossh.FingerprintSHA256(key), "reason", reason)
		if ae != nil && ae.audit != nil {
			n := ae.audit
			n.details["login"] = conn.User()
			s.recordEventAsync(keystore.Actor{UserID: n.userID, RemoteIP: hostOnly(remote)}, n.action, n.targetType, n.targetID, n.details)
		}
		if ae != nil && ae.banner != "" {
			return nil, &gossh.BannerError{Err: err, Message: ae.banner + "\r\n"}
		}
		return nil, err
	}
	s.metrics.authAttempts.WithLabelValues(method, "accepted").Inc()
	s.log.Info("ssh auth accepted", "method", method, "login", conn.User(), "user_id", id.UserID,
		"fingerprint", id.KeyFingerprint, "cert_key_id", id.CertKeyID, "remote", remote)
	if id.KeyID != 0 {
		s.usage.record(id.KeyID)
	}
	if id.IsCertificate() {
		s.recordEventAsync(keystore.Actor{UserID: id.UserID, RemoteIP: hostOnly(remote)}, "ssh_certificate_login", "ca", id.CAID,
			identityDetails(id, map[string]any{"login": conn.User()}))
	}
	return &gossh.Permissions{ExtraData: map[any]any{identityKey{}: id}}, nil
}

// loginAllowed is the last check for keys and certificates: the SSH login
// name is the git user or the identity's own username.
func (s *Server) loginAllowed(login string, userID int64) bool {
	return login == s.cfg.GitUser || s.cfg.Auth.UsernameIs(userID, login)
}

// keyVerdict is the outcome of checkKey.
type keyVerdict uint8

const (
	keyOK keyVerdict = iota
	keyUnknown
	keySigningOnly
	keyExpired
	keyPolicy // refused by the instance's key policy
	keyUserBlocked
	keyBadLogin
)

// checkKey applies SPEC §5 to a plain key's fingerprint, in order. It reads
// only the index and does not allocate.
func (s *Server) checkKey(fp [32]byte, login string, nowMS int64) (authindex.Key, keyVerdict) {
	k, ok := s.cfg.Auth.Key(fp)
	if !ok {
		return k, keyUnknown
	}
	if !k.CanAuthenticate() {
		return k, keySigningOnly
	}
	if k.Expired(nowMS) {
		return k, keyExpired
	}
	if p := s.cfg.Auth.KeyPolicy(); p != keystore.NoKeyPolicy {
		if sh, ok := s.cfg.Auth.KeyShape(fp); ok && sh.Policy(p, k.ExpiresMS != 0) != keystore.RuleNone {
			return k, keyPolicy
		}
	}
	if s.cfg.Auth.UserBlocked(k.UserID) {
		return k, keyUserBlocked
	}
	if !s.loginAllowed(login, k.UserID) {
		return k, keyBadLogin
	}
	return k, keyOK
}

// decideKey turns checkKey's verdict into an identity or a refusal.
func (s *Server) decideKey(login string, key gossh.PublicKey) (*Identity, error) {
	fp := fingerprint(key)
	k, verdict := s.checkKey(fp, login, s.cfg.Now().UnixMilli())
	printable := gossh.FingerprintSHA256(key)
	if k.IsDeployKey() && verdict != keyUnknown {
		return s.decideDeployKey(login, k, verdict, fp, printable)
	}
	if verdict == keyOK {
		// Fail closed on an inconsistent index: a key whose user is missing
		// never authenticates (one lookup, after the signature verified).
		if _, ok := s.cfg.Auth.User(k.UserID); !ok {
			return nil, refuse("key's user is not in the index")
		}
	}
	switch verdict {
	case keyOK:
		return &Identity{UserID: k.UserID, Login: login, KeyID: k.ID, KeyFingerprint: printable, keyFP: fp}, nil
	case keyUnknown:
		return nil, refuse("unknown key")
	case keySigningOnly:
		return nil, refuseLoudly("signing-only key",
			fmt.Sprintf("keygate: key %s is a signing key and cannot be used to log in", printable))
	case keyExpired:
		return nil, refuseLoudly("expired key",
			fmt.Sprintf("keygate: key %s expired on %s", printable, time.UnixMilli(k.ExpiresMS).UTC().Format("2006-01-02")))
	case keyPolicy:
		return nil, s.refuseKeyByPolicy(k, fp, printable)
	case keyUserBlocked:
		return nil, refuseLoudly("blocked user", "keygate: your account is blocked")
	}
	return nil, refuse("login name is neither the git user nor the key owner")
}

// decideDeployKey turns checkKey's verdict on a deploy key into an
// identity: it logs in as the git user only, and an expired one says so.
func (s *Server) decideDeployKey(login string, k authindex.Key, verdict keyVerdict, fp [32]byte, printable string) (*Identity, error) {
	dk, ok := s.cfg.Auth.DeployKey(-k.ID)
	if !ok {
		return nil, refuse("deploy key's record is not in the index")
	}
	switch verdict {
	case keyOK:
		if login != s.cfg.GitUser {
			break
		}
		if !dk.OwnerActive {
			return nil, refuseLoudly("deploy key's owner is blocked or deleted",
				fmt.Sprintf("keygate: deploy key %q answers to no active user (its owner is blocked or deleted); an administrator can transfer it", dk.Title))
		}
		return &Identity{Login: login, KeyID: k.ID, KeyFingerprint: printable, keyFP: fp,
			DeployKeyID: dk.ID, DeployKeyTitle: dk.Title}, nil
	case keyExpired:
		return nil, refuseLoudly("expired deploy key",
			fmt.Sprintf("keygate: deploy key %q (%s) expired on %s", dk.Title, printable, time.UnixMilli(k.ExpiresMS).UTC().Format("2006-01-02")))
	case keyPolicy:
		return nil, s.refuseKeyByPolicy(k, fp, printable)
	}
	return nil, refuseLoudly("deploy key with a login other than the git user",
		fmt.Sprintf("keygate: deploy key %q logs in only as %s@", dk.Title, s.cfg.GitUser))
}

// decideCert applies SPEC §5 to a certificate, in order.
func (s *Server) decideCert(login string, remote net.Addr, cert *gossh.Certificate) (*Identity, error) {
	if cert.CertType != gossh.UserCert {
		return nil, refuse("not a user certificate")
	}
	if cert.SignatureKey == nil || cert.Signature == nil {
		return nil, refuse("certificate without signature")
	}
	if _, isCert := cert.SignatureKey.(*gossh.Certificate); isCert {
		return nil, refuse("certificate signed by a certificate")
	}
	caFP := fingerprint(cert.SignatureKey)
	if !s.cfg.Auth.CAKnown(caFP) {
		return nil, refuse("certificate authority not registered")
	}
	// The CA's signature comes before any check whose refusal says
	// something: a forged certificate naming a registered CA must learn
	// nothing about users or revocations.
	if err := verifyCertSignature(cert); err != nil {
		return nil, refuse("bad certificate signature: " + err.Error())
	}
	if cert.Signature.Format == gossh.KeyAlgoRSA || cert.Signature.Format == gossh.KeyAlgoDSA {
		return nil, refuseLoudly("certificate signed with SHA-1",
			"keygate: your certificate was signed with ssh-rsa (SHA-1); ask for one signed with rsa-sha2-256 or rsa-sha2-512")
	}
	before, reason, banner := certWindow(cert, s.cfg.Now(), s.cfg.CertClockSkew)
	if reason != "" {
		return nil, refuseLoudly(reason, banner)
	}
	if err := s.refuseCertByPolicy(cert); err != nil {
		return nil, err
	}
	if _, ok := cert.CriticalOptions[keystore.JobCertOption]; ok {
		id, err := s.decideJobCert(login, remote, cert, caFP, before)
		if id != nil {
			id.cert = certShapeOf(cert) // the key policy on open sessions
		}
		return id, err
	}
	certKeyFP := gossh.FingerprintSHA256(cert.Key)
	identity := cert.KeyId
	if v, ok := cert.Extensions["login@"+s.cfg.Hostname]; ok && s.cfg.Hostname != "" {
		identity = v
	}
	// A CA vouches only for the users its group is entitled to: those an
	// admin made enterprise users of it (membership alone, which any owner
	// can grant without consent, is never enough). The CA is the one the
	// user's enterprise group registered with this key: a key is its
	// group's own, and only that group's revocations apply.
	//
	// Whoever holds the CA key (a group owner) chooses the identity, so
	// every refusal about it (no such user, not an enterprise user of a
	// group holding this key, not a member) reads the same, and "blocked"
	// or "revoked" only once the user is proven the CA group's enterprise
	// user: no banner confirms an account or e-mail the holder could not
	// see through the API. The log tells them apart.
	u, ok := s.cfg.Auth.UserByLogin(identity)
	var ca authindex.CA
	found := false
	if ok && u.EnterpriseGroupID != 0 {
		ca, found = s.cfg.Auth.CA(caFP, u.EnterpriseGroupID)
	}
	switch {
	case !ok:
		return nil, refuseIdentity("certificate identity names no user", identity)
	case !found:
		return nil, refuseIdentity("certificate user is not an enterprise user of a group with this CA", identity)
	}
	// Revoked by serial, fingerprint or key id, or by a key-id revocation
	// naming the user the certificate logs in as.
	if s.cfg.Auth.Revoked(ca.GroupID, caFP, cert.Serial, cert.KeyId, certKeyFP, u.ID) {
		return nil, refuseLoudly("certificate revoked", "keygate: your certificate has been revoked")
	}
	if !u.Active {
		return nil, refuseLoudly("blocked user", "keygate: your account is blocked")
	}
	if s.cfg.Auth.AccessLevel(u.ID, ca.GroupID) == 0 {
		return nil, refuseIdentity("certificate user is not a member of the CA's group", identity)
	}
	// Principals are keygate's check, not x/crypto's (whose CheckCert
	// refuses certificates without principals since v0.59): an empty list
	// is accepted, as GitLab does, unless --cert-require-principals.
	if len(cert.ValidPrincipals) == 0 {
		if s.cfg.CertRequirePrincipals {
			return nil, refuseLoudly("certificate has no principals",
				"keygate: your certificate lists no principals; this server requires them (ask for one with -n "+s.cfg.GitUser+","+identity+")")
		}
	} else if !contains(cert.ValidPrincipals, login) {
		return nil, refuseLoudly("login name not among the certificate's principals", principalsBanner(cert.ValidPrincipals, login, s.cfg.GitUser))
	}
	// From here the certificate is genuine and its identity proven: every
	// refusal says why.
	for opt, val := range cert.CriticalOptions {
		if opt != "source-address" {
			return nil, refuseLoudly("unsupported critical option "+opt, fmt.Sprintf("keygate: your certificate has the critical option %q, "+
				"which this server does not support (it runs git commands and forwards only); ask for a certificate without it", clip(opt)))
		}
		if err := checkSourceAddress(remote, val); err != nil {
			return nil, refuseLoudly(err.Error(), fmt.Sprintf("keygate: your certificate may be used only from source-address %q, "+
				"and this connection comes from %s", clip(val), hostOnly(remote.String())))
		}
	}
	if !s.loginAllowed(login, u.ID) {
		return nil, refuseLoudly("login name is neither the git user nor the certificate's user",
			fmt.Sprintf("keygate: this certificate logs in only as %s or %s, not as %q", s.cfg.GitUser, s.cfg.Auth.Username(u.ID), clip(login)))
	}
	return &Identity{
		UserID: u.ID, Login: login, KeyFingerprint: certKeyFP,
		CAID: ca.ID, CAGroupID: ca.GroupID, CAFingerprint: caFP, CertKeyID: cert.KeyId, CertSerial: cert.Serial,
		CertValidBefore:      before,
		PermitPortForwarding: hasKey(cert.Extensions, "permit-port-forwarding"),
		cert:                 certShapeOf(cert),
	}, nil
}

// refuseIdentity refuses a certificate whose identity (Key ID or
// login@HOST) the CA may not vouch for, with one banner whatever the
// reason, which goes to the log only.
func refuseIdentity(reason, identity string) error {
	return refuseLoudly(reason, fmt.Sprintf("keygate: this certificate authority may not vouch for %q: "+
		"it must name, by username or e-mail, a member of a group that registered the certificate authority "+
		"who is an enterprise user of that group (an administrator sets enterprise_group_id)", identity))
}

// certWindow checks the certificate's validity window at now, widened by
// skew on both sides, as OpenSSH does without skew: valid from ValidAfter
// (inclusive) to ValidBefore (exclusive); CertTimeInfinity never expires;
// times beyond int64 seconds are refused (x/crypto's rule). It returns the
// expiry (zero for none), or the refusal's reason and banner.
func certWindow(cert *gossh.Certificate, now time.Time, skew time.Duration) (before time.Time, reason, banner string) {
	if cert.ValidAfter > math.MaxInt64 {
		return time.Time{}, "certificate not yet valid", "keygate: your certificate is not valid yet"
	}
	after := time.Unix(int64(cert.ValidAfter), 0)
	if now.Add(skew).Before(after) {
		return time.Time{}, "certificate not yet valid", "keygate: your certificate is not valid before " + after.UTC().Format(time.RFC3339)
	}
	if cert.ValidBefore == gossh.CertTimeInfinity {
		return time.Time{}, "", ""
	}
	if cert.ValidBefore > math.MaxInt64 {
		return time.Time{}, "certificate expired", "keygate: your certificate has expired"
	}
	before = time.Unix(int64(cert.ValidBefore), 0)
	if !now.Add(-skew).Before(before) {
		return time.Time{}, "certificate expired", "keygate: your certificate expired at " + before.UTC().Format(time.RFC3339)
	}
	return before, "", ""
}

// principalsBanner tells a client whose certificate does not list its
// login name which names it may use.
func principalsBanner(principals []string, login, gitUser string) string {
	shown := principals
	if len(shown) > 8 {
		shown = shown[:8]
	}
	msg := fmt.Sprintf("keygate: your certificate is for %q, not for login %q", strings.Join(shown, ","), login)
	if contains(principals, gitUser) {
		msg += fmt.Sprintf("; log in as %s@ (for git: %s@host:group/project.git)", gitUser, gitUser)
	} else if len(principals) > 0 {
		msg += fmt.Sprintf("; log in as %s@", principals[0])
	}
	return msg
}

// verifyCertSignature checks the CA's signature over the certificate: the
// signed bytes are the certificate's wire form without the signature field
// (what x/crypto's unexported bytesForSigning computes).
func verifyCertSignature(cert *gossh.Certificate) error {
	c := *cert
	c.Signature = nil
	out := c.Marshal()
	if len(out) < 4 {
		return errors.New("truncated certificate")
	}
	return cert.SignatureKey.Verify(out[:len(out)-4], cert.Signature)
}

// stillValid re-checks an authenticated identity against the index; it
// returns "" when valid or the reason it is not.
func (s *Server) stillValid(id *Identity, now time.Time) string {
	if id.IsJob() {
		return s.jobStillValid(id, now)
	}
	var u authindex.User
	if id.IsDeployKey() {
		if dk, ok := s.cfg.Auth.DeployKey(id.DeployKeyID); !ok {
			return "deploy key deleted"
		} else if !dk.OwnerActive {
			return "deploy key's owner blocked or deleted"
		}
	} else {
		var ok bool
		if u, ok = s.cfg.Auth.User(id.UserID); !ok {
			return "user deleted"
		} else if !u.Active {
			return "user blocked"
		}
	}
	if id.IsCertificate() {
		switch {
		case !s.cfg.Auth.CAExists(id.CAID):
			return "certificate authority deleted"
		case s.cfg.Auth.Revoked(id.CAGroupID, id.CAFingerprint, id.CertSerial, id.CertKeyID, id.KeyFingerprint, id.UserID):
			return "certificate revoked"
		case s.cfg.Auth.AccessLevel(id.UserID, id.CAGroupID) == 0:
			return "no longer a member of the certificate's group"
		case u.EnterpriseGroupID != id.CAGroupID:
			return "no longer an enterprise user of the certificate's group"
		case !id.CertValidBefore.IsZero() && !now.Add(-s.cfg.CertClockSkew).Before(id.CertValidBefore):
			// The same window decideCert accepted (certWindow).
			return "certificate expired"
		}
		return s.instancePolicyReason(id, now)
	}
	k, ok := s.cfg.Auth.Key(id.keyFP)
	switch {
	case !ok || k.ID != id.KeyID:
		return "key deleted"
	case !k.CanAuthenticate():
		return "key no longer allowed to log in"
	case k.Expired(now.UnixMilli()):
		return "key expired"
	}
	return s.instancePolicyReason(id, now)
}

// clip shortens what a client chose before it goes into a banner.
func clip(s string) string {
	if len(s) > 200 {
		return strings.ToValidUTF8(s[:200], "") + "…"
	}
	return s
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// checkSourceAddress enforces the source-address critical option: a
// comma-separated list of addresses or CIDRs.
func checkSourceAddress(remote net.Addr, list string) error {
	tcp, ok := remote.(*net.TCPAddr)
	if !ok {
		return errors.New("source-address: remote address is not TCP")
	}
	for _, entry := range strings.Split(list, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if strings.Contains(entry, "/") {
			_, n, err := net.ParseCIDR(entry)
			if err != nil {
				return fmt.Errorf("source-address: bad entry %q", entry)
			}
			if n.Contains(tcp.IP) {
				return nil
			}
			continue
		}
		ip := net.ParseIP(entry)
		if ip == nil {
			return fmt.Errorf("source-address: bad entry %q", entry)
		}
		if ip.Equal(tcp.IP) {
			return nil
		}
	}
	return fmt.Errorf("source-address: %s is not allowed", tcp.IP)
}
