package krl

import (
	"bytes"
	"encoding/binary"
	"maps"
	"math/big"
	"slices"

	gossh "golang.org/x/crypto/ssh"
)

// Parse decodes a KRL. It refuses what OpenSSH's ssh_krl_from_blob
// (krl.c) refuses — a wrong magic or format version, truncated or
// trailing data in any section, an unknown section or subsection, a
// critical extension, a CA key that does not parse, serial 0, a backwards
// range, a negative or oversized bitmap, a hash of the wrong length —
// and, unlike OpenSSH 9.2, a signature section (OpenSSH >= 9.4 refuses
// them). The result is normalized: one CertRevocations per CA, serials as
// merged ranges, key ids and hashes sorted without repeats.
func Parse(data []byte) (*KRL, error) {
	r := reader{b: data}
	if !bytes.HasPrefix(data, []byte(magic)) {
		return nil, invalid("bad magic")
	}
	r.b = r.b[len(magic):]
	if v := r.u32(); v != formatVersion {
		if r.err {
			return nil, invalid("truncated header")
		}
		return nil, invalid("unsupported format version %d", v)
	}
	k := &KRL{Version: r.u64(), GeneratedAt: r.u64()}
	_ = r.u64() // flags
	r.str()     // reserved
	k.Comment = r.cstr()
	if r.err {
		return nil, invalid("truncated header")
	}
	certs := map[string]*CertRevocations{}
	sha256s := map[[32]byte]bool{}
	sha1s := map[[20]byte]bool{}
	keys := map[string]bool{}
	for len(r.b) > 0 {
		typ := r.u8()
		sect := reader{b: r.str()}
		if r.err {
			return nil, invalid("truncated section")
		}
		switch typ {
		case sectionCertificates:
			if err := parseCerts(&sect, certs); err != nil {
				return nil, err
			}
		case sectionExplicitKey:
			for len(sect.b) > 0 {
				blob := sect.str()
				if sect.err {
					return nil, invalid("truncated explicit key")
				}
				keys[string(blob)] = true
			}
		case sectionFingerprintSHA1:
			for len(sect.b) > 0 {
				h := sect.str()
				if sect.err || len(h) != 20 {
					return nil, invalid("bad SHA-1 hash")
				}
				sha1s[[20]byte(h)] = true
			}
		case sectionFingerprintSHA256:
			for len(sect.b) > 0 {
				h := sect.str()
				if sect.err || len(h) != 32 {
					return nil, invalid("bad SHA-256 hash")
				}
				sha256s[[32]byte(h)] = true
			}
		case sectionExtension:
			if err := parseExtension(&sect); err != nil {
				return nil, err
			}
		case sectionSignature:
			return nil, invalid("signed KRLs are not supported")
		default:
			return nil, invalid("unknown section %d", typ)
		}
		if sect.err || len(sect.b) > 0 {
			return nil, invalid("section %d holds unparsed data", typ)
		}
	}
	for _, c := range certs {
		k.Certs = append(k.Certs, c)
	}
	// Merging sorts the sections by CA, the ranges and the key ids; key ids
	// are checked for NUL bytes already.
	var err error
	if k.Certs, err = mergeCerts(k.Certs); err != nil {
		return nil, err
	}
	k.SHA256 = slices.SortedFunc(maps.Keys(sha256s), func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	k.SHA1 = slices.SortedFunc(maps.Keys(sha1s), func(a, b [20]byte) int { return bytes.Compare(a[:], b[:]) })
	for _, blob := range slices.Sorted(maps.Keys(keys)) {
		k.Keys = append(k.Keys, []byte(blob))
	}
	return k, nil
}

func parseCerts(r *reader, certs map[string]*CertRevocations) error {
	ca := r.str()
	r.str() // reserved
	if r.err {
		return invalid("truncated certificate section")
	}
	if len(ca) > 0 {
		if _, err := gossh.ParsePublicKey(ca); err != nil {
			return invalid("CA key: %v", err)
		}
	}
	c, ok := certs[string(ca)]
	if !ok {
		c = &CertRevocations{}
		if len(ca) > 0 {
			c.CA = bytes.Clone(ca)
		}
		certs[string(ca)] = c
	}
	for len(r.b) > 0 {
		typ := r.u8()
		sub := reader{b: r.str()}
		if r.err {
			return invalid("truncated certificate subsection")
		}
		switch typ {
		case certSerialList:
			for len(sub.b) > 0 {
				v := sub.u64()
				if sub.err || v == 0 {
					return invalid("bad serial in list")
				}
				c.Serials = append(c.Serials, Range{v, v})
			}
		case certSerialRange:
			lo, hi := sub.u64(), sub.u64()
			if sub.err || lo == 0 || lo > hi {
				return invalid("bad serial range")
			}
			c.Serials = append(c.Serials, Range{lo, hi})
		case certSerialBitmap:
			lo := sub.u64()
			bits := sub.str()
			if sub.err {
				return invalid("truncated serial bitmap")
			}
			if len(bits) > 0 && bits[0]&0x80 != 0 {
				return invalid("negative serial bitmap")
			}
			if len(bits) > 2049 || (len(bits) == 2049 && bits[0] != 0) {
				return invalid("serial bitmap too large")
			}
			n := new(big.Int).SetBytes(bits)
			for i := 0; i < n.BitLen(); i++ {
				if n.Bit(i) == 0 {
					continue
				}
				v := lo + uint64(i)
				if v < lo || v == 0 {
					return invalid("serial bitmap wraps or names serial 0")
				}
				c.Serials = append(c.Serials, Range{v, v})
			}
		case certKeyID:
			for len(sub.b) > 0 {
				id := sub.cstr()
				if sub.err {
					return invalid("bad key id")
				}
				c.KeyIDs = append(c.KeyIDs, id)
			}
		case certExtension:
			if err := parseExtension(&sub); err != nil {
				return err
			}
		default:
			return invalid("unknown certificate subsection %#x", typ)
		}
		if sub.err || len(sub.b) > 0 {
			return invalid("certificate subsection %#x holds unparsed data", typ)
		}
	}
	return nil
}

// parseExtension reads §2.5/§5: a critical extension is refused (keygate
// knows none); another is skipped.
func parseExtension(r *reader) error {
	name := r.cstr()
	critical := r.u8()
	r.str()
	if r.err {
		return invalid("truncated extension")
	}
	if critical != 0 {
		return invalid("unsupported critical extension %q", name)
	}
	return nil
}

// reader is an SSH wire decoder; err is sticky.
type reader struct {
	b   []byte
	err bool
}

func (r *reader) take(n int) []byte {
	if r.err || len(r.b) < n {
		r.err = true
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u8() byte {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (r *reader) str() []byte {
	n := r.u32()
	if r.err || uint64(n) > uint64(len(r.b)) {
		r.err = true
		return nil
	}
	return r.take(int(n))
}

// cstr is OpenSSH's sshbuf_get_cstring: a string without NUL bytes.
func (r *reader) cstr() string {
	p := r.str()
	if bytes.IndexByte(p, 0) >= 0 {
		r.err = true
		return ""
	}
	return string(p)
}
