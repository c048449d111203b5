package sshd

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	gossh "golang.org/x/crypto/ssh"
)

// LoadOrCreateHostKeys returns the host keys in dir (ssh_host_ed25519_key,
// ssh_host_ecdsa_key, ssh_host_rsa_key), generating missing ones once with
// mode 0600. RSA keys are 3072 bits.
func LoadOrCreateHostKeys(dir string) ([]gossh.Signer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var out []gossh.Signer
	for _, spec := range []struct {
		name string
		gen  func() (crypto.Signer, error)
	}{
		{hostKeyNames[0], func() (crypto.Signer, error) { _, k, err := ed25519.GenerateKey(rand.Reader); return k, err }},
		{hostKeyNames[1], func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }},
		{hostKeyNames[2], func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 3072) }},
	} {
		path := filepath.Join(dir, spec.name)
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			key, err := spec.gen()
			if err != nil {
				return nil, err
			}
			block, err := gossh.MarshalPrivateKey(key, "keygate host key")
			if err != nil {
				return nil, err
			}
			data = pem.EncodeToMemory(block)
			tmp := path + ".tmp"
			if err := os.WriteFile(tmp, data, 0o600); err != nil {
				return nil, err
			}
			if err := os.Rename(tmp, path); err != nil {
				return nil, err
			}
			signer, err := gossh.NewSignerFromKey(key)
			if err != nil {
				return nil, err
			}
			pubPath := path + ".pub"
			_ = os.WriteFile(pubPath, gossh.MarshalAuthorizedKey(signer.PublicKey()), 0o644)
		} else if err != nil {
			return nil, err
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("sshd: host key %s is readable by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
		}
		signer, err := gossh.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("sshd: host key %s: %w", path, err)
		}
		out = append(out, signer)
	}
	return out, nil
}

// hostKeyNames are the host key files, in LoadOrCreateHostKeys's order.
var hostKeyNames = []string{"ssh_host_ed25519_key", "ssh_host_ecdsa_key", "ssh_host_rsa_key"}

// LoadHostCertificates returns a certificate signer for each OpenSSH host
// certificate of the host keys: DATA_DIR/<key>-cert.pub when present
// (OpenSSH's naming, e.g. ssh_host_ed25519_key-cert.pub) and every file in
// files (--host-certificate). Each must be a host certificate of one of
// keys, and a key has at most one. Clients with an @cert-authority line
// for the signing CA then verify the server without a known_hosts entry
// for the key itself; the plain keys are still offered (and announced for
// UpdateHostKeys) to every other client. An RSA key's certificate signs
// with SHA-2 only, as the plain key does.
func LoadHostCertificates(dir string, files []string, keys []gossh.Signer) ([]gossh.Signer, error) {
	var paths []string
	for _, name := range hostKeyNames {
		p := filepath.Join(dir, name+"-cert.pub")
		if _, err := os.Stat(p); err == nil {
			paths = append(paths, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	for _, f := range files {
		if f != "" && !slices.Contains(paths, f) {
			paths = append(paths, f)
		}
	}
	var out []gossh.Signer
	used := map[string]string{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("sshd: host certificate: %w", err)
		}
		pub, _, _, _, err := gossh.ParseAuthorizedKey(data)
		if err != nil {
			return nil, fmt.Errorf("sshd: host certificate %s: %w", p, err)
		}
		cert, ok := pub.(*gossh.Certificate)
		if !ok {
			return nil, fmt.Errorf("sshd: host certificate %s: a plain %s key, not a certificate", p, pub.Type())
		}
		if cert.CertType != gossh.HostCert {
			return nil, fmt.Errorf("sshd: host certificate %s: a user certificate (sign host keys with ssh-keygen -h)", p)
		}
		var key gossh.Signer
		for _, k := range keys {
			if bytes.Equal(k.PublicKey().Marshal(), cert.Key.Marshal()) {
				key = k
			}
		}
		if key == nil {
			return nil, fmt.Errorf("sshd: host certificate %s certifies %s, none of the host keys", p, gossh.FingerprintSHA256(cert.Key))
		}
		fp := gossh.FingerprintSHA256(cert.Key)
		if prev, dup := used[fp]; dup {
			return nil, fmt.Errorf("sshd: host certificates %s and %s certify the same host key %s", prev, p, fp)
		}
		used[fp] = p
		s, err := hostCertSigner(cert, key)
		if err != nil {
			return nil, fmt.Errorf("sshd: host certificate %s: %w", p, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// hostCertSigner presents cert with its host key. An RSA key's certificate
// signs with SHA-2 only, as the plain key does.
func hostCertSigner(cert *gossh.Certificate, key gossh.Signer) (gossh.Signer, error) {
	if as, ok := key.(gossh.AlgorithmSigner); ok && key.PublicKey().Type() == gossh.KeyAlgoRSA {
		var err error
		if key, err = gossh.NewSignerWithAlgorithms(as, []string{gossh.KeyAlgoRSASHA512, gossh.KeyAlgoRSASHA256}); err != nil {
			return nil, err
		}
	}
	return gossh.NewCertSigner(cert, key)
}

// checkHostCertificates: every certificate signer presents a host
// certificate of one of the host keys.
func checkHostCertificates(certs, keys []gossh.Signer) error {
	for _, s := range certs {
		cert, ok := s.PublicKey().(*gossh.Certificate)
		if !ok || cert.CertType != gossh.HostCert {
			return errors.New("sshd: HostCertificates holds something other than a host certificate")
		}
		if !slices.ContainsFunc(keys, func(k gossh.Signer) bool { return bytes.Equal(k.PublicKey().Marshal(), cert.Key.Marshal()) }) {
			return errors.New("sshd: a host certificate certifies none of the host keys")
		}
	}
	return nil
}
