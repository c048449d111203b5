package krl

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"slices"

	gossh "golang.org/x/crypto/ssh"
)

// Revoked reports whether k revokes key, as OpenSSH's ssh_krl_check_key
// (krl.c) decides: the key's plain form by hash or explicitly; for a
// certificate also its serial (unless 0) or key id in the section of the
// CA that signed it or the wildcard section; and the signing CA key
// itself by hash or explicitly. It reads k as given: Parse's result, or a
// KRL built by hand (ranges need not be normalized).
func (k *KRL) Revoked(key gossh.PublicKey) bool {
	cert, isCert := key.(*gossh.Certificate)
	plain := key
	if isCert {
		plain = cert.Key
	}
	if k.keyRevoked(plain.Marshal()) {
		return true
	}
	if !isCert {
		return false
	}
	ca := cert.SignatureKey.Marshal()
	for _, c := range k.Certs {
		if len(c.CA) != 0 && !bytes.Equal(c.CA, ca) {
			continue
		}
		if slices.Contains(c.KeyIDs, cert.KeyId) {
			return true
		}
		if cert.Serial != 0 {
			for _, r := range c.Serials {
				if r.Lo <= cert.Serial && cert.Serial <= r.Hi {
					return true
				}
			}
		}
	}
	return k.keyRevoked(ca)
}

// keyRevoked checks a plain key blob against the hash and explicit key
// sections.
func (k *KRL) keyRevoked(blob []byte) bool {
	if slices.Contains(k.SHA256, sha256.Sum256(blob)) || slices.Contains(k.SHA1, sha1.Sum(blob)) {
		return true
	}
	return slices.ContainsFunc(k.Keys, func(b []byte) bool { return bytes.Equal(b, blob) })
}
