package keystore

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// Key policy: which keys and certificates log in at all. The instance's
// policy is GitLab's application settings for keys (dsa/rsa/ecdsa/
// ecdsa_sk/ed25519/ed25519_sk_key_restriction, max_ssh_key_lifetime) plus
// keygate's max_ssh_certificate_lifetime and
// require_ssh_certificate_expiry; a top-level group's owners may add a
// stricter policy for logins into the group's projects (never a looser
// one: the two are merged with Stricter). The store applies the instance's
// policy when a key is added (GitLab's 400s); the SSH server applies it at
// every login, and to open sessions, from the in-memory index.

// Key kinds: GitLab's names for key types in the *_key_restriction
// settings. A kind is one byte so the index can hold it beside each key.
const (
	KindDSA uint8 = iota + 1
	KindRSA
	KindECDSA
	KindECDSASK
	KindED25519
	KindED25519SK
	numKinds
)

// kindNames are the kinds' setting prefixes, by kind.
var kindNames = [numKinds]string{"", "dsa", "rsa", "ecdsa", "ecdsa_sk", "ed25519", "ed25519_sk"}

// kindLabels are the kinds as GitLab's messages print them.
var kindLabels = [numKinds]string{"", "DSA", "RSA", "ECDSA", "ECDSA_SK", "ED25519", "ED25519_SK"}

// kindSizes are the restrictions GitLab accepts per kind (besides 0 and -1).
var kindSizes = [numKinds][]int{
	KindDSA:       {1024},
	KindRSA:       {1024, 2048, 3072, 4096},
	KindECDSA:     {256, 384, 521},
	KindECDSASK:   {256},
	KindED25519:   {256},
	KindED25519SK: {256},
}

// KeyKind maps an OpenSSH key type to its kind (0: unknown).
func KeyKind(typ string) uint8 {
	switch typ {
	case gossh.KeyAlgoDSA:
		return KindDSA
	case gossh.KeyAlgoRSA:
		return KindRSA
	case gossh.KeyAlgoECDSA256, gossh.KeyAlgoECDSA384, gossh.KeyAlgoECDSA521:
		return KindECDSA
	case gossh.KeyAlgoSKECDSA256:
		return KindECDSASK
	case gossh.KeyAlgoED25519:
		return KindED25519
	case gossh.KeyAlgoSKED25519:
		return KindED25519SK
	}
	return 0
}

// KindName is a kind's setting prefix ("rsa", "ed25519_sk"; "" for 0).
func KindName(kind uint8) string {
	if kind >= numKinds {
		return ""
	}
	return kindNames[kind]
}

// KeyShape is what the key policy judges of a public key.
func KeyShape(pub gossh.PublicKey) (kind uint8, bits int) {
	return KeyKind(pub.Type()), keyBits(pub)
}

// Limits on the lifetime settings.
const (
	MaxKeyLifetimeDays   = 365   // GitLab's limit for max_ssh_key_lifetime
	MaxCertLifetimeHours = 87600 // ten years
)

// KeyPolicy is a key policy. The zero value restricts nothing (keygate's
// own rules still apply: no DSA, RSA of at least 2048 bits).
type KeyPolicy struct {
	// Restrictions by kind (index KindRSA…): 0 none, -1 forbidden, N the
	// minimum size in bits. DSA is always forbidden by keygate.
	Restrictions [numKinds]int
	// MaxKeyLifetimeDays: keys must expire at most this many days after
	// they were added (0: no limit).
	MaxKeyLifetimeDays int
	// MaxCertLifetimeHours: certificates whose validity window is longer
	// are refused (0: no limit).
	MaxCertLifetimeHours int
	// RequireCertExpiry refuses certificates valid "forever".
	RequireCertExpiry bool
}

// NoKeyPolicy is the policy that restricts nothing, as one pointer: the
// index returns it when no policy is set, so the auth path skips the
// policy with one comparison. Never modify it.
var NoKeyPolicy = &KeyPolicy{}

// Restriction is the restriction on kind (0 for an unknown kind).
func (p *KeyPolicy) Restriction(kind uint8) int {
	if kind == 0 || kind >= numKinds {
		return 0
	}
	return p.Restrictions[kind]
}

// IsZero reports whether the policy restricts nothing.
func (p *KeyPolicy) IsZero() bool { return *p == KeyPolicy{} }

