// Package krl writes and reads OpenSSH key revocation lists (KRLs), the
// binary files sshd's RevokedKeys and `ssh-keygen -Q` read.
//
// The format is OpenSSH's PROTOCOL.krl (revision 1.7, 2023/07/17); section
// numbers in comments refer to it. OpenSSH's krl.c is the reference for
// what a reader accepts: keygate never writes anything krl.c would refuse
// (a refused KRL makes sshd refuse every key, fail closed), and Parse
// refuses what krl.c refuses, so a file Parse accepts is one sshd loads.
//
// There is no maintained Go KRL package (golang/go#22741): this one holds
// only what keygate writes — certificate serials (as ranges, bitmaps or
// lists, whichever is smaller), certificate key ids, SHA-256 and SHA-1
// fingerprints and explicit keys — and reads every section OpenSSH writes
// except signatures (refused, as OpenSSH >= 9.4 refuses them).
package krl

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// §1: the header.
const (
	magic         = "SSHKRL\n\x00" // KRL_MAGIC 0x5353484b524c0a00
	formatVersion = 1              // KRL_FORMAT_VERSION
)

// §1: section types.
const (
	sectionCertificates      = 1
	sectionExplicitKey       = 2
	sectionFingerprintSHA1   = 3
	sectionSignature         = 4
	sectionFingerprintSHA256 = 5
	sectionExtension         = 255
)

// §2: certificate subsection types.
const (
	certSerialList   = 0x20
	certSerialRange  = 0x21
	certSerialBitmap = 0x22
	certKeyID        = 0x23
	certExtension    = 0x39
)

// maxBitmapBits bounds a serial bitmap: OpenSSH reads it as an mpint of at
// most SSHBUF_MAX_BIGNUM (2048) bytes. keygate stays well below.
const maxBitmapBits = 8192

// KRL is a key revocation list.
type KRL struct {
	// Version increases each time the list changes (krl_version).
	Version uint64
	// GeneratedAt is seconds since 1970-01-01 UTC (generated_date).
	GeneratedAt uint64
	Comment     string
	// Certs revoke certificates by serial and key id, per CA (§2).
	Certs []*CertRevocations
	// SHA256 and SHA1 revoke keys by the hash of their plain public key
	// blob (§4). OpenSSH checks a certificate's own key, and the key of the
	// CA that signed it, against them: they revoke certificates of that key
	// from every CA.
	SHA256 [][32]byte
	SHA1   [][20]byte
	// Keys revokes plain public keys by their wire form (§3).
	Keys [][]byte
}

// CertRevocations revokes certificates one CA signed (§2).
type CertRevocations struct {
	// CA is the CA public key in SSH wire form; empty means every CA
	// (OpenSSH's "wildcard CA", most useful for key ids).
	CA []byte
	// Serials are inclusive ranges of revoked serial numbers. OpenSSH never
	// revokes serial 0 (a certificate without a serial): Marshal drops it.
	Serials []Range
	// KeyIDs are revoked key ids, compared byte for byte.
	KeyIDs []string
}

// Range is the inclusive serial range Lo..Hi.
type Range struct{ Lo, Hi uint64 }

