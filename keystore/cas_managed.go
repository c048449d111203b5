package keystore

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"database/sql"
	"encoding/pem"
	"errors"
	"strings"

	gossh "golang.org/x/crypto/ssh"
)

// Managed CA key types (key_type of POST /groups/:id/ssh_certificates with
// generate=true).
const (
	CAKeyEd25519 = "ed25519"
	CAKeyECDSA   = "ecdsa" // NIST P-256
	CAKeyRSA     = "rsa"   // 3072 bits, signing with rsa-sha2-512
)

// ErrNoCAKey: the store has no sealing key (Config.CAKey), so managed CAs
// can neither be generated nor sign.
var ErrNoCAKey = &ConflictError{Msg: "this keygate has no CA encryption key configured (--ca-key-file): managed SSH certificate authorities cannot be generated or sign"}

// caSealContext binds a sealed CA private key to the CA's public key: a
// sealed key copied into another CA's row does not open.
func caSealContext(fingerprint string) []byte {
	return []byte("keygate managed CA\x00" + fingerprint)
}

// GenerateCA creates a managed CA for a top-level group: keygate generates
// the key pair (keyType ed25519 by default, ecdsa or rsa), seals the
// private key under the store's CA key and keeps it; only the public key
// is ever shown. The private key leaves keygate in no form but the sealed
// one (exports carry that), and is destroyed with the CA.
func (s *Store) GenerateCA(ctx context.Context, a Actor, groupID int64, title, keyType string) (*GroupCA, error) {
	p := problems{}
	title = strings.TrimSpace(title)
	validateText(p, "title", title, true)
	pk, sealedKey, keyType, err := s.generateSealedKey(p, keyType, "keygate-managed-ca", caSealContext)
	if err != nil {
		return nil, err
	}
	return s.insertCA(ctx, a, groupID, &GroupCA{GroupID: groupID, Title: title, Key: pk.Normalized,
		FingerprintSHA256: pk.FingerprintSHA256, Managed: true}, sealedKey, keyType)
}

// generateSealedKey generates a CA key pair of keyType (ed25519 when
// empty, ecdsa or rsa) and seals its private key under the store's CA key,
// bound to context(fingerprint). Problems found so far in p (and a bad
// key_type) come back as one validation error before anything is made.
func (s *Store) generateSealedKey(p problems, keyType, comment string, context func(fingerprint string) []byte) (*ParsedKey, string, string, error) {
	if keyType == "" {
		keyType = CAKeyEd25519
	}
	var gen func() (crypto.Signer, error)
	switch keyType {
	case CAKeyEd25519:
		gen = func() (crypto.Signer, error) { _, k, err := ed25519.GenerateKey(rand.Reader); return k, err }
	case CAKeyECDSA:
		gen = func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }
	case CAKeyRSA:
		gen = func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 3072) }
	default:
		p.add("key_type", "must be one of ed25519, ecdsa, rsa")
	}
	if err := p.err(); err != nil {
		return nil, "", "", err
	}
	if s.caKey == nil {
		return nil, "", "", ErrNoCAKey
	}
	priv, err := gen()
	if err != nil {
		return nil, "", "", err
	}
	signer, err := gossh.NewSignerFromSigner(priv)
	if err != nil {
		return nil, "", "", err
	}
	pk, err := ParseCAKey(strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey()))) + " " + comment)
	if err != nil {
		return nil, "", "", err
	}
	block, err := gossh.MarshalPrivateKey(priv, comment+" "+pk.FingerprintSHA256)
	if err != nil {
		return nil, "", "", err
	}
	plain := pem.EncodeToMemory(block)
	sealedKey, err := s.caKey.Seal(plain, context(pk.FingerprintSHA256))
	clear(plain)
	clear(block.Bytes)
	if err != nil {
		return nil, "", "", err
	}
	return pk, sealedKey, keyType, nil
}