// Stricter returns the policy that applies both p and q: a forbidden kind
// stays forbidden, the larger minimum size, the shorter lifetime.
func (p KeyPolicy) Stricter(q KeyPolicy) KeyPolicy {
	out := p
	for k := range out.Restrictions {
		a, b := p.Restrictions[k], q.Restrictions[k]
		switch {
		case a == -1 || b == -1:
			out.Restrictions[k] = -1
		default:
			out.Restrictions[k] = max(a, b)
		}
	}
	out.MaxKeyLifetimeDays = minPositive(p.MaxKeyLifetimeDays, q.MaxKeyLifetimeDays)
	out.MaxCertLifetimeHours = minPositive(p.MaxCertLifetimeHours, q.MaxCertLifetimeHours)
	out.RequireCertExpiry = p.RequireCertExpiry || q.RequireCertExpiry
	return out
}

func minPositive(a, b int) int {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	}
	return min(a, b)
}

// PolicyRule is the first rule of a key policy a key or certificate breaks.
type PolicyRule uint8

// The rules, in the order they are checked.
const (
	RuleNone          PolicyRule = iota
	RuleKindForbidden            // <kind>_key_restriction = -1
	RuleTooFewBits               // <kind>_key_restriction = N
	RuleNoExpiry                 // max_ssh_key_lifetime: the key never expires
	RuleKeyLifetime              // max_ssh_key_lifetime: it lives longer
	RuleCertNoExpiry             // require_ssh_certificate_expiry (or a lifetime limit)
	RuleCertLifetime             // max_ssh_certificate_lifetime
	numRules
)

// PolicyRules lists every rule (for metrics labels).
func PolicyRules() []PolicyRule {
	out := make([]PolicyRule, 0, numRules-1)
	for r := RuleKindForbidden; r < numRules; r++ {
		out = append(out, r)
	}
	return out
}

// Label is the rule's name in logs and metrics ("key_type_forbidden").
func (r PolicyRule) Label() string {
	switch r {
	case RuleKindForbidden:
		return "key_type_forbidden"
	case RuleTooFewBits:
		return "key_too_small"
	case RuleNoExpiry:
		return "key_without_expiry"
	case RuleKeyLifetime:
		return "key_lifetime"
	case RuleCertNoExpiry:
		return "certificate_without_expiry"
	case RuleCertLifetime:
		return "certificate_lifetime"
	}
	return "none"
}

// CheckKind applies the kind restrictions to a key of kind and bits.
func (p *KeyPolicy) CheckKind(kind uint8, bits int) PolicyRule {
	switch r := p.Restriction(kind); {
	case r == -1:
		return RuleKindForbidden
	case r > 0 && bits < r:
		return RuleTooFewBits
	}
	return RuleNone
}

// CheckKey applies the policy to a stored key: its kind and size, and its
// lifetime (lifetimeMin: minutes from when it was added to its expiry,
// rounded up; expires false: it never expires). It does not allocate.
func (p *KeyPolicy) CheckKey(kind uint8, bits int, expires bool, lifetimeMin int64) PolicyRule {
	if r := p.CheckKind(kind, bits); r != RuleNone {
		return r
	}
	if d := p.MaxKeyLifetimeDays; d > 0 {
		if !expires {
			return RuleNoExpiry
		}
		if lifetimeMin > int64(d)*24*60 {
			return RuleKeyLifetime
		}
	}
	return RuleNone
}

// CheckCert applies the certificate rules to a validity window (OpenSSH's
// seconds; CertTimeInfinity: never expires).
func (p *KeyPolicy) CheckCert(validAfter, validBefore uint64) PolicyRule {
	forever := validBefore == gossh.CertTimeInfinity || validBefore > math.MaxInt64
	if forever && (p.RequireCertExpiry || p.MaxCertLifetimeHours > 0) {
		return RuleCertNoExpiry
	}
	if h := p.MaxCertLifetimeHours; h > 0 && validBefore > validAfter && validBefore-validAfter > uint64(h)*3600 {
		return RuleCertLifetime
	}
	return RuleNone
}

// LifetimeMinutes is a key's lifetime as CheckKey takes it: minutes from
// created to expires, rounded up (0 without an expiry).
func LifetimeMinutes(created time.Time, expires *time.Time) int64 {
	if expires == nil {
		return 0
	}
	return LifetimeMinutesMS(created.UnixMilli(), expires.UnixMilli())
}

