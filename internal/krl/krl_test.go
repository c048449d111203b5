package krl

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	mrand "math/rand/v2"
	"reflect"
	"slices"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// subsections lists the certificate subsection types of a marshalled KRL,
// in order (a test of the encoder's choices).
func subsections(t *testing.T, data []byte) []byte {
	t.Helper()
	r := reader{b: data[len(magic):]}
	r.u32()
	r.u64()
	r.u64()
	r.u64()
	r.str()
	r.str()
	var out []byte
	for len(r.b) > 0 && !r.err {
		typ := r.u8()
		sect := reader{b: r.str()}
		if typ != sectionCertificates {
			continue
		}
		sect.str()
		sect.str()
		for len(sect.b) > 0 && !sect.err {
			out = append(out, sect.u8())
			sect.str()
		}
	}
	if r.err {
		t.Fatal("truncated")
	}
	return out
}

func newCA(t testing.TB) (gossh.Signer, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, s.PublicKey().Marshal()
}

func TestMarshalChoosesRangesBitmapsAndLists(t *testing.T) {
	t.Parallel()
	_, ca := newCA(t)
	for _, tc := range []struct {
		name    string
		serials []Range
		want    []byte
	}{
		{"contiguous-run-is-a-range", []Range{{100, 200}}, []byte{certSerialRange}},
		{"a-short-run-is-a-smaller-bitmap", []Range{{5, 7}}, []byte{certSerialBitmap}},
		{"thirty-in-a-row-is-a-range", []Range{{5, 34}}, []byte{certSerialRange}},
		{"two-in-a-row-are-listed", []Range{{5, 6}}, []byte{certSerialList}},
		{"sparse-serials-are-listed", []Range{{1, 1}, {1000, 1000}, {1 << 40, 1 << 40}}, []byte{certSerialList}},
		{"every-other-serial-is-a-bitmap", everyOther(1000, 1200), []byte{certSerialBitmap}},
		{"overlapping-ranges-merge", []Range{{10, 20}, {15, 30}, {31, 40}}, []byte{certSerialRange}},
		{"serial-zero-is-dropped", []Range{{0, 0}}, nil},
		{"range-from-zero-starts-at-one", []Range{{0, 99}}, []byte{certSerialRange}},
		{"top-of-the-range", []Range{{math.MaxUint64 - 1, math.MaxUint64}}, []byte{certSerialList}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &KRL{Certs: []*CertRevocations{{CA: ca, Serials: tc.serials}}}
			data, err := k.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if got := subsections(t, data); !bytes.Equal(got, tc.want) {
				t.Errorf("subsections = %x, want %x", got, tc.want)
			}
			back, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			var got []Range
			if len(back.Certs) > 0 {
				got = back.Certs[0].Serials
			}
			if want := NormalizeRanges(tc.serials); !reflect.DeepEqual(got, want) && (len(got) > 0 || len(want) > 0) {
				t.Errorf("serials read back = %v, want %v", got, want)
			}
		})
	}
}

func everyOther(lo, hi uint64) []Range {
	var out []Range
	for v := lo; v <= hi; v += 2 {
		out = append(out, Range{v, v})
	}
	return out
}

func TestMarshalIsDeterministic(t *testing.T) {
	t.Parallel()
	_, ca1 := newCA(t)
	_, ca2 := newCA(t)
	a := &KRL{Version: 7, GeneratedAt: 1700000000, Comment: "c", Certs: []*CertRevocations{
		{CA: ca1, Serials: []Range{{9, 9}, {1, 3}}, KeyIDs: []string{"b", "a", "b"}},
		{CA: ca2, KeyIDs: []string{"x"}},
		{CA: ca1, Serials: []Range{{4, 4}}},
	}, SHA256: [][32]byte{{2}, {1}, {2}}}
	b := &KRL{Version: 7, GeneratedAt: 1700000000, Comment: "c", Certs: []*CertRevocations{
		{CA: ca2, KeyIDs: []string{"x"}},
		{CA: ca1, Serials: []Range{{1, 4}, {9, 9}}, KeyIDs: []string{"a", "b"}},
	}, SHA256: [][32]byte{{1}, {2}}}
	da, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	db, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(da, db) {
		t.Error("equal lists encode differently")
	}
}