// ErrInvalid wraps every reason Marshal or Parse refuses a KRL.
var ErrInvalid = errors.New("krl: invalid")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Marshal encodes k. Sections come in a fixed order and their contents
// sorted and merged, so equal lists encode to equal bytes. Serial ranges
// may overlap and repeat; certificate sections with the same CA are
// merged.
func (k *KRL) Marshal() ([]byte, error) {
	var b buf
	b.raw([]byte(magic))
	b.u32(formatVersion)
	b.u64(k.Version)
	b.u64(k.GeneratedAt)
	b.u64(0)   // flags: none defined
	b.str(nil) // reserved
	b.cstr(k.Comment)
	if strings.IndexByte(k.Comment, 0) >= 0 {
		return nil, invalid("comment holds a NUL byte")
	}
	certs, err := mergeCerts(k.Certs)
	if err != nil {
		return nil, err
	}
	for _, c := range certs {
		sect, err := c.marshal()
		if err != nil {
			return nil, err
		}
		if sect != nil {
			b.section(sectionCertificates, sect)
		}
	}
	if len(k.Keys) > 0 {
		var s buf
		keys := slices.Clone(k.Keys)
		slices.SortFunc(keys, bytes.Compare)
		keys = slices.CompactFunc(keys, bytes.Equal)
		for _, key := range keys {
			if len(key) == 0 {
				return nil, invalid("empty explicit key")
			}
			s.str(key)
		}
		b.section(sectionExplicitKey, s.b)
	}
	if len(k.SHA1) > 0 {
		hashes := make([][]byte, len(k.SHA1))
		for i := range k.SHA1 {
			hashes[i] = k.SHA1[i][:]
		}
		b.section(sectionFingerprintSHA1, hashSection(hashes))
	}
	if len(k.SHA256) > 0 {
		hashes := make([][]byte, len(k.SHA256))
		for i := range k.SHA256 {
			hashes[i] = k.SHA256[i][:]
		}
		b.section(sectionFingerprintSHA256, hashSection(hashes))
	}
	return b.b, nil
}

// hashSection lists hashes in numeric order (big-endian), as §4 requires.
func hashSection(hashes [][]byte) []byte {
	slices.SortFunc(hashes, bytes.Compare)
	hashes = slices.CompactFunc(hashes, bytes.Equal)
	var s buf
	for _, h := range hashes {
		s.str(h)
	}
	return s.b
}

// mergeCerts merges sections naming the same CA and orders them by CA.
func mergeCerts(in []*CertRevocations) ([]*CertRevocations, error) {
	byCA := map[string]*CertRevocations{}
	var out []*CertRevocations
	for _, c := range in {
		if c == nil {
			continue
		}
		m, ok := byCA[string(c.CA)]
		if !ok {
			m = &CertRevocations{CA: c.CA}
			byCA[string(c.CA)] = m
			out = append(out, m)
		}
		m.Serials = append(m.Serials, c.Serials...)
		m.KeyIDs = append(m.KeyIDs, c.KeyIDs...)
	}
	slices.SortFunc(out, func(a, b *CertRevocations) int { return bytes.Compare(a.CA, b.CA) })
	for _, c := range out {
		for _, r := range c.Serials {
			if r.Lo > r.Hi {
				return nil, invalid("serial range %d-%d is backwards", r.Lo, r.Hi)
			}
		}
		c.Serials = NormalizeRanges(c.Serials)
		for _, id := range c.KeyIDs {
			if strings.IndexByte(id, 0) >= 0 {
				return nil, invalid("key id holds a NUL byte")
			}
		}
		c.KeyIDs = slices.Compact(slices.Sorted(slices.Values(c.KeyIDs)))
	}
	return out, nil
}

