package sshd

import (
	"fmt"
	"strconv"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// Key policy at login and on open sessions. The instance's policy
// (Authorizer.KeyPolicy, one pointer read) applies to every plain key,
// deploy key, certificate, the key inside a certificate and the CA key that
// signed it; it is checked at login and again by stillValid, so a policy
// change ends the sessions it now refuses within the revalidation bound. A
// top-level group's own policy (Authorizer.GroupKeyPolicy), stricter only,
// applies on top of it to git in the group's projects (decideGit). Key
// kinds and sizes come from the index (user and deploy keys) or from the
// certificate the client presented, already parsed: nothing is parsed for
// the policy.

// certShape is what the key policy judges of a certificate login: the
// certificate's key, the CA key that signed it and its validity window.
type certShape struct {
	keyKind, caKind uint8
	keyBits, caBits uint16
	after, before   uint64
}

func certShapeOf(cert *gossh.Certificate) certShape {
	kk, kb := keystore.KeyShape(cert.Key)
	ck, cb := keystore.KeyShape(cert.SignatureKey)
	return certShape{keyKind: kk, keyBits: uint16(min(kb, 1<<16-1)), caKind: ck, caBits: uint16(min(cb, 1<<16-1)),
		after: cert.ValidAfter, before: cert.ValidBefore}
}

// policyVerdict is the first rule of a policy that a login breaks, with
// what it applied to.
type policyVerdict struct {
	rule keystore.PolicyRule
	kind uint8
	bits int
	what string // "key", "certificate", "certificate's key", "certificate authority's key"
}

func (v policyVerdict) ok() bool { return v.rule == keystore.RuleNone }

// check applies p to a certificate: its window, its key, its CA's key.
func (c certShape) check(p *keystore.KeyPolicy) policyVerdict {
	if r := p.CheckCert(c.after, c.before); r != keystore.RuleNone {
		return policyVerdict{rule: r, what: "certificate"}
	}
	if r := p.CheckKind(c.keyKind, int(c.keyBits)); r != keystore.RuleNone {
		return policyVerdict{rule: r, kind: c.keyKind, bits: int(c.keyBits), what: "certificate's key"}
	}
	if r := p.CheckKind(c.caKind, int(c.caBits)); r != keystore.RuleNone {
		return policyVerdict{rule: r, kind: c.caKind, bits: int(c.caBits), what: "certificate authority's key"}
	}
	return policyVerdict{}
}

// keyVerdictOf applies p to a plain or deploy key from the index.
func (s *Server) keyVerdictOf(p *keystore.KeyPolicy, k authindex.Key, fp [32]byte) policyVerdict {
	sh, ok := s.cfg.Auth.KeyShape(fp)
	if !ok {
		return policyVerdict{}
	}
	r := sh.Policy(p, k.ExpiresMS != 0)
	if r == keystore.RuleNone {
		return policyVerdict{}
	}
	return policyVerdict{rule: r, kind: sh.Kind, bits: int(sh.Bits), what: "key"}
}

// policyOf applies p to identity id as it stands in the index now.
func (s *Server) policyOf(p *keystore.KeyPolicy, id *Identity) policyVerdict {
	if id.IsCertificate() {
		return id.cert.check(p)
	}
	k, ok := s.cfg.Auth.Key(id.keyFP)
	if !ok {
		return policyVerdict{}
	}
	return s.keyVerdictOf(p, k, id.keyFP)
}

// reason is the verdict for logs and revalidation ("key policy: …").
func (v policyVerdict) reason(scope string) string {
	return scope + " key policy: " + v.what + " breaks " + v.rule.Label()
}

// banner tells the person what the rule is and what to do.
func (v policyVerdict) banner(p *keystore.KeyPolicy, scope, subject string) string {
	rule := p.Explain(v.rule, v.kind, v.bits)
	var todo string
	switch {
	case v.what == "certificate" || v.what == "certificate authority's key":
		todo = "ask your certificate authority for a certificate that meets it"
	case v.what == "certificate's key":
		todo = "get a certificate for a key that meets it (e.g. ssh-keygen -t ed25519)"
	case v.rule == keystore.RuleNoExpiry || v.rule == keystore.RuleKeyLifetime:
		todo = "add a key with an expiry date within the limit and remove this one"
	default:
		todo = "add a key that meets it (e.g. ssh-keygen -t ed25519) and remove this one"
	}
	return fmt.Sprintf("keygate: %s is refused by %s key policy: %s; %s", subject, scope, rule, todo)
}

// auditNote is an audit event a refusal asks verifiedKey to record (with
// the client's address).
type auditNote struct {
	userID             int64
	action, targetType string
	targetID           int64
	details            map[string]any
}

// refuseByPolicy is the refusal of a login by the instance's key policy:
// a banner naming the rule, a metric and an audit event.
func (s *Server) refuseByPolicy(p *keystore.KeyPolicy, v policyVerdict, subject string, userID int64,
	targetType string, targetID int64, details map[string]any) error {
	s.metrics.policyRefusals.WithLabelValues(v.rule.Label(), "instance").Inc()
	details["rule"] = v.rule.Label()
	details["setting"] = v.rule.Setting(v.kind)
	details["applies_to"] = v.what
	return &authError{reason: v.reason("instance"), banner: v.banner(p, "this server's", subject),
		audit: &auditNote{userID: userID, action: "ssh_login_refused_by_key_policy", targetType: targetType, targetID: targetID, details: details}}
}

// refuseKeyByPolicy refuses a plain or deploy key that breaks the
// instance's key policy.
func (s *Server) refuseKeyByPolicy(k authindex.Key, fp [32]byte, printable string) error {
	p := s.cfg.Auth.KeyPolicy()
	v := s.keyVerdictOf(p, k, fp)
	subject := "key " + printable
	details := map[string]any{"key_fingerprint": printable, "key_type": keystore.KindName(v.kind), "key_bits": v.bits}
	if k.IsDeployKey() {
		dk, _ := s.cfg.Auth.DeployKey(-k.ID)
		subject = fmt.Sprintf("deploy key %q (%s)", dk.Title, printable)
		details["deploy_key_id"], details["deploy_key_title"] = dk.ID, dk.Title
		return s.refuseByPolicy(p, v, subject, 0, "deploy_key", dk.ID, details)
	}
	details["key_id"] = k.ID
	return s.refuseByPolicy(p, v, subject, k.UserID, "key", k.ID, details)
}

// refuseCertByPolicy refuses a certificate that breaks the instance's
// key policy (checked once its CA's signature is verified).
func (s *Server) refuseCertByPolicy(cert *gossh.Certificate) error {
	p := s.cfg.Auth.KeyPolicy()
	if p == keystore.NoKeyPolicy || p.IsZero() {
		return nil
	}
	v := certShapeOf(cert).check(p)
	if v.ok() {
		return nil
	}
	details := map[string]any{"cert_key_id": cert.KeyId, "cert_serial": strconv.FormatUint(cert.Serial, 10),
		"key_fingerprint": gossh.FingerprintSHA256(cert.Key), "ca_fingerprint": gossh.FingerprintSHA256(cert.SignatureKey)}
	if cert.ValidBefore != gossh.CertTimeInfinity && cert.ValidBefore > cert.ValidAfter {
		details["cert_validity_hours"] = float64(cert.ValidBefore-cert.ValidAfter) / 3600
	}
	return s.refuseByPolicy(p, v, "your certificate", 0, "certificate", 0, details)
}

// groupPolicy applies top-level group topID's own key policy to a git
// command by id (after every other check allowed it): the group's owners
// may only add to the instance's policy, which stillValid applied already.
func (s *Server) groupPolicy(id *Identity, topID int64) gitDecision {
	gp, ok := s.cfg.Auth.GroupKeyPolicy(topID)
	if !ok || gp.IsZero() {
		return gitDecision{}
	}
	p := s.cfg.Auth.KeyPolicy().Stricter(gp)
	v := s.policyOf(&p, id)
	if v.ok() {
		return gitDecision{}
	}
	s.metrics.policyRefusals.WithLabelValues(v.rule.Label(), "group").Inc()
	return gitDecision{msg: v.banner(&p, "this group's", "your "+v.what) + "\n", reason: v.reason("group")}
}

// instancePolicyReason is stillValid's check: "" or why the instance's key
// policy now refuses identity id.
func (s *Server) instancePolicyReason(id *Identity, _ time.Time) string {
	p := s.cfg.Auth.KeyPolicy()
	if p == keystore.NoKeyPolicy || p.IsZero() {
		return ""
	}
	if v := s.policyOf(p, id); !v.ok() {
		return v.reason("instance")
	}
	return ""
}
