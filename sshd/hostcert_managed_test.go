package sshd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/internal/sealed"
	"github.com/keygate/keygate/internal/testutil"
	"github.com/keygate/keygate/keystore"
)

// hostKeySeen dials addr and returns the host key the server presented
// (a certificate when the client prefers one and the server has it).
func hostKeySeen(t *testing.T, addr string, cc *gossh.ClientConfig) gossh.PublicKey {
	t.Helper()
	var seen gossh.PublicKey
	c := *cc
	c.HostKeyCallback = func(_ string, _ net.Addr, key gossh.PublicKey) error { seen = key; return nil }
	client, err := gossh.Dial("tcp", addr, &c)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	client.Close()
	return seen
}

// TestManagedHostCertificates: with a managed host CA, keygate presents
// for each host key without a certificate file a certificate the CA
// signed for --hostname and the configured names, which x/crypto's
// CertChecker accepts; it renews it after half of its validity
// without a restart (a new serial on the next connection), a key with a
// certificate from a file keeps that one; deleting the CA or revoking the
// certificate withdraws it within one check interval, a new CA brings one
// back, and no host CA means plain keys.
func TestManagedHostCertificates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := testutil.NewClock(time.Now())
	caKey, err := sealed.NewKey([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := keystore.Open(ctx, keystore.Config{DSN: filepath.Join(t.TempDir(), "keygate.db"), Now: clock.Now, CAKey: caKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })

	// An ECDSA host key with a certificate from a file (another CA), the
	// ed25519 one left to the managed CA.
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecSigner, _ := gossh.NewSignerFromKey(ecPriv)
	fileCA := testutil.NewSigner(t)
	fileCert := &gossh.Certificate{Key: ecSigner.PublicKey(), CertType: gossh.HostCert, KeyId: "from a file", Serial: 7,
		ValidPrincipals: []string{"keygate.example"}, ValidBefore: gossh.CertTimeInfinity}
	if err := fileCert.SignCert(rand.Reader, fileCA); err != nil {
		t.Fatal(err)
	}
	fileSigner, _ := gossh.NewCertSigner(fileCert, ecSigner)
	logs := &testutil.SyncBuffer{}
	s, addr, cc := limitsServer(t, func(c *Config) {
		c.HostKeys = append(c.HostKeys, ecSigner)
		c.HostCertificates = []gossh.Signer{fileSigner}
		c.HostCA = store
		c.Hostname = "keygate.example"
		c.HostCertNames = []string{"bastion.example", "keygate.example"}
		// The loop runs too; the test also refreshes by hand, so that
		// each step is done before the next connection.
		c.HostCertCheckInterval = 20 * time.Millisecond
		c.Log = slog.New(slog.NewTextHandler(logs, nil))
	})
	edOnly := &gossh.ClientConfig{User: cc.User, Auth: cc.Auth, Timeout: cc.Timeout,
		HostKeyAlgorithms: []string{gossh.CertAlgoED25519v01, gossh.KeyAlgoED25519}}
	ecOnly := &gossh.ClientConfig{User: cc.User, Auth: cc.Auth, Timeout: cc.Timeout,
		HostKeyAlgorithms: []string{gossh.CertAlgoECDSA256v01, gossh.KeyAlgoECDSA256}}
	if k := hostKeySeen(t, addr, edOnly); k.Type() != gossh.KeyAlgoED25519 {
		t.Fatalf("without a host CA the server presents %s", k.Type())
	}

	hostCA, err := store.GenerateHostCA(ctx, keystore.Actor{}, "hosts", "")
	if err != nil {
		t.Fatal(err)
	}
	caPub, _, _, _, _ := gossh.ParseAuthorizedKey([]byte(hostCA.Key))
	checker := &gossh.CertChecker{IsHostAuthority: func(k gossh.PublicKey, _ string) bool {
		return string(k.Marshal()) == string(caPub.Marshal())
	}}
	s.RefreshHostCertificates(ctx)
	certOf := func(cfg *gossh.ClientConfig) *gossh.Certificate {
		t.Helper()
		k := hostKeySeen(t, addr, cfg)
		cert, ok := k.(*gossh.Certificate)
		if !ok {
			t.Fatalf("the server presents a plain %s key", k.Type())
		}
		return cert
	}
	first := certOf(edOnly)
	for _, name := range []string{"keygate.example", "bastion.example"} {
		if err := checker.CheckHostKey(name+":22", nil, first); err != nil {
			t.Errorf("a client connecting to %s refuses the certificate: %v", name, err)
		}
	}
	if err := checker.CheckHostKey("elsewhere.example:22", nil, first); err == nil {
		t.Error("the certificate is good for a name it was not signed for")
	}
	if len(first.ValidPrincipals) != 2 || first.ValidBefore-first.ValidAfter != uint64((keystore.OwnHostCertTTL+time.Minute)/time.Second) {
		t.Errorf("certificate principals %v, window %d s", first.ValidPrincipals, first.ValidBefore-first.ValidAfter)
	}
	if got := certOf(ecOnly); got.Serial != 7 || got.KeyId != "from a file" {
		t.Errorf("the ECDSA key's certificate from a file was replaced: serial %d, %q", got.Serial, got.KeyId)
	}
	if _, total, _ := store.ListHostCertificates(ctx, keystore.HostCertFilter{Own: ptrBool(true)}, keystore.Page{}); total != 1 {
		t.Errorf("%d own certificates recorded, want 1 (the ed25519 key only)", total)
	}

	// Unchanged until half of the validity, then renewed.
	clock.Advance(14 * 24 * time.Hour)
	s.RefreshHostCertificates(ctx)
	if got := certOf(edOnly); got.Serial != first.Serial {
		t.Errorf("renewed early: serial %d, was %d", got.Serial, first.Serial)
	}
	clock.Advance(2 * 24 * time.Hour)
	s.RefreshHostCertificates(ctx)
	renewed := certOf(edOnly)
	if renewed.Serial == first.Serial || renewed.ValidBefore <= first.ValidBefore {
		t.Fatalf("not renewed after 16 days: serial %d valid before %d (was %d, %d)", renewed.Serial, renewed.ValidBefore, first.Serial, first.ValidBefore)
	}
	if !strings.Contains(logs.String(), "renewed=true") {
		t.Errorf("the renewal is not logged:\n%s", logs)
	}

	// The loop alone: deleting the CA withdraws the certificate within an
	// interval, a new CA brings one back, a revocation withdraws it again.
	if err := store.DeleteHostCA(ctx, keystore.Actor{}, hostCA.ID); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the certificate to be withdrawn", 10*time.Second, func() bool {
		return len(s.managedHostCerts.current()) == 0
	})
	if k := hostKeySeen(t, addr, edOnly); k.Type() != gossh.KeyAlgoED25519 {
		t.Errorf("after the CA was deleted the server presents %s", k.Type())
	}
	if _, err := store.GenerateHostCA(ctx, keystore.Actor{}, "hosts 2", "ecdsa"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "a certificate of the new CA", 10*time.Second, func() bool {
		return len(s.managedHostCerts.current()) == 1
	})
	current := certOf(edOnly)
	list, _, err := store.ListHostCertificates(ctx, keystore.HostCertFilter{Own: ptrBool(true), Revoked: ptrBool(false)}, keystore.Page{PerPage: 1})
	if err != nil || len(list) != 1 || list[0].Serial != current.Serial {
		t.Fatalf("the presented certificate is not the newest record: %v, %v", list, err)
	}
	if _, err := store.RevokeHostCertificate(ctx, keystore.Actor{}, list[0].ID, "host key copied"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the revoked certificate to be withdrawn", 10*time.Second, func() bool {
		return len(s.managedHostCerts.current()) == 0
	})
	if k := hostKeySeen(t, addr, edOnly); k.Type() != gossh.KeyAlgoED25519 {
		t.Errorf("after the revocation the server presents %s", k.Type())
	}
	if !strings.Contains(logs.String(), "managed host certificate revoked") {
		t.Errorf("the revocation is not logged:\n%s", logs)
	}
}

func ptrBool(b bool) *bool { return &b }
