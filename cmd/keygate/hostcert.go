package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
)

// logHostCertificates names each host certificate keygate presents, and
// warns when clients will refuse it: outside its validity window, or not
// naming --hostname among its principals (OpenSSH matches them against
// the name the client connects to).
func logHostCertificates(log *slog.Logger, certs []gossh.Signer, hostname string, now time.Time) {
	for _, s := range certs {
		cert, ok := s.PublicKey().(*gossh.Certificate)
		if !ok {
			continue
		}
		attrs := []any{"type", cert.Key.Type(), "key", gossh.FingerprintSHA256(cert.Key),
			"ca", gossh.FingerprintSHA256(cert.SignatureKey), "key_id", cert.KeyId, "serial", cert.Serial, "principals", cert.ValidPrincipals}
		if cert.ValidBefore != gossh.CertTimeInfinity {
			attrs = append(attrs, "valid_before", time.Unix(int64(cert.ValidBefore), 0).UTC())
		}
		log.Info("host certificate", attrs...)
		unix := uint64(now.Unix())
		switch {
		case unix < cert.ValidAfter:
			log.Warn("host certificate not valid yet: clients refuse it until then", "key", gossh.FingerprintSHA256(cert.Key),
				"valid_after", time.Unix(int64(cert.ValidAfter), 0).UTC())
		case cert.ValidBefore != gossh.CertTimeInfinity && unix >= cert.ValidBefore:
			log.Warn("host certificate expired: clients refuse it", "key", gossh.FingerprintSHA256(cert.Key),
				"valid_before", time.Unix(int64(cert.ValidBefore), 0).UTC())
		}
		if len(cert.ValidPrincipals) > 0 && !slices.Contains(cert.ValidPrincipals, hostname) {
			log.Warn("host certificate does not name --hostname among its principals: clients connecting by that name refuse it",
				"key", gossh.FingerprintSHA256(cert.Key), "hostname", hostname, "principals", cert.ValidPrincipals)
		}
	}
}

// readHostCertificates reads the host certificates keygate serve would
// present (DATA_DIR/<host key>-cert.pub and the comma-separated files),
// public parts only: keygate hostkeys needs no private key.
func readHostCertificates(dataDir, files string) ([]*gossh.Certificate, error) {
	var paths []string
	for _, name := range []string{"ssh_host_ed25519_key", "ssh_host_ecdsa_key", "ssh_host_rsa_key"} {
		p := filepath.Join(dataDir, name+"-cert.pub")
		if _, err := os.Stat(p); err == nil {
			paths = append(paths, p)
		}
	}
	for _, f := range strings.Split(files, ",") {
		if f = strings.TrimSpace(f); f != "" && !slices.Contains(paths, f) {
			paths = append(paths, f)
		}
	}
	var out []*gossh.Certificate
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		pub, _, _, _, err := gossh.ParseAuthorizedKey(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		cert, ok := pub.(*gossh.Certificate)
		if !ok || cert.CertType != gossh.HostCert {
			return nil, fmt.Errorf("%s: not an OpenSSH host certificate", p)
		}
		out = append(out, cert)
	}
	return out, nil
}

// printCertAuthorities prints, for the host certificates, what each
// certifies and one @cert-authority known_hosts line per signing CA: a
// client holding only that line connects under StrictHostKeyChecking=yes
// with no prompt, and keeps trusting the server across host key changes
// the CA certifies.
func printCertAuthorities(w io.Writer, known string, certs []*gossh.Certificate) {
	if len(certs) == 0 {
		return
	}
	fmt.Fprintln(w, "# host certificates:")
	var cas []gossh.PublicKey
	for _, c := range certs {
		until := "forever"
		if c.ValidBefore != gossh.CertTimeInfinity {
			until = time.Unix(int64(c.ValidBefore), 0).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "# %s %s certified by %s for %s until %s\n", c.Key.Type(), gossh.FingerprintSHA256(c.Key),
			gossh.FingerprintSHA256(c.SignatureKey), strings.Join(c.ValidPrincipals, ","), until)
		if !slices.ContainsFunc(cas, func(k gossh.PublicKey) bool { return bytes.Equal(k.Marshal(), c.SignatureKey.Marshal()) }) {
			cas = append(cas, c.SignatureKey)
		}
	}
	fmt.Fprintln(w, "# known_hosts, trusting the host CA instead of the keys:")
	for _, ca := range cas {
		fmt.Fprintf(w, "@cert-authority %s %s\n", known, strings.TrimSpace(string(gossh.MarshalAuthorizedKey(ca))))
	}
}

// managedHostCAs reads keygate's managed host CAs from the keystore (none
// when the data directory holds no SQLite keystore and --db is empty).
func managedHostCAs(ctx context.Context, db dbConfig) ([]*keystore.HostCA, error) {
	dsn, err := db.dsn(true)
	if err != nil {
		if db.DB == "" {
			return nil, nil // no keystore here: no managed host CA
		}
		return nil, err
	}
	s, err := keystore.Open(ctx, keystore.Config{DSN: dsn, NoMigrate: true})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	cas, _, err := s.ListHostCAs(ctx, keystore.Page{PerPage: -1})
	if err != nil {
		return nil, fmt.Errorf("reading the managed host CAs from %s (run keygate migrate if this keygate is newer): %w", where(dsn), err)
	}
	return cas, nil
}

// printManagedHostCAs prints the @cert-authority line of each managed host
// CA: keygate presents certificates of the first (the oldest) for its host
// keys that have no certificate file; during a rotation clients hold both.
func printManagedHostCAs(w io.Writer, known string, cas []*keystore.HostCA) {
	if len(cas) == 0 {
		return
	}
	fmt.Fprintln(w, "# known_hosts, trusting keygate's managed host CA (keygate signs with the first):")
	for _, c := range cas {
		fields := strings.Fields(c.Key)
		fmt.Fprintf(w, "@cert-authority %s %s %s keygate host CA %d\n", known, fields[0], fields[1], c.ID)
	}
}
