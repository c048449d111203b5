package keystore_test

import (
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
)

func TestParseUserKeyAccepted(t *testing.T) {
	t.Parallel()
	type tc struct {
		name        string
		line        string
		pub         gossh.PublicKey // what the line must parse to
		wantType    string
		wantBits    int
		wantComment string
	}
	var cases []tc
	add := func(name string, pub gossh.PublicKey, line, typ string, bits int, comment string) {
		cases = append(cases, tc{name, line, pub, typ, bits, comment})
	}

	pub, line := newEd25519(t, "alice@laptop")
	add("ed25519-with-comment", pub, line, gossh.KeyAlgoED25519, 256, "alice@laptop")
	pub, line = newEd25519(t, "")
	add("ed25519-without-comment", pub, line, gossh.KeyAlgoED25519, 256, "")
	for _, c := range []struct {
		curve elliptic.Curve
		typ   string
		bits  int
	}{
		{elliptic.P256(), gossh.KeyAlgoECDSA256, 256},
		{elliptic.P384(), gossh.KeyAlgoECDSA384, 384},
		{elliptic.P521(), gossh.KeyAlgoECDSA521, 521},
	} {
		pub, line := authorizedLine(t, &newECDSA(t, c.curve).PublicKey, "ecdsa")
		add(c.typ, pub, line, c.typ, c.bits, "ecdsa")
	}
	for _, bits := range []int{2048, 3072, 4096} {
		pub, line := authorizedLine(t, &rsaKey(bits).PublicKey, "rsa")
		add("rsa-"+strconv.Itoa(bits), pub, line, gossh.KeyAlgoRSA, bits, "rsa")
	}
	pub, line = skEd25519Line(t, "yubikey")
	add("sk-ssh-ed25519", pub, line, gossh.KeyAlgoSKED25519, 256, "yubikey")
	pub, line = skECDSALine(t, "")
	add("sk-ecdsa-sha2-nistp256", pub, line, gossh.KeyAlgoSKECDSA256, 256, "")

	pub, line = newEd25519(t, "padded")
	add("surrounding-whitespace-and-trailing-newline", pub, "  \t"+line+"\n", gossh.KeyAlgoED25519, 256, "padded")
	pub, line = newEd25519(t, "")
	add("comment-with-spaces", pub, line+" Alice Example work key", gossh.KeyAlgoED25519, 256, "Alice Example work key")
	pub, line = newEd25519(t, "")
	add("tab-separated", pub, strings.Replace(line, " ", "\t", 1)+"\ttabbed", gossh.KeyAlgoED25519, 256, "tabbed")
	pub, line = newEd25519(t, "")
	add("control-characters-dropped-from-comment", pub, line+" a\x1bb\x7fc", gossh.KeyAlgoED25519, 256, "abc")
	pub, line = newEd25519(t, "")
	pad := strings.Repeat("x", keystore.MaxKeyLength-len(line)-1)
	add("exactly-5000-characters", pub, line+" "+pad, gossh.KeyAlgoED25519, 256, pad)

	if len(cases) < 15 {
		t.Fatalf("only %d accepted cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, parse := range []struct {
				name string
				fn   func(string) (*keystore.ParsedKey, error)
			}{{"user", keystore.ParseUserKey}, {"ca", keystore.ParseCAKey}} {
				pk, err := parse.fn(c.line)
				if err != nil {
					t.Fatalf("%s: err = %v", parse.name, err)
				}
				wantNorm := c.wantType + " " + base64.StdEncoding.EncodeToString(c.pub.Marshal())
				if c.wantComment != "" {
					wantNorm += " " + c.wantComment
				}
				if pk.Normalized != wantNorm {
					t.Errorf("%s: Normalized = %q\nwant %q", parse.name, pk.Normalized, wantNorm)
				}
				if pk.Type != c.wantType {
					t.Errorf("%s: Type = %q, want %q", parse.name, pk.Type, c.wantType)
				}
				if pk.Bits != c.wantBits {
					t.Errorf("%s: Bits = %d, want %d", parse.name, pk.Bits, c.wantBits)
				}
				if want := gossh.FingerprintSHA256(c.pub); pk.FingerprintSHA256 != want {
					t.Errorf("%s: FingerprintSHA256 = %q, want %q", parse.name, pk.FingerprintSHA256, want)
				}
				if want := gossh.FingerprintLegacyMD5(c.pub); pk.FingerprintMD5 != want {
					t.Errorf("%s: FingerprintMD5 = %q, want %q", parse.name, pk.FingerprintMD5, want)
				}
				if string(pk.Public.Marshal()) != string(c.pub.Marshal()) {
					t.Errorf("%s: Public differs from the key in the line", parse.name)
				}
				// The normal form is a fixed point.
				again, err := parse.fn(pk.Normalized)
				if err != nil || again.Normalized != pk.Normalized {
					t.Errorf("%s: reparse of normal form = %v, %v", parse.name, again, err)
				}
			}
		})
	}
}