// caSigner opens the sealed private key of managed CA id (of group
// groupID) and returns a signer for it.
func (t *tx) caSigner(ctx context.Context, groupID, id int64) (gossh.Signer, *GroupCA, error) {
	if t.s.caKey == nil {
		return nil, nil, ErrNoCAKey
	}
	var sealedKey sql.NullString
	c, err := scanCA(t.queryRow(ctx, `SELECT `+caCols+` FROM group_cas WHERE id = ? AND group_id = ?`, id, groupID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, notFound("SSH Certificate")
	} else if err != nil {
		return nil, nil, err
	}
	if err := t.queryRow(ctx, `SELECT sealed_private_key FROM group_cas WHERE id = ?`, id).Scan(&sealedKey); err != nil {
		return nil, nil, err
	}
	if !c.Managed || !sealedKey.Valid {
		return nil, nil, invalid("ca_id", "is not a managed certificate authority (keygate holds no private key for it)")
	}
	signer, err := t.s.openSealedSigner(sealedKey.String, caSealContext(c.FingerprintSHA256), "managed certificate authority "+c.FingerprintSHA256)
	if err != nil {
		return nil, nil, err
	}
	return signer, c, nil
}

// openSealedSigner opens a sealed CA private key and returns a signer for
// it (an RSA key signs with rsa-sha2-512 only). what names the CA in the
// error a wrong or lost CA encryption key gives.
func (s *Store) openSealedSigner(sealedKey string, context []byte, what string) (gossh.Signer, error) {
	if s.caKey == nil {
		return nil, ErrNoCAKey
	}
	plain, err := s.caKey.Open(sealedKey, context)
	if err != nil {
		// A wrong or lost --ca-key-file: say so, never the key material.
		return nil, &ConflictError{Msg: "the private key of " + what +
			" cannot be opened with this keygate's CA encryption key (--ca-key-file): " + err.Error()}
	}
	defer clear(plain)
	raw, err := gossh.ParseRawPrivateKey(plain)
	if err != nil {
		return nil, err
	}
	signer, err := gossh.NewSignerFromKey(raw)
	if err != nil {
		return nil, err
	}
	if signer.PublicKey().Type() == gossh.KeyAlgoRSA {
		as, ok := signer.(gossh.AlgorithmSigner)
		if !ok {
			return nil, errors.New("keystore: RSA CA signer without algorithm choice")
		}
		if signer, err = gossh.NewSignerWithAlgorithms(as, []string{gossh.KeyAlgoRSASHA512}); err != nil {
			return nil, err
		}
	}
	return signer, nil
}

// newestManagedCA returns the id of group groupID's newest managed CA (0:
// none). During a rotation the newer CA signs while the older one still
// verifies what it issued.
func (t *tx) newestManagedCA(ctx context.Context, groupID int64) (int64, error) {
	var id sql.NullInt64
	err := t.queryRow(ctx, `SELECT MAX(id) FROM group_cas WHERE group_id = ? AND managed = 1`, groupID).Scan(&id)
	return id.Int64, err
}

// SealedElsewhere is a managed CA whose private key is sealed under
// another key than the one a node holds.
type SealedElsewhere struct {
	CAID, GroupID int64 // GroupID 0: a host CA (Host)
	Host          bool
	Fingerprint   string
	KeyID         string // the id of the key it is sealed under
}

// ManagedCAsSealedElsewhere lists the managed CAs whose private key was not
// sealed under the key with id keyID (see sealed.Key.ID).
func (s *Store) ManagedCAsSealedElsewhere(ctx context.Context, keyID string) ([]SealedElsewhere, error) {
	var out []SealedElsewhere
	err := s.forEachRow(ctx, `SELECT id, group_id, fingerprint_sha256, COALESCE(sealed_private_key, '') FROM group_cas WHERE managed = 1 ORDER BY id`,
		func(sc func(...any) error) error {
			var c SealedElsewhere
			var v string
			if err := sc(&c.CAID, &c.GroupID, &c.Fingerprint, &v); err != nil {
				return err
			}
			if id, ok := sealedKeyID(v); !ok || id != keyID {
				c.KeyID = id
				out = append(out, c)
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	err = s.forEachRow(ctx, `SELECT id, fingerprint_sha256, sealed_private_key FROM host_cas WHERE sealed_private_key IS NOT NULL ORDER BY id`,
		func(sc func(...any) error) error {
			c := SealedElsewhere{Host: true}
			var v string
			if err := sc(&c.CAID, &c.Fingerprint, &v); err != nil {
				return err
			}
			if id, ok := sealedKeyID(v); !ok || id != keyID {
				c.KeyID = id
				out = append(out, c)
			}
			return nil
		})
	return out, err
}

// sealedKeyID reads the key id of a sealed value ("kgsealed1:ID:…").
func sealedKeyID(v string) (string, bool) {
	parts := strings.SplitN(v, ":", 3)
	if len(parts) != 3 || parts[0] != "kgsealed1" {
		return "", false
	}
	return parts[1], true
}