func TestMarshalRefuses(t *testing.T) {
	t.Parallel()
	for name, k := range map[string]*KRL{
		"backwards-range": {Certs: []*CertRevocations{{Serials: []Range{{5, 4}}}}},
		"nul-in-key-id":   {Certs: []*CertRevocations{{KeyIDs: []string{"a\x00b"}}}},
		"nul-in-comment":  {Comment: "a\x00"},
	} {
		if _, err := k.Marshal(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Marshal = %v, want ErrInvalid", name, err)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	header := func() *buf {
		var b buf
		b.raw([]byte(magic))
		b.u32(formatVersion)
		b.u64(1)
		b.u64(2)
		b.u64(0)
		b.str(nil)
		b.cstr("")
		return &b
	}
	_, ca := newCA(t)
	certSect := func(sub byte, body []byte) []byte {
		var s buf
		s.str(ca)
		s.str(nil)
		s.sub(sub, body)
		return s.b
	}
	u64s := func(vs ...uint64) []byte {
		var b buf
		for _, v := range vs {
			b.u64(v)
		}
		return b.b
	}
	cases := map[string][]byte{}
	b := header()
	cases["bad-magic"] = append([]byte("SSHKRL\n\x01"), b.b[8:]...)
	v := header()
	binary.BigEndian.PutUint32(v.b[8:], 2)
	cases["format-version-2"] = v.b
	cases["truncated-header"] = header().b[:20]
	s := header()
	s.section(sectionCertificates, certSect(certSerialList, u64s(0)))
	cases["serial-zero-in-list"] = s.b
	s = header()
	s.section(sectionCertificates, certSect(certSerialRange, u64s(5, 4)))
	cases["backwards-range"] = s.b
	s = header()
	s.section(sectionCertificates, certSect(certSerialRange, u64s(0, 4)))
	cases["range-from-zero"] = s.b
	s = header()
	var neg buf
	neg.u64(1)
	neg.str([]byte{0x80})
	s.section(sectionCertificates, certSect(certSerialBitmap, neg.b))
	cases["negative-bitmap"] = s.b
	s = header()
	var wrap buf
	wrap.u64(math.MaxUint64)
	wrap.str([]byte{0x03})
	s.section(sectionCertificates, certSect(certSerialBitmap, wrap.b))
	cases["bitmap-wraps"] = s.b
	s = header()
	s.section(sectionCertificates, certSect(0x30, nil))
	cases["unknown-subsection"] = s.b
	s = header()
	s.section(sectionCertificates, certSect(certSerialRange, u64s(1, 2, 3)))
	cases["trailing-data"] = s.b
	s = header()
	var bad buf
	bad.str([]byte("not a key"))
	bad.str(nil)
	s.section(sectionCertificates, bad.b)
	cases["bad-ca-key"] = s.b
	s = header()
	var h buf
	h.str(make([]byte, 31))
	s.section(sectionFingerprintSHA256, h.b)
	cases["short-sha256"] = s.b
	s = header()
	s.section(sectionSignature, nil)
	cases["signature"] = s.b
	s = header()
	s.section(9, nil)
	cases["unknown-section"] = s.b
	s = header()
	var ext buf
	ext.cstr("x@example.com")
	ext.b = append(ext.b, 1)
	ext.str(nil)
	s.section(sectionExtension, ext.b)
	cases["critical-extension"] = s.b
	s = header()
	var id buf
	id.cstr("a\x00b")
	s.section(sectionCertificates, certSect(certKeyID, id.b))
	cases["nul-in-key-id"] = s.b
	for name, data := range cases {
		if _, err := Parse(data); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Parse = %v, want ErrInvalid", name, err)
		}
	}
	// A non-critical extension is skipped.
	s = header()
	ext = buf{}
	ext.cstr("x@example.com")
	ext.b = append(ext.b, 0)
	ext.str([]byte("whatever"))
	s.section(sectionExtension, ext.b)
	if _, err := Parse(s.b); err != nil {
		t.Errorf("non-critical extension: %v", err)
	}
}