func TestParseKeyRefused(t *testing.T) {
	t.Parallel()
	_, ed := newEd25519(t, "c")
	edBlob, _ := base64.StdEncoding.DecodeString(strings.Fields(ed)[1])
	_, rsa1024 := authorizedLine(t, &rsaKey(1024).PublicKey, "old")
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	opensshPEM, err := gossh.MarshalPrivateKey(edPriv, "alice")
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey(2048))})
	ecPriv, err := x509.MarshalECPrivateKey(newECDSA(t, elliptic.P256()))
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecPriv})
	pkcs8, err := x509.MarshalPKCS8PrivateKey(edPriv)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8PEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	_, ed2 := newEd25519(t, "second")
	vagrant, err := os.ReadFile(filepath.Join("..", "testdata", "vagrant_insecure.pub"))
	if err != nil {
		t.Fatal(err)
	}
	cert := certLine(t)
	unknownBlob := blob([]byte("ssh-unknown@example.com"), make([]byte, 32))
	shortEd := blob([]byte(gossh.KeyAlgoED25519), make([]byte, 31))

	const (
		blank      = "can't be blank"
		private    = "is a private key"
		notOpenSSH = "is invalid"
		forbidden  = "type is forbidden"
		oneLine    = "single line"
	)
	cases := []struct {
		name   string
		text   string
		ca     bool // parse as a CA key instead of a user key
		reason string
	}{
		{"empty", "", false, blank},
		{"whitespace-only", " \t\n  \r\n", false, blank},
		{"empty-ca", "", true, blank},
		{"bad-base64", "ssh-ed25519 AAAA!!!notbase64### c", false, notOpenSSH},
		{"truncated-blob", "ssh-ed25519 " + base64.StdEncoding.EncodeToString(edBlob[:len(edBlob)-5]) + " c", false, notOpenSSH},
		{"ed25519-31-byte-key", "ssh-ed25519 " + base64.StdEncoding.EncodeToString(shortEd), false, notOpenSSH},
		{"type-only", "ssh-ed25519", false, notOpenSSH},
		{"base64-only-no-type", strings.Fields(ed)[1], false, notOpenSSH},
		{"unknown-type-word", "ssh-foo " + strings.Fields(ed)[1][:20] + " c", false, notOpenSSH},
		{"unknown-type-blob", "ssh-unknown@example.com " + base64.StdEncoding.EncodeToString(unknownBlob), false, notOpenSSH},
		{"declared-type-differs-from-blob", strings.Replace(ed, gossh.KeyAlgoED25519, gossh.KeyAlgoRSA, 1), false, notOpenSSH},
		{"ssh-dss-parsed", "ssh-dss " + base64.StdEncoding.EncodeToString(dsaBlob()) + " dsa", false, forbidden},
		{"ssh-dss-unparsable", "ssh-dss AAAAB3NzaC1kc3M= dsa", false, forbidden},
		{"ssh-dss-ca", "ssh-dss " + base64.StdEncoding.EncodeToString(dsaBlob()), true, forbidden},
		{"rsa-1024", rsa1024, false, "at least 2048 bits"},
		{"rsa-1024-ca", rsa1024, true, "at least 2048 bits"},
		{"certificate-as-user-key", cert, false, "is a certificate"},
		{"certificate-as-ca-key", cert, true, "not a certificate"},
		{"openssh-private-key", string(pem.EncodeToMemory(opensshPEM)), false, private},
		{"openssh-private-key-ca", string(pem.EncodeToMemory(opensshPEM)), true, private},
		{"pkcs1-rsa-private-key", string(pkcs1), false, private},
		{"sec1-ec-private-key", string(ecPEM), false, private},
		{"pkcs8-private-key", string(pkcs8PEM), false, private},
		{"private-key-one-line", strings.ReplaceAll(string(pkcs8PEM), "\n", " "), false, private},
		{"putty-private-key", "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: x\nPublic-Lines: 2\nAAAA\n", false, private},
		{"two-keys-two-lines", ed + "\n" + ed2, false, oneLine},
		{"two-keys-cr-separated", ed + "\r" + ed2, false, oneLine},
		{"too-long", ed + " " + strings.Repeat("x", keystore.MaxKeyLength), false, "too long"},
		{"nul-byte", ed + "\x00", false, "is invalid"},
		{"nul-byte-in-comment", strings.Replace(ed, " c", " a\x00b", 1), false, "is invalid"},
		{"banned-vagrant-key", string(vagrant), false, "compromised"},
		{"banned-vagrant-key-with-options", `no-pty ` + strings.TrimSpace(string(vagrant)), false, "compromised"},
		{"banned-vagrant-key-as-ca", string(vagrant), true, "compromised"},
		// authorized_keys options are refused by name, never silently
		// stripped (issue 21 §1): keygate enforces none of them.
		{"option-from-refused-by-name", `from="10.0.0.0/8" ` + ed, false, `option "from"`},
		{"options-quoted-spaces-and-commas", `command="echo a, b c",no-port-forwarding,from="10.0.0.0/8" ` + ed, false, `option "command"`},
		{"option-no-pty", `no-pty ` + ed, false, `option "no-pty"`},
		{"principals-option-on-ca-key", `cert-authority,principals="a" ` + ed, true, `option "principals"`},
		// RFC 4716 (PuTTYgen's public key export) gets the conversion hint.
		{"rfc4716-public-key", "---- BEGIN SSH2 PUBLIC KEY ----\nComment: \"x\"\nAAAAC3NzaC1lZDI1NTE5AAAAIA==\n---- END SSH2 PUBLIC KEY ----\n", false, "ssh-keygen -i -f"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			parse := keystore.ParseUserKey
			if c.ca {
				parse = keystore.ParseCAKey
			}
			pk, err := parse(c.text)
			if pk != nil {
				t.Errorf("ParsedKey = %+v, want nil", pk)
			}
			wantOnlyField(t, err, "key", c.reason)
			// A refusal never echoes what was pasted.
			msg := err.Error()
			for _, f := range strings.Fields(c.text) {
				if len(f) >= 16 && strings.Contains(msg, f) {
					t.Errorf("error %q echoes input %q", msg, f)
				}
			}
		})
	}
}

