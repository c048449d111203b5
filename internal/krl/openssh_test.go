package krl

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// TestAgainstSSHKeygen is the property test OpenSSH defines correctness
// by: random revocation sets (serial ranges and single serials per CA, key
// ids per CA and for every CA, SHA-256 fingerprints) are written twice —
// by Marshal and by `ssh-keygen -k` from a spec file of the same set —
// and random certificates, many of them near or on a revoked serial, id or
// key, must get the same verdict from `ssh-keygen -Q` on both files and
// from Revoked. Parse must read ssh-keygen's file as the same set.
func TestAgainstSSHKeygen(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	t.Parallel()
	dir := t.TempDir()
	var cas []gossh.Signer
	var caBlobs [][]byte
	var caFiles []string
	for i := range 3 {
		s, blob := newCA(t)
		cas, caBlobs = append(cas, s), append(caBlobs, blob)
		f := filepath.Join(dir, fmt.Sprintf("ca%d.pub", i))
		if err := os.WriteFile(f, gossh.MarshalAuthorizedKey(s.PublicKey()), 0o600); err != nil {
			t.Fatal(err)
		}
		caFiles = append(caFiles, f)
	}
	stranger, _ := newCA(t)
	var users []gossh.PublicKey
	var fps [][32]byte
	for range 6 {
		s, blob := newCA(t)
		users, fps = append(users, s.PublicKey()), append(fps, sha256.Sum256(blob))
	}

	r := mrand.New(mrand.NewPCG(24, 2025))
	rounds := 8
	if testing.Short() {
		rounds = 3
	}
	verdicts := map[bool]int{}
	for round := range rounds {
		// The set: per CA serials and ids, wildcard ids, fingerprints.
		k := randomKRL(r, caBlobs, fps[:4])
		wild := &CertRevocations{}
		for range r.IntN(3) {
			wild.KeyIDs = append(wild.KeyIDs, randomID(r))
		}
		k.Certs = append(k.Certs, wild)

		// ssh-keygen -k from spec files of the same set.
		ref := filepath.Join(dir, fmt.Sprintf("ref%d.krl", round))
		for i, c := range k.Certs {
			var spec strings.Builder
			for _, s := range c.Serials {
				if s.Lo == s.Hi {
					fmt.Fprintf(&spec, "serial: %d\n", s.Lo)
				} else {
					fmt.Fprintf(&spec, "serial: %d-%d\n", s.Lo, s.Hi)
				}
			}
			for _, id := range c.KeyIDs {
				fmt.Fprintf(&spec, "id: %s\n", id)
			}
			if i == 0 {
				for _, fp := range k.SHA256 {
					fmt.Fprintf(&spec, "hash: SHA256:%s\n", base64.RawStdEncoding.EncodeToString(fp[:]))
				}
			}
			specFile := filepath.Join(dir, fmt.Sprintf("spec%d-%d", round, i))
			if err := os.WriteFile(specFile, []byte(spec.String()), 0o600); err != nil {
				t.Fatal(err)
			}
			ca := "none"
			if i < len(caFiles) {
				ca = caFiles[i]
			}
			args := []string{"-q", "-k", "-f", ref, "-s", ca}
			if i > 0 {
				args = append(args, "-u")
			}
			if out, err := exec.Command("ssh-keygen", append(args, specFile)...).CombinedOutput(); err != nil {
				t.Fatalf("ssh-keygen %v: %v: %s", args, err, out)
			}
		}
		mine := filepath.Join(dir, fmt.Sprintf("mine%d.krl", round))
		data, err := k.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(mine, data, 0o600); err != nil {
			t.Fatal(err)
		}
		refData, err := os.ReadFile(ref)
		if err != nil {
			t.Fatal(err)
		}
		refKRL, err := Parse(refData)
		if err != nil {
			t.Fatalf("round %d: Parse(ssh-keygen's KRL): %v", round, err)
		}
		if !sameSet(refKRL, k) {
			t.Fatalf("round %d: ssh-keygen's KRL reads as a different set:\n%s\nwant\n%s", round, dump(refKRL), dump(k))
		}

		// Random certificates: on, next to and away from revoked serials,
		// revoked and fresh ids, revoked and fresh keys, known and unknown CAs.
		var files []string
		want := map[string]bool{}
		for i := range 60 {
			ci := r.IntN(len(cas) + 1)
			signer := stranger
			if ci < len(cas) {
				signer = cas[ci]
			}
			serial := r.Uint64N(1 << 21)
			if sec := k.Certs[min(ci, len(k.Certs)-1)]; len(sec.Serials) > 0 && r.IntN(4) != 0 {
				s := sec.Serials[r.IntN(len(sec.Serials))]
				serial = []uint64{s.Lo - 1, s.Lo, s.Hi, s.Hi + 1, s.Lo + (s.Hi-s.Lo)/2}[r.IntN(5)]
			}
			if r.IntN(10) == 0 {
				serial = 0
			}
			keyID := randomID(r)
			if r.IntN(4) == 0 {
				c := k.Certs[r.IntN(len(k.Certs))]
				if len(c.KeyIDs) > 0 {
					keyID = c.KeyIDs[r.IntN(len(c.KeyIDs))]
				}
			}
			crt := cert(t, signer, users[r.IntN(len(users))], serial, keyID)
			f := filepath.Join(dir, fmt.Sprintf("r%d-c%d-cert.pub", round, i))
			if err := os.WriteFile(f, gossh.MarshalAuthorizedKey(crt), 0o600); err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
			want[f] = k.Revoked(crt)
		}
		refVerdicts := checkKRL(t, ref, files)
		myVerdicts := checkKRL(t, mine, files)
		for _, f := range files {
			if refVerdicts[f] != myVerdicts[f] || myVerdicts[f] != want[f] {
				t.Errorf("round %d %s: ssh-keygen -Q on ssh-keygen's KRL says revoked=%v, on keygate's %v; Revoked %v",
					round, filepath.Base(f), refVerdicts[f], myVerdicts[f], want[f])
			}
			verdicts[myVerdicts[f]]++
		}
	}
	if verdicts[true] == 0 || verdicts[false] == 0 {
		t.Errorf("verdicts %v: the certificates never exercised both outcomes", verdicts)
	}
}