// LifetimeMinutesMS is LifetimeMinutes on Unix milliseconds.
func LifetimeMinutesMS(createdMS, expiresMS int64) int64 {
	d := expiresMS - createdMS
	if d <= 0 {
		return 0
	}
	return (d + 59999) / 60000
}

// Setting names the setting behind a rule for a key of kind.
func (r PolicyRule) Setting(kind uint8) string {
	switch r {
	case RuleKindForbidden, RuleTooFewBits:
		return KindName(kind) + "_key_restriction"
	case RuleNoExpiry, RuleKeyLifetime:
		return "max_ssh_key_lifetime"
	case RuleCertNoExpiry:
		return "require_ssh_certificate_expiry"
	case RuleCertLifetime:
		return "max_ssh_certificate_lifetime"
	}
	return ""
}

// Explain says in words what rule r of p asks of a key of kind and bits
// (for banners and listings), naming the setting.
func (p *KeyPolicy) Explain(r PolicyRule, kind uint8, bits int) string {
	label := "this key type"
	if kind > 0 && kind < numKinds {
		label = kindLabels[kind]
	}
	switch r {
	case RuleKindForbidden:
		return fmt.Sprintf("%s keys are not allowed (%s)", label, r.Setting(kind))
	case RuleTooFewBits:
		return fmt.Sprintf("%s keys must be at least %d bits, this one has %d (%s)", label, p.Restriction(kind), bits, r.Setting(kind))
	case RuleNoExpiry:
		return fmt.Sprintf("keys must have an expiry date at most %d days after they were added (max_ssh_key_lifetime)", p.MaxKeyLifetimeDays)
	case RuleKeyLifetime:
		return fmt.Sprintf("keys may live at most %d days from when they were added (max_ssh_key_lifetime)", p.MaxKeyLifetimeDays)
	case RuleCertNoExpiry:
		if p.MaxCertLifetimeHours > 0 && !p.RequireCertExpiry {
			return fmt.Sprintf("certificates must expire, within %d hours (max_ssh_certificate_lifetime)", p.MaxCertLifetimeHours)
		}
		return "certificates must have an expiry (require_ssh_certificate_expiry)"
	case RuleCertLifetime:
		return fmt.Sprintf("certificates may be valid for at most %d hours (max_ssh_certificate_lifetime)", p.MaxCertLifetimeHours)
	}
	return ""
}

// AllowedKinds lists the kinds p lets a key have, upper-case, for GitLab's
// "type is forbidden. Must be …" message.
func (p *KeyPolicy) AllowedKinds() []string {
	var out []string
	for _, k := range []uint8{KindRSA, KindECDSA, KindED25519, KindECDSASK, KindED25519SK} {
		if p.Restrictions[k] != -1 {
			out = append(out, kindLabels[k])
		}
	}
	return out
}

// checkAdd applies p when a key is added, with GitLab's messages (field
// "key"): the kind restrictions, and with a lifetime limit an expiry no
// later than that many days from now.
func (p *KeyPolicy) checkAdd(pk *ParsedKey, expiresAt *time.Time, now time.Time) error {
	if err := p.checkKindAdd(pk); err != nil {
		return err
	}
	if d := p.MaxKeyLifetimeDays; d > 0 {
		if expiresAt == nil {
			return invalid("key", "has no expiration date but an expiration date is required for SSH keys on this instance. Contact the instance administrator.")
		}
		if expiresAt.After(now.Add(time.Duration(d) * 24 * time.Hour)) {
			return invalid("key", fmt.Sprintf("has an invalid expiration date. Set a shorter lifetime for the key (at most %d days, until %s) or contact the instance administrator.",
				d, now.Add(time.Duration(d)*24*time.Hour).UTC().Format("2006-01-02")))
		}
	}
	return nil
}

// checkKindAdd applies p's kind restrictions to a key being added (a user
// or deploy key, or a group's CA key).
func (p *KeyPolicy) checkKindAdd(pk *ParsedKey) error {
	kind := KeyKind(pk.Type)
	switch p.CheckKind(kind, pk.Bits) {
	case RuleKindForbidden:
		allowed := p.AllowedKinds()
		if len(allowed) == 0 {
			return invalid("key", "type is forbidden. No key type is allowed on this instance; contact the instance administrator")
		}
		return invalid("key", "type is forbidden. Must be "+exclusiveSentence(allowed))
	case RuleTooFewBits:
		return invalid("key", "must be at least "+strconv.Itoa(p.Restriction(kind))+" bits")
	}
	return nil
}

