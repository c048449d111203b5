package sshd

import (
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
		{"ssh_host_ed25519_key", func() (crypto.Signer, error) { _, k, err := ed25519.GenerateKey(rand.Reader); return k, err }},
		{"ssh_host_ecdsa_key", func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }},
		{"ssh_host_rsa_key", func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 3072) }},
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
