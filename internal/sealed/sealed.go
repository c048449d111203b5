// Package sealed encrypts small secrets (the private keys of managed
// certificate authorities) at rest with AES-256-GCM under a 32-byte key
// that is kept outside the database: a key file beside the host keys, or a
// file or systemd credential an operator names.
//
// A sealed value is text: "kgsealed1:" + the key's id (8 hex digits of the
// SHA-256 of the key) + ":" + base64(nonce || ciphertext || tag). The
// caller's context (e.g. the CA's public key fingerprint) is the
// additional data, so a sealed value moved to another row does not open.
package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the size of a sealing key.
const KeySize = 32

const prefix = "kgsealed1:"

// Key seals and opens values. The zero value is unusable; make one with
// NewKey, LoadKey or LoadOrCreateKeyFile.
type Key struct {
	aead cipher.AEAD
	id   string
}

// ErrWrongKey is returned when a value was sealed under another key.
var ErrWrongKey = errors.New("sealed: the value was sealed under another key")

// NewKey makes a Key from 32 bytes.
func NewKey(b []byte) (*Key, error) {
	if len(b) != KeySize {
		return nil, fmt.Errorf("sealed: a key is %d bytes, not %d", KeySize, len(b))
	}
	block, err := aes.NewCipher(b)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("keygate sealing key id\x00"), b...))
	return &Key{aead: aead, id: hex.EncodeToString(sum[:4])}, nil
}

// ID names the key (not secret): 8 hex digits.
func (k *Key) ID() string { return k.id }

// Seal encrypts plain, bound to context.
func (k *Key) Seal(plain, context []byte) (string, error) {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := k.aead.Seal(nonce, nonce, plain, context)
	return prefix + k.id + ":" + base64.StdEncoding.EncodeToString(out), nil
}

// Open decrypts a value Seal made with this key and the same context.
func (k *Key) Open(sealed string, context []byte) ([]byte, error) {
	rest, ok := strings.CutPrefix(sealed, prefix)
	if !ok {
		return nil, errors.New("sealed: not a sealed value")
	}
	id, b64, ok := strings.Cut(rest, ":")
	if !ok {
		return nil, errors.New("sealed: malformed value")
	}
	if id != k.id {
		return nil, fmt.Errorf("%w (sealed under key %s, this is key %s)", ErrWrongKey, id, k.id)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) < k.aead.NonceSize()+k.aead.Overhead() {
		return nil, errors.New("sealed: malformed value")
	}
	n := k.aead.NonceSize()
	plain, err := k.aead.Open(nil, raw[:n], raw[n:], context)
	if err != nil {
		return nil, errors.New("sealed: the value does not open (altered, or sealed for another record)")
	}
	return plain, nil
}

// LoadKey reads a key file: exactly 32 raw bytes, or 64 hex digits, or the
// base64 of 32 bytes (a trailing newline is allowed). A key file readable
// by group or others is refused unless it is a systemd credential (whose
// directory systemd makes private).
func LoadKey(path string, checkMode bool) (*Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if checkMode {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("sealed: key file %s is readable by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
		}
	}
	return parseKey(b, path)
}

func parseKey(b []byte, path string) (*Key, error) {
	if len(b) == KeySize {
		return NewKey(b)
	}
	s := strings.TrimSpace(string(b))
	if raw, err := hex.DecodeString(s); err == nil && len(raw) == KeySize {
		return NewKey(raw)
	}
	if raw, err := base64.StdEncoding.DecodeString(s); err == nil && len(raw) == KeySize {
		return NewKey(raw)
	}
	return nil, fmt.Errorf("sealed: key file %s holds no 32-byte key (32 raw bytes, 64 hex digits or base64 of 32 bytes)", path)
}

// LoadOrCreateKeyFile reads the key file at path, creating it (mode 0600,
// 64 hex digits) when it does not exist. created reports a new key.
func LoadOrCreateKeyFile(path string) (k *Key, created bool, err error) {
	k, err = LoadKey(path, true)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, err
	}
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return nil, false, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(hex.EncodeToString(raw)+"\n"), 0o600); err != nil {
		return nil, false, err
	}
	// Never replace a key another process created meanwhile: a value
	// sealed under it would no longer open.
	if err := os.Link(tmp, path); err != nil {
		os.Remove(tmp)
		if errors.Is(err, fs.ErrExist) {
			k, err = LoadKey(path, true)
			return k, false, err
		}
		return nil, false, err
	}
	os.Remove(tmp)
	k, err = NewKey(raw)
	return k, true, err
}
