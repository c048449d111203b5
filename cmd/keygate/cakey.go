package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/keygate/keygate/internal/sealed"
	"github.com/keygate/keygate/keystore"
)

// The CA encryption key seals the private keys of managed CAs. It is never
// in the database, so a database dump or an export alone cannot sign:
//   - by default DATA_DIR/ca-encryption.key, created (0600, 64 hex digits)
//     beside the host keys on first start;
//   - --ca-key-file FILE: an existing file (never created: a missing mount
//     must not silently become a new key that opens none of the sealed ones);
//   - --ca-key-credential NAME: the systemd credential NAME
//     ($CREDENTIALS_DIRECTORY/NAME, LoadCredential= or SetCredentialEncrypted=).

// errNoCAKeyFile: the default key file could not be created (a read-only
// data directory); keygate runs without managed CAs signing.
var errNoCAKeyFile = errors.New("the CA encryption key file cannot be created in the read-only data directory")

// defaultCAKeyFile is the CA encryption key's file in the data directory.
const defaultCAKeyFile = "ca-encryption.key"

// loadCAKey loads (or, for the default file, creates) the CA encryption
// key and says where it came from.
func loadCAKey(c *serveConfig) (*sealed.Key, string, error) {
	switch {
	case c.CAKeyCredential != "":
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return nil, "", fmt.Errorf("--ca-key-credential %s: $CREDENTIALS_DIRECTORY is not set (run under systemd with LoadCredential=%s:…)", c.CAKeyCredential, c.CAKeyCredential)
		}
		path := filepath.Join(dir, c.CAKeyCredential)
		k, err := sealed.LoadKey(path, false)
		if err != nil {
			return nil, "", fmt.Errorf("--ca-key-credential %s: %w", c.CAKeyCredential, err)
		}
		return k, "systemd credential " + c.CAKeyCredential, nil
	case c.CAKeyFile != "":
		k, err := sealed.LoadKey(c.CAKeyFile, true)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("--ca-key-file %s does not exist; create one with `(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > %s)`, or leave the flag out for DATA_DIR/%s", c.CAKeyFile, c.CAKeyFile, defaultCAKeyFile)
		} else if err != nil {
			return nil, "", fmt.Errorf("--ca-key-file: %w", err)
		}
		return k, c.CAKeyFile, nil
	}
	path := filepath.Join(c.DataDir, defaultCAKeyFile)
	k, created, err := sealed.LoadOrCreateKeyFile(path)
	if errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES) {
		// A read-only data dir (served read-only) without a key file:
		// keygate runs, but managed CAs cannot be made or sign.
		return nil, "", errNoCAKeyFile
	}
	if err != nil {
		return nil, "", fmt.Errorf("CA encryption key %s: %w", path, err)
	}
	if created {
		return k, path + " (created)", nil
	}
	return k, path, nil
}

// warnSealedCAs names, at start, every managed CA whose private key was
// sealed under another key than the one loaded (it cannot sign until the
// right key is given).
func warnSealedCAs(ctx context.Context, store *keystore.Store, k *sealed.Key, log *slog.Logger) {
	other, err := store.ManagedCAsSealedElsewhere(ctx, k.ID())
	if err != nil {
		log.Warn("checking managed CAs failed", "err", err)
		return
	}
	for _, c := range other {
		if c.Host {
			log.Warn("managed host CA sealed under another CA encryption key: it cannot sign until keygate runs with that key (--ca-key-file)",
				"host_ca_id", c.CAID, "ca_fingerprint", c.Fingerprint, "sealed_under", c.KeyID, "loaded_key", k.ID())
			continue
		}
		log.Warn("managed CA sealed under another CA encryption key: it cannot sign until keygate runs with that key (--ca-key-file)",
			"ca_id", c.CAID, "group_id", c.GroupID, "ca_fingerprint", c.Fingerprint, "sealed_under", c.KeyID, "loaded_key", k.ID())
	}
}
