package keystore

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"strings"

	gossh "golang.org/x/crypto/ssh"
)

// Limits GitLab applies to keys.
const (
	MaxKeyLength   = 5000
	MaxTitleLength = 255
	MinRSABits     = 2048
)

// allowedKeyTypes are the public key algorithms keygate stores.
var allowedKeyTypes = map[string]bool{
	gossh.KeyAlgoED25519:    true,
	gossh.KeyAlgoECDSA256:   true,
	gossh.KeyAlgoECDSA384:   true,
	gossh.KeyAlgoECDSA521:   true,
	gossh.KeyAlgoRSA:        true,
	gossh.KeyAlgoSKED25519:  true,
	gossh.KeyAlgoSKECDSA256: true,
}

const forbiddenTypeMsg = "type is forbidden. Must be ED25519, ECDSA, RSA, ED25519_SK or ECDSA_SK"

// ParsedKey is a validated SSH public key in canonical form.
type ParsedKey struct {
	Public            gossh.PublicKey
	Normalized        string // "type base64 [comment]"
	Type              string
	Bits              int
	FingerprintSHA256 string
	FingerprintMD5    string
}

// ParseUserKey validates text as a user's SSH public key: a single
// authorized_keys line without options (refused by name: keygate enforces
// none of them), comment kept. Errors are
// *ValidationError on field "key". The text is never logged.
func ParseUserKey(text string) (*ParsedKey, error) {
	return parseKey(text, "key", false)
}

// ParseCAKey validates text as a group CA public key.
func ParseCAKey(text string) (*ParsedKey, error) {
	return parseKey(text, "key", true)
}

func parseKey(text, field string, ca bool) (*ParsedKey, error) {
	text = strings.TrimSpace(text)
	switch {
	case text == "":
		return nil, invalid(field, "can't be blank")
	case strings.Contains(text, "-----BEGIN") && strings.Contains(text, "PUBLIC KEY-----") && !strings.Contains(text, "PRIVATE"):
		return nil, invalid(field, "is a PEM public key; convert it to OpenSSH format first (ssh-keygen -i -m PKCS8 -f key.pem)")
	case strings.Contains(text, "BEGIN SSH2 PUBLIC KEY"):
		// RFC 4716, as PuTTYgen and some SSH2 servers write public keys.
		return nil, invalid(field, "is an RFC 4716 (SSH2/PuTTY) public key; convert it to the OpenSSH one-line format first: ssh-keygen -i -f key.pub")
	case looksPrivate(text):
		// Never echo, store or log the text.
		return nil, invalid(field, "is a private key; paste the public key (the .pub file) instead, and consider this private key exposed")
	case len(text) > MaxKeyLength:
		return nil, invalid(field, "is too long (maximum is 5000 characters)")
	case strings.ContainsAny(text, "\r\n"):
		return nil, invalid(field, "must be a single line holding one public key (an OpenSSH .pub file; convert other formats with ssh-keygen -i -f key.pub)")
	case strings.ContainsRune(text, 0):
		return nil, invalid(field, "is invalid")
	}
	pub, comment, options, rest, err := gossh.ParseAuthorizedKey([]byte(text))
	if err != nil {
		if strings.HasPrefix(text, gossh.KeyAlgoDSA+" ") || strings.Contains(text, " "+gossh.KeyAlgoDSA+" ") {
			return nil, invalid(field, forbiddenTypeMsg)
		}
		return nil, invalid(field, "is invalid: not an OpenSSH public key")
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, invalid(field, "must be a single line holding one public key")
	}
	if _, isCert := pub.(*gossh.Certificate); isCert {
		if ca {
			return nil, invalid(field, "must be a CA public key, not a certificate")
		}
		return nil, invalid(field, "is a certificate; add the plain public key, or register its CA with the group")
	}
	typ := pub.Type()
	if typ == gossh.KeyAlgoDSA {
		return nil, invalid(field, forbiddenTypeMsg)
	}
	if !allowedKeyTypes[typ] {
		return nil, invalid(field, forbiddenTypeMsg)
	}
	bits := keyBits(pub)
	if typ == gossh.KeyAlgoRSA && bits < MinRSABits {
		return nil, invalid(field, "RSA key must be at least 2048 bits")
	}
	fp := gossh.FingerprintSHA256(pub)
	if isBanned(fp) {
		return nil, invalid(field, "cannot be used because it belongs to a compromised private key.")
	}
	if ca {
		// "cert-authority" only says what an authorized_keys line for a CA
		// is; it asks for nothing keygate does not do.
		kept := options[:0]
		for _, o := range options {
			if !strings.EqualFold(o, "cert-authority") {
				kept = append(kept, o)
			}
		}
		options = kept
	}
	if len(options) > 0 {
		// keygate enforces none of authorized_keys' options (from=,
		// command=, no-port-forwarding…): stripping them silently would
		// drop a restriction the owner meant, so the key is refused.
		name, _, _ := strings.Cut(options[0], "=")
		what := fmt.Sprintf("the authorized_keys option %q", name)
		if len(name) > 32 || strings.Trim(strings.ToLower(name), "abcdefghijklmnopqrstuvwxyz-") != "" {
			what = "authorized_keys options" // never echo what may not be an option name
		}
		return nil, invalid(field, "has "+what+", which keygate does not enforce; remove the options before the key type (restrict access with groups, bastion targets or certificates instead)")
	}
	normalized := typ + " " + base64.StdEncoding.EncodeToString(pub.Marshal())
	if c := sanitizeComment(comment); c != "" {
		normalized += " " + c
	}
	return &ParsedKey{
		Public:            pub,
		Normalized:        normalized,
		Type:              typ,
		Bits:              bits,
		FingerprintSHA256: fp,
		FingerprintMD5:    gossh.FingerprintLegacyMD5(pub),
	}, nil
}

// looksPrivate reports whether text looks like a pasted private key.
func looksPrivate(text string) bool {
	return strings.Contains(text, "PRIVATE KEY") ||
		strings.Contains(text, "-----BEGIN") ||
		strings.HasPrefix(text, "PuTTY-User-Key-File")
}

// sanitizeComment keeps printable characters of a key comment.
func sanitizeComment(c string) string {
	c = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, c)
	return strings.TrimSpace(c)
}

// keyBits reports the size of a public key in bits.
func keyBits(pub gossh.PublicKey) int {
	switch pub.Type() {
	case gossh.KeyAlgoED25519, gossh.KeyAlgoSKED25519, gossh.KeyAlgoSKECDSA256:
		return 256
	}
	cpk, ok := pub.(gossh.CryptoPublicKey)
	if !ok {
		return 0
	}
	switch k := cpk.CryptoPublicKey().(type) {
	case *rsa.PublicKey:
		return k.N.BitLen()
	case *ecdsa.PublicKey:
		return k.Curve.Params().BitSize
	}
	return 0
}