// TestPrivateKeyNeverEchoed checks every chunk of a pasted private key
// against the message, including in the store's own errors.
func TestPrivateKeyNeverEchoed(t *testing.T) {
	t.Parallel()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := gossh.MarshalPrivateKey(priv, "secret-comment")
	if err != nil {
		t.Fatal(err)
	}
	text := string(pem.EncodeToMemory(block))
	body := strings.Join(strings.Split(strings.TrimSpace(text), "\n")[1:], "")
	body = strings.TrimSuffix(body, "-----END OPENSSH PRIVATE KEY-----")

	e := newEnv(t)
	u := e.user(t, "alice")
	_, errStore := e.s.CreateKey(e.ctx, sys, u.ID, keystore.KeyInput{Title: "oops", Key: text})
	_, errCA := e.s.CreateCA(e.ctx, sys, e.group(t, "g", nil, u.ID).ID, keystore.CAInput{Title: "oops", Key: text})
	_, errParse := keystore.ParseUserKey(text)
	for name, err := range map[string]error{"CreateKey": errStore, "CreateCA": errCA, "ParseUserKey": errParse} {
		wantField(t, err, "key", "private key")
		msg := err.Error()
		for i := 0; i+12 <= len(body); i += 6 {
			if strings.Contains(msg, body[i:i+12]) {
				t.Fatalf("%s: error %q contains private key text %q", name, msg, body[i:i+12])
			}
		}
		if strings.Contains(msg, "secret-comment") {
			t.Fatalf("%s: error %q contains the key comment", name, msg)
		}
	}
	// Nothing was stored.
	if _, n, _ := e.s.ListKeys(e.ctx, keystore.KeyFilter{}, keystore.Page{}); n != 0 {
		t.Fatalf("%d keys stored", n)
	}
}

