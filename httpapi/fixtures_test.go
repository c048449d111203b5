package httpapi_test

import (
	"crypto/dsa" //nolint:staticcheck // ssh-dss keys are generated only to prove they are refused
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// TestFixtures checks the fixtures of testdata/httpapi and, with -update,
// regenerates them:
//
//	go test ./httpapi -run TestFixtures -update
func TestFixtures(t *testing.T) {
	if *update {
		var priv dsa.PrivateKey
		if err := dsa.GenerateParameters(&priv.Parameters, rand.Reader, dsa.L1024N160); err != nil {
			t.Fatal(err)
		}
		if err := dsa.GenerateKey(&priv, rand.Reader); err != nil {
			t.Fatal(err)
		}
		pub, err := gossh.NewPublicKey(&priv.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		line := authorizedKey(pub, "dsa-fixture@keygate.test") + "\n"
		if err := os.MkdirAll(fixtureDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(fixtureDir, "ssh-dss.pub"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(readFixture(t, "ssh-dss.pub")))
	if err != nil {
		t.Fatalf("ssh-dss.pub does not parse: %v", err)
	}
	if pub.Type() != gossh.KeyAlgoDSA {
		t.Fatalf("ssh-dss.pub holds a %s key", pub.Type())
	}
}