// checkKRL runs ssh-keygen -Q -f krl files… and returns each file's
// verdict (true: REVOKED).
func checkKRL(t *testing.T, krl string, files []string) map[string]bool {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("ssh-keygen", append([]string{"-Q", "-f", krl}, files...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
		t.Fatalf("ssh-keygen -Q: %v: %s", err, stderr.String())
	}
	out := map[string]bool{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndex(line, ": ")
		if i < 0 {
			t.Fatalf("ssh-keygen -Q: unexpected line %q", line)
		}
		verdict := line[i+2:]
		if verdict != "ok" && verdict != "REVOKED" {
			t.Fatalf("ssh-keygen -Q: unexpected verdict in %q", line)
		}
		// "path (comment): verdict"; the comment is the path when the file has none.
		path, _, _ := strings.Cut(line[:i], " ")
		out[path] = verdict == "REVOKED"
	}
	for _, f := range files {
		if _, ok := out[f]; !ok {
			t.Fatalf("ssh-keygen -Q gave no verdict for %s: %s", f, stdout.String())
		}
	}
	if len(out) != len(files) {
		t.Fatalf("ssh-keygen -Q answered for %d of %d files: %s", len(out), len(files), stdout.String())
	}
	return out
}

// dump is a readable form of a KRL's set, for failure messages.
func dump(k *KRL) string {
	var b strings.Builder
	certs, _ := mergeCerts(k.Certs)
	for _, c := range certs {
		fmt.Fprintf(&b, "CA %x: serials %v ids %q\n", sha256.Sum256(c.CA), c.Serials, c.KeyIDs)
	}
	fmt.Fprintf(&b, "sha256 %x\n", k.SHA256)
	return b.String()
}