func TestVagrantFixtureIsBanned(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "vagrant_insecure.pub"))
	if err != nil {
		t.Fatal(err)
	}
	// The fixture itself is a well-formed 2048-bit RSA key: the refusal
	// comes from the banned list, not from a parse error.
	pub, _, _, _, err := gossh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatalf("fixture does not parse: %v", err)
	}
	if got := gossh.FingerprintSHA256(pub); got != "SHA256:1M4RzhMyWuFS/86uPY/ce2prh/dVTHW7iD2RhpquOZA" {
		t.Fatalf("fixture fingerprint = %s", got)
	}
	e := newEnv(t)
	u := e.user(t, "vagrant")
	_, err = e.s.CreateKey(e.ctx, sys, u.ID, keystore.KeyInput{Title: "vagrant", Key: string(b)})
	wantOnlyField(t, err, "key", "compromised")
}

func TestNormalizeFingerprint(t *testing.T) {
	t.Parallel()
	pub, _ := newEd25519(t, "")
	sha := gossh.FingerprintSHA256(pub)
	md5 := gossh.FingerprintLegacyMD5(pub)
	const plus = "SHA256:uy5wXyEgbRCGsk23+J6f85om7G55Cu3UIPwC7oMZhNQ"
	cases := []struct {
		name      string
		in        string
		wantKind  string
		wantValue string
		wantOK    bool
	}{
		{"sha256-prefixed", sha, "sha256", sha, true},
		{"sha256-bare", strings.TrimPrefix(sha, "SHA256:"), "sha256", sha, true},
		{"sha256-surrounding-space", " " + sha + "\n", "sha256", sha, true},
		{"md5-lower", md5, "md5", md5, true},
		{"md5-upper", strings.ToUpper(md5), "md5", md5, true},
		{"md5-prefixed", "MD5:" + md5, "md5", md5, true},
		{"md5-lower-prefix", "md5:" + strings.ToUpper(md5), "md5", md5, true},
		{"sha256-prefix-only", "SHA256:", "", "", false},
		{"empty", "", "", "", false},
		{"garbage", "not-a-fingerprint", "", "", false},
		{"md5-too-short", md5[:44], "", "", false},
		{"md5-bare-hex", strings.ReplaceAll(md5, ":", ""), "md5", md5, true},
		{"md5-keygen-line", "256 MD5:" + md5 + " alice@laptop (ED25519)", "md5", md5, true},
		{"md5-bad-separator", strings.ReplaceAll(md5, ":", "-"), "", "", false},
		// A fingerprint with "+" and "/" (rapid7's vagrant key): what a
		// person pastes, and what a form or query string makes of it.
		{"plus-as-space", strings.ReplaceAll(plus, "+", " "), "sha256", plus, true},
		{"plus-as-space-bare", strings.ReplaceAll(strings.TrimPrefix(plus, "SHA256:"), "+", " "), "sha256", plus, true},
		{"padded", plus + "=", "sha256", plus, true},
		{"padded-plus-as-space", strings.ReplaceAll(plus, "+", " ") + "=", "sha256", plus, true},
		{"lower-case-prefix", "sha256:" + strings.TrimPrefix(plus, "SHA256:"), "sha256", plus, true},
		{"keygen-line", "2048 " + plus + " vagrant insecure public key (RSA)", "sha256", plus, true},
		{"keygen-line-plus-as-space", "2048 " + strings.ReplaceAll(plus, "+", " ") + " vagrant (RSA)", "sha256", plus, true},
		{"keygen-line-padded", "256 " + sha + "= alice (ED25519)", "sha256", sha, true},
		{"too-short", sha[:len(sha)-1], "", "", false},
		{"too-long", sha + "A", "", "", false},
		{"not-32-bytes", "SHA256:" + strings.Repeat("A", 42) + "B", "", "", false},
		{"glued-prefix", "x" + sha, "", "", false},
		{"bad-char", strings.Replace(sha, sha[10:11], "*", 1), "", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			kind, v, ok := keystore.NormalizeFingerprint(c.in)
			if ok != c.wantOK || (ok && (kind != c.wantKind || v != c.wantValue)) {
				t.Fatalf("NormalizeFingerprint(%q) = %q, %q, %v; want %q, %q, %v", c.in, kind, v, ok, c.wantKind, c.wantValue, c.wantOK)
			}
		})
	}
}

