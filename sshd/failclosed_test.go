package sshd

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// TestIndexEntryFailsClosed: a key with no index entry, an entry whose
// user is missing, or an entry with an unknown usage never authenticates.
func TestIndexEntryFailsClosed(t *testing.T) {
	t.Parallel()
	var ix *authindex.Index
	s, addr, cc := limitsServer(t, nil)
	ix = s.cfg.Auth.(*authindex.Index)
	newSigner := func() gossh.Signer {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		sg, _ := gossh.NewSignerFromKey(priv)
		return sg
	}
	cases := map[string]func(fp [32]byte){
		"no-entry":        func([32]byte) {},
		"user-missing":    func(fp [32]byte) { ix.InsertKey(50, 999, fp, keystore.UsageAuthAndSigning, 0) },
		"usage-corrupt":   func(fp [32]byte) { ix.InsertKey(51, 1, fp, "", 0) },
		"usage-gibberish": func(fp [32]byte) { ix.InsertKey(52, 1, fp, "root", 0) },
	}
	for name, setup := range cases {
		sg := newSigner()
		setup(fingerprint(sg.PublicKey()))
		c := *cc
		c.Auth = []gossh.AuthMethod{gossh.PublicKeys(sg)}
		// Refused at authentication, not only later in the session.
		if client, err := dialFrom("127.0.0.1", addr, &c); err == nil {
			client.Close()
			t.Errorf("%s: authenticated", name)
		}
	}
	// The intact entry still works.
	if err := loginFrom("127.0.0.1", addr, cc); err != nil {
		t.Fatalf("good key: %v", err)
	}
}
