package krl

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// fuzzKeys are fixed keys for the fuzz targets: two CAs and a user key.
func fuzzKeys(t testing.TB) (ca1, ca2, user gossh.PublicKey) {
	t.Helper()
	keys := make([]gossh.PublicKey, 3)
	for i := range keys {
		seed := bytes.Repeat([]byte{byte(i + 1)}, ed25519.SeedSize)
		pub, err := gossh.NewPublicKey(ed25519.NewKeyFromSeed(seed).Public())
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = pub
	}
	return keys[0], keys[1], keys[2]
}

// krlFromBytes reads a revocation set from fuzz input: a stream of
// operations (serial range, key id, SHA-256 hash, explicit key), each on
// CA 1, CA 2 or every CA.
func krlFromBytes(data []byte, cas [][]byte) *KRL {
	r := reader{b: data}
	k := &KRL{Version: uint64(len(data)), Comment: "fuzz"}
	sections := make([]*CertRevocations, len(cas))
	for i, ca := range cas {
		sections[i] = &CertRevocations{CA: ca}
	}
	k.Certs = sections
	for len(r.b) > 0 && !r.err {
		op := r.u8()
		sec := sections[int(op>>4)%len(sections)]
		switch op % 4 {
		case 0: // a range: 8 bytes low, 1 byte length (or the rest of the space)
			lo := r.u64()
			n := uint64(r.u8())
			hi := lo + n
			if hi < lo {
				hi = ^uint64(0)
			}
			if !r.err {
				sec.Serials = append(sec.Serials, Range{lo, hi})
			}
		case 1: // a key id
			n := int(r.u8() % 16)
			if id := r.take(n); !r.err {
				sec.KeyIDs = append(sec.KeyIDs, string(id))
			}
		case 2:
			if h := r.take(32); !r.err {
				k.SHA256 = append(k.SHA256, [32]byte(h))
			}
		case 3:
			n := int(r.u8() % 64)
			if blob := r.take(n); !r.err && n > 0 {
				k.Keys = append(k.Keys, bytes.Clone(blob))
			}
		}
	}
	return k
}

// FuzzMarshal builds KRLs from random sets and checks them with Parse:
// the same set reads back, and certificates on and around every revoked
// serial and with every revoked id get the same verdict from the list as
// built (ranges as given, unmerged) and as read back.
func FuzzMarshal(f *testing.F) {
	ca1, ca2, user := fuzzKeys(f)
	cas := [][]byte{ca1.Marshal(), ca2.Marshal(), nil}
	be := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	f.Add(append(append([]byte{0x00}, be(5)...), 10))
	f.Add(append(append(append([]byte{0x10}, be(1<<40)...), 200, 0x01, 3), "abc"...))
	f.Add(append(append([]byte{0x20}, be(^uint64(0)-3)...), 255))
	f.Add(append([]byte{0x02}, bytes.Repeat([]byte{7}, 32)...))
	f.Add(append(append([]byte{0x00}, be(0)...), 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		k := krlFromBytes(data, cas)
		out, err := k.Marshal()
		hasNUL := false
		for _, c := range k.Certs {
			for _, id := range c.KeyIDs {
				hasNUL = hasNUL || strings.IndexByte(id, 0) >= 0
			}
		}
		if hasNUL {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("a key id with NUL: Marshal = %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal()): %v", err)
		}
		if !sameSet(k, back) {
			t.Fatalf("read back a different set:\n%s\nwant\n%s", dump(back), dump(k))
		}
		again, err := back.Marshal()
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("Marshal(Parse(b)) != b: %v", err)
		}
		for _, c := range k.Certs {
			// Probe with both CAs: a section is its CA's (or, wildcard, both's).
			signers := []gossh.PublicKey{ca1, ca2}
			probe := func(serial uint64, keyID string) {
				for _, sk := range signers {
					crt := &gossh.Certificate{Key: user, SignatureKey: sk, Serial: serial, KeyId: keyID, CertType: gossh.UserCert}
					if k.Revoked(crt) != back.Revoked(crt) {
						t.Fatalf("serial %d key id %q from %x: revoked %v as built, %v as read", serial, keyID,
							sk.Marshal()[len(sk.Marshal())-4:], k.Revoked(crt), back.Revoked(crt))
					}
				}
			}
			for _, r := range c.Serials {
				for _, s := range []uint64{r.Lo - 1, r.Lo, r.Hi, r.Hi + 1} {
					probe(s, "\x00none")
				}
			}
			for _, id := range c.KeyIDs {
				probe(0, id)
			}
		}
	})
}

// FuzzParse feeds Parse arbitrary bytes: it must not panic, and what it
// accepts must encode to a KRL that reads back as the same list.
func FuzzParse(f *testing.F) {
	ca1, ca2, _ := fuzzKeys(f)
	k := &KRL{Version: 3, GeneratedAt: 1700000000, Comment: "seed", Certs: []*CertRevocations{
		{CA: ca1.Marshal(), Serials: []Range{{1, 1}, {5, 40}, {100, 100}, {102, 102}, {104, 110}}, KeyIDs: []string{"alice"}},
		{CA: ca2.Marshal(), Serials: []Range{{1 << 50, 1<<50 + 1000}}},
		{KeyIDs: []string{"everywhere"}},
	}, SHA256: [][32]byte{{1}}, SHA1: [][20]byte{{2}}, Keys: [][]byte{ca2.Marshal()}}
	seed, err := k.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse error %v is not ErrInvalid", err)
			}
			return
		}
		out, err := k.Marshal()
		if err != nil {
			t.Fatalf("Marshal(Parse(b)): %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(Parse(b))): %v", err)
		}
		if !sameSet(k, back) || back.Version != k.Version || back.GeneratedAt != k.GeneratedAt || back.Comment != k.Comment {
			t.Fatal("a parsed KRL does not survive Marshal and Parse")
		}
	})
}