// cert makes a user certificate signed by ca.
func cert(t testing.TB, ca gossh.Signer, pub gossh.PublicKey, serial uint64, keyID string) *gossh.Certificate {
	t.Helper()
	c := &gossh.Certificate{Key: pub, Serial: serial, CertType: gossh.UserCert, KeyId: keyID,
		ValidPrincipals: []string{"u"}, ValidBefore: gossh.CertTimeInfinity}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRevokedFollowsOpenSSH(t *testing.T) {
	t.Parallel()
	ca, caBlob := newCA(t)
	other, _ := newCA(t)
	userKey, _ := newCA(t)
	revokedKey, _ := newCA(t)
	k := &KRL{
		Certs: []*CertRevocations{
			{CA: caBlob, Serials: []Range{{10, 20}}, KeyIDs: []string{"alice"}},
			{KeyIDs: []string{"anywhere"}}, // wildcard CA
		},
		SHA256: [][32]byte{sha256.Sum256(revokedKey.PublicKey().Marshal())},
	}
	for _, tc := range []struct {
		name string
		key  gossh.PublicKey
		want bool
	}{
		{"serial-in-range", cert(t, ca, userKey.PublicKey(), 15, "x"), true},
		{"serial-outside", cert(t, ca, userKey.PublicKey(), 21, "x"), false},
		{"serial-of-another-ca", cert(t, other, userKey.PublicKey(), 15, "x"), false},
		{"key-id", cert(t, ca, userKey.PublicKey(), 0, "alice"), true},
		{"key-id-is-case-sensitive", cert(t, ca, userKey.PublicKey(), 0, "Alice"), false},
		{"key-id-of-another-ca", cert(t, other, userKey.PublicKey(), 0, "alice"), false},
		{"wildcard-key-id", cert(t, other, userKey.PublicKey(), 0, "anywhere"), true},
		{"certificate-of-a-revoked-key", cert(t, other, revokedKey.PublicKey(), 1, "x"), true},
		{"revoked-plain-key", revokedKey.PublicKey(), true},
		{"plain-key", userKey.PublicKey(), false},
		{"certificate-signed-by-a-revoked-key", cert(t, revokedKey, userKey.PublicKey(), 1, "x"), true},
	} {
		if got := k.Revoked(tc.key); got != tc.want {
			t.Errorf("%s: Revoked = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// randomKRL builds a random revocation set from r over the given CA blobs
// and fingerprints.
func randomKRL(r *mrand.Rand, cas [][]byte, fps [][32]byte) *KRL {
	k := &KRL{Version: r.Uint64(), GeneratedAt: r.Uint64N(1 << 40), Comment: "random"}
	for _, ca := range cas {
		c := &CertRevocations{CA: ca}
		base := r.Uint64N(1 << 20)
		for range r.IntN(60) {
			lo := base + r.Uint64N(4000)
			hi := lo
			switch r.IntN(4) {
			case 0:
				hi = lo + r.Uint64N(200)
			case 1:
				hi = lo + r.Uint64N(3)
			}
			c.Serials = append(c.Serials, Range{lo, hi})
		}
		if r.IntN(5) == 0 {
			c.Serials = append(c.Serials, Range{math.MaxUint64 - r.Uint64N(10), math.MaxUint64})
		}
		for range r.IntN(5) {
			c.KeyIDs = append(c.KeyIDs, randomID(r))
		}
		k.Certs = append(k.Certs, c)
	}
	for _, fp := range fps {
		if r.IntN(2) == 0 {
			k.SHA256 = append(k.SHA256, fp)
		}
	}
	return k
}

func randomID(r *mrand.Rand) string {
	const chars = "abcAB01@._- "
	n := 1 + r.IntN(8)
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[r.IntN(len(chars)-1)] // no space: ssh-keygen -k trims trailing blanks
	}
	if n > 2 && r.IntN(3) == 0 {
		b[1] = ' '
	}
	return string(b)
}

// sameSet reports whether two KRLs revoke the same things (sections that
// revoke nothing ignored).
func sameSet(a, b *KRL) bool {
	norm := func(k *KRL) *KRL {
		n := &KRL{
			SHA256: slices.Compact(slices.SortedFunc(slices.Values(k.SHA256), func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })),
			SHA1:   slices.Compact(slices.SortedFunc(slices.Values(k.SHA1), func(a, b [20]byte) int { return bytes.Compare(a[:], b[:]) })),
			Keys:   slices.CompactFunc(slices.SortedFunc(slices.Values(k.Keys), bytes.Compare), bytes.Equal),
		}
		certs, err := mergeCerts(k.Certs)
		if err != nil {
			return nil
		}
		for _, c := range certs {
			if len(c.Serials) > 0 || len(c.KeyIDs) > 0 {
				n.Certs = append(n.Certs, c)
			}
		}
		if len(n.SHA256) == 0 {
			n.SHA256 = nil
		}
		if len(n.SHA1) == 0 {
			n.SHA1 = nil
		}
		if len(n.Keys) == 0 {
			n.Keys = nil
		}
		return n
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func TestRoundTripRandom(t *testing.T) {
	t.Parallel()
	_, ca1 := newCA(t)
	_, ca2 := newCA(t)
	r := mrand.New(mrand.NewPCG(1, 2))
	fps := [][32]byte{{1}, {2}, {3}}
	for i := range 200 {
		k := randomKRL(r, [][]byte{ca1, ca2, nil}, fps)
		data, err := k.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(data)
		if err != nil {
			t.Fatalf("round %d: Parse: %v", i, err)
		}
		if back.Version != k.Version || back.GeneratedAt != k.GeneratedAt || back.Comment != k.Comment {
			t.Fatalf("round %d: header %d %d %q", i, back.Version, back.GeneratedAt, back.Comment)
		}
		if !sameSet(k, back) {
			t.Fatalf("round %d: read back a different set", i)
		}
	}
}