// FuzzParseUserKey: the parser never panics, refuses only with a "key"
// validation error, and accepts only what re-parses to the same key.
func FuzzParseUserKey(f *testing.F) {
	_, ed := newEd25519(f, "c")
	_, sk := skEd25519Line(f, "")
	f.Add(ed)
	f.Add(sk)
	f.Add(`no-pty,command="x y" ` + ed)
	f.Add("ssh-dss AAAAB3NzaC1kc3M=")
	f.Add("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----")
	f.Add(ed + "\n" + ed)
	f.Fuzz(func(t *testing.T, text string) {
		pk, err := keystore.ParseUserKey(text)
		if err != nil {
			var ve *keystore.ValidationError
			if !errors.As(err, &ve) || len(ve.Fields) != 1 || len(ve.Fields["key"]) == 0 {
				t.Fatalf("ParseUserKey(%q) err = %v, want a validation error on key", text, err)
			}
			return
		}
		if len(pk.Normalized) > keystore.MaxKeyLength || strings.ContainsAny(pk.Normalized, "\r\n\x00") {
			t.Fatalf("Normalized = %q", pk.Normalized)
		}
		again, err := keystore.ParseUserKey(pk.Normalized)
		if err != nil || again.FingerprintSHA256 != pk.FingerprintSHA256 || again.Normalized != pk.Normalized {
			t.Fatalf("reparse of %q = %+v, %v", pk.Normalized, again, err)
		}
	})
}

// TestPEMPublicKeyNotCalledPrivate: a public key in PEM form is refused,
// but telling its owner that a private key was exposed would be false.
func TestPEMPublicKeyNotCalledPrivate(t *testing.T) {
	t.Parallel()
	der, err := x509.MarshalPKIXPublicKey(&newECDSA(t, elliptic.P256()).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	text := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	_, err = keystore.ParseUserKey(text)
	wantOnlyField(t, err, "key", "")
	if strings.Contains(err.Error(), "private key") {
		t.Fatalf("PEM public key refused as %q", err)
	}
}

// FuzzNormalizeFingerprint: the parser never panics, and what it accepts
// is canonical: normalizing the result gives it back, and a SHA-256 one
// decodes to 32 bytes.
func FuzzNormalizeFingerprint(f *testing.F) {
	for _, s := range []string{"SHA256:uy5wXyEgbRCGsk23+J6f85om7G55Cu3UIPwC7oMZhNQ", "uy5wXyEgbRCGsk23 J6f85om7G55Cu3UIPwC7oMZhNQ=",
		"256 SHA256:uy5wXyEgbRCGsk23+J6f85om7G55Cu3UIPwC7oMZhNQ c (ED25519)", "MD5:0a:1b:2c:3d:4e:5f:60:71:82:93:a4:b5:c6:d7:e8:f9",
		"0a1b2c3d4e5f60718293a4b5c6d7e8f9", "", "SHA256:", "md5:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		kind, v, ok := keystore.NormalizeFingerprint(s)
		if !ok {
			return
		}
		k2, v2, ok2 := keystore.NormalizeFingerprint(v)
		if !ok2 || k2 != kind || v2 != v {
			t.Fatalf("NormalizeFingerprint(%q) = %q, %q; again: %q, %q, %v", s, kind, v, k2, v2, ok2)
		}
		if kind == keystore.FingerprintSHA256 {
			if _, ok := keystore.CanonicalSHA256Fingerprint(v); !ok {
				t.Fatalf("%q is not a canonical SHA-256 fingerprint", v)
			}
		}
	})
}
