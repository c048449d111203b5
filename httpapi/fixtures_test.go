package httpapi_test

import (
	"crypto/dsa" //nolint:staticcheck // ssh-dss keys are generated only to prove they are refused
	"crypto/rand"
	"encoding/base64"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// TestFixtures checks the fixtures of testdata/httpapi and, with -update,
// regenerates them:
//
//	go test ./httpapi -run TestFixtures -update
//
// x/crypto no longer parses or builds DSA keys (v0.59), so the ssh-dss
// fixture is written and checked in the wire format by hand: string
// "ssh-dss", then mpints p, q, g, y (RFC 4253 §6.6).
func TestFixtures(t *testing.T) {
	if *update {
		var priv dsa.PrivateKey
		if err := dsa.GenerateParameters(&priv.Parameters, rand.Reader, dsa.L1024N160); err != nil {
			t.Fatal(err)
		}
		if err := dsa.GenerateKey(&priv, rand.Reader); err != nil {
			t.Fatal(err)
		}
		wire := gossh.Marshal(struct {
			Name       string
			P, Q, G, Y *big.Int
		}{gossh.KeyAlgoDSA, priv.P, priv.Q, priv.G, priv.Y})
		line := gossh.KeyAlgoDSA + " " + base64.StdEncoding.EncodeToString(wire) + " dsa-fixture@keygate.test\n"
		if err := os.MkdirAll(fixtureDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(fixtureDir, "ssh-dss.pub"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := strings.Fields(readFixture(t, "ssh-dss.pub"))
	if len(f) < 2 || f[0] != gossh.KeyAlgoDSA {
		t.Fatalf("ssh-dss.pub is not an ssh-dss line: %q", f)
	}
	wire, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		t.Fatalf("ssh-dss.pub: %v", err)
	}
	var key struct {
		Name       string
		P, Q, G, Y *big.Int
	}
	if err := gossh.Unmarshal(wire, &key); err != nil || key.Name != gossh.KeyAlgoDSA || key.P.BitLen() < 1024 || key.Y.Sign() <= 0 {
		t.Fatalf("ssh-dss.pub does not hold a DSA public key: %v (%s, %d-bit p)", err, key.Name, key.P.BitLen())
	}
}