// exclusiveSentence joins as Rails' to_sentence with "or": "A, B, or C".
func exclusiveSentence(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	case 2:
		return items[0] + " or " + items[1]
	}
	return strings.Join(items[:len(items)-1], ", ") + ", or " + items[len(items)-1]
}

// KeyPolicySettings are the names of the policy's settings, in the order
// the API lists them.
var KeyPolicySettings = []string{
	"dsa_key_restriction", "rsa_key_restriction", "ecdsa_key_restriction", "ecdsa_sk_key_restriction",
	"ed25519_key_restriction", "ed25519_sk_key_restriction",
	"max_ssh_key_lifetime", "max_ssh_certificate_lifetime", "require_ssh_certificate_expiry",
}

// Set changes one setting from its API value (an integer; a boolean for
// require_ssh_certificate_expiry; "" or null clears a lifetime). It
// reports whether name is a policy setting.
func (p *KeyPolicy) Set(name, value string) (known bool, err error) {
	value = strings.TrimSpace(value)
	if kind, ok := strings.CutSuffix(name, "_key_restriction"); ok {
		k := kindByName(kind)
		if k == 0 {
			return false, nil
		}
		n, perr := strconv.Atoi(value)
		if perr != nil {
			return true, invalid(name, "must be an integer: 0 (no restriction), -1 (forbidden) or a minimum size in bits")
		}
		if k == KindDSA {
			if n != -1 {
				return true, invalid(name, "must be -1: keygate never accepts DSA keys (OpenSSH removed them)")
			}
			return true, nil
		}
		sizes := kindSizes[k]
		ok := n == 0 || n == -1
		for _, s := range sizes {
			ok = ok || n == s
		}
		if !ok {
			return true, invalid(name, "must be 0 (no restriction), -1 (forbidden) or one of "+joinInts(sizes))
		}
		p.Restrictions[k] = n
		return true, nil
	}
	switch name {
	case "max_ssh_key_lifetime":
		n, err := lifetime(name, value, MaxKeyLifetimeDays)
		p.MaxKeyLifetimeDays = n
		return true, err
	case "max_ssh_certificate_lifetime":
		n, err := lifetime(name, value, MaxCertLifetimeHours)
		p.MaxCertLifetimeHours = n
		return true, err
	case "require_ssh_certificate_expiry":
		switch strings.ToLower(value) {
		case "true", "1", "t", "yes":
			p.RequireCertExpiry = true
		case "false", "0", "f", "no":
			p.RequireCertExpiry = false
		default:
			return true, invalid(name, "is invalid: must be a boolean")
		}
		return true, nil
	}
	return false, nil
}

func lifetime(name, value string, limit int) (int, error) {
	if value == "" || value == "null" {
		return 0, nil
	}
	n, err := strconv.Atoi(value)
	if err != nil || n < 0 || n > limit {
		return 0, invalid(name, fmt.Sprintf("must be an integer from 1 to %d, or 0 or null for no limit", limit))
	}
	return n, nil
}

func kindByName(name string) uint8 {
	for k := uint8(1); k < numKinds; k++ {
		if kindNames[k] == name {
			return k
		}
	}
	return 0
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

// Values returns the settings as the API shows them (DSA always -1;
// lifetimes nil when unlimited, as GitLab's null).
func (p *KeyPolicy) Values() map[string]any {
	m := map[string]any{"dsa_key_restriction": -1}
	for k := KindRSA; k < numKinds; k++ {
		m[kindNames[k]+"_key_restriction"] = p.Restrictions[k]
	}
	m["max_ssh_key_lifetime"] = nilIfZero(p.MaxKeyLifetimeDays)
	m["max_ssh_certificate_lifetime"] = nilIfZero(p.MaxCertLifetimeHours)
	m["require_ssh_certificate_expiry"] = p.RequireCertExpiry
	return m
}

func nilIfZero(n int) any {
	if n == 0 {
		return nil
	}
	return n
}