// NormalizeRanges sorts ranges, merges overlapping and adjacent ones and
// drops serial 0 (which OpenSSH never revokes and refuses in a KRL).
// Backwards ranges (Lo > Hi) are dropped.
func NormalizeRanges(in []Range) []Range {
	rs := make([]Range, 0, len(in))
	for _, r := range in {
		if r.Lo == 0 {
			if r.Hi == 0 {
				continue
			}
			r.Lo = 1
		}
		if r.Lo <= r.Hi {
			rs = append(rs, r)
		}
	}
	slices.SortFunc(rs, func(a, b Range) int { return cmp.Compare(a.Lo, b.Lo) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && (r.Lo <= out[n-1].Hi || r.Lo-1 == out[n-1].Hi) {
			out[n-1].Hi = max(out[n-1].Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// marshal writes one certificate section (§2), or nil when it revokes
// nothing. Serials: a contiguous run long enough to pay for its 21 bytes
// is a range (§2.2); the rest are grouped into clusters of nearby serials,
// each written as a bitmap (§2.3) when that is smaller than listing it
// (§2.1, 8 bytes a serial, in one list subsection).
func (c *CertRevocations) marshal() ([]byte, error) {
	if len(c.Serials) == 0 && len(c.KeyIDs) == 0 {
		return nil, nil
	}
	var s buf
	s.str(c.CA)
	s.str(nil) // reserved
	var list []uint64
	flushCluster := func(cl []Range) {
		if len(cl) == 0 {
			return
		}
		lo, hi := cl[0].Lo, cl[len(cl)-1].Hi
		span := hi - lo + 1
		var n, asRanges uint64
		for _, r := range cl {
			l := r.Hi - r.Lo + 1
			n += l
			asRanges += min(l*8, 21)
		}
		bitmapCost := 5 + 8 + 4 + (span+7)/8 + 1
		if span <= maxBitmapBits && bitmapCost < asRanges {
			s.sub(certSerialBitmap, bitmap(lo, cl))
			return
		}
		for _, r := range cl {
			if l := r.Hi - r.Lo + 1; l*8 > 21 {
				s.sub(certSerialRange, rangeBody(r))
			} else {
				for v := r.Lo; ; v++ {
					list = append(list, v)
					if v == r.Hi {
						break
					}
				}
			}
		}
	}
	var cluster []Range
	for _, r := range c.Serials {
		if r.Hi-r.Lo >= 64 { // a long run: always a range
			flushCluster(cluster)
			cluster = nil
			s.sub(certSerialRange, rangeBody(r))
			continue
		}
		if n := len(cluster); n > 0 && (r.Lo-cluster[n-1].Hi > 64 || r.Hi-cluster[0].Lo >= maxBitmapBits) {
			flushCluster(cluster)
			cluster = nil
		}
		cluster = append(cluster, r)
	}
	flushCluster(cluster)
	if len(list) > 0 {
		var l buf
		for _, v := range list {
			l.u64(v)
		}
		s.sub(certSerialList, l.b)
	}
	if len(c.KeyIDs) > 0 {
		var ids buf
		for _, id := range c.KeyIDs {
			ids.cstr(id)
		}
		s.sub(certKeyID, ids.b)
	}
	return s.b, nil
}

func rangeBody(r Range) []byte {
	var b buf
	b.u64(r.Lo)
	b.u64(r.Hi)
	return b.b
}

// bitmap is a §2.3 body: the offset, then an mpint whose bit N (counting
// from the least significant) revokes serial offset+N. The mpint is
// positive: a leading zero byte when the top bit is set.
func bitmap(lo uint64, rs []Range) []byte {
	span := rs[len(rs)-1].Hi - lo + 1
	nbytes := (span + 7) / 8
	bits := make([]byte, nbytes)
	for _, r := range rs {
		for v := r.Lo; ; v++ {
			i := v - lo
			bits[nbytes-1-i/8] |= 1 << (i % 8)
			if v == r.Hi {
				break
			}
		}
	}
	if bits[0]&0x80 != 0 {
		bits = append([]byte{0}, bits...)
	}
	var b buf
	b.u64(lo)
	b.str(bits)
	return b.b
}

// buf is an SSH wire encoder (RFC 4251 §5).
type buf struct{ b []byte }

func (b *buf) raw(p []byte)  { b.b = append(b.b, p...) }
func (b *buf) u32(v uint32)  { b.b = binary.BigEndian.AppendUint32(b.b, v) }
func (b *buf) u64(v uint64)  { b.b = binary.BigEndian.AppendUint64(b.b, v) }
func (b *buf) str(p []byte)  { b.u32(uint32(len(p))); b.b = append(b.b, p...) }
func (b *buf) cstr(s string) { b.u32(uint32(len(s))); b.b = append(b.b, s...) }
func (b *buf) section(typ byte, body []byte) {
	b.b = append(b.b, typ)
	b.str(body)
}
func (b *buf) sub(typ byte, body []byte) { b.section(typ, body) }
