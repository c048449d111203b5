package krl

import (
	"crypto/sha256"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"testing"
)

// BenchmarkMarshal100k encodes KRLs of 100,000 revocations of one CA
// (docs/performance.md has the sizes and times): serials picked at random
// from 1..1,000,000 (sparse: lists and bitmaps), from 1..200,000 (dense:
// bitmaps), one contiguous run (a range), key ids, and SHA-256
// fingerprints.
func BenchmarkMarshal100k(b *testing.B) {
	_, ca := newCA(b)
	serials := func(span uint64) []Range {
		r := mrand.New(mrand.NewPCG(1, span))
		seen := map[uint64]bool{}
		var out []Range
		for len(out) < 100000 {
			v := 1 + r.Uint64N(span)
			if !seen[v] {
				seen[v] = true
				out = append(out, Range{v, v})
			}
		}
		return out
	}
	ids := make([]string, 100000)
	for i := range ids {
		ids[i] = fmt.Sprintf("user%d@example.com:laptop", i)
	}
	fps := make([][32]byte, 100000)
	for i := range fps {
		fps[i] = sha256.Sum256([]byte(strconv.Itoa(i)))
	}
	for _, c := range []struct {
		name string
		k    *KRL
	}{
		{"sparse-serials", &KRL{Certs: []*CertRevocations{{CA: ca, Serials: serials(1000000)}}}},
		{"dense-serials", &KRL{Certs: []*CertRevocations{{CA: ca, Serials: serials(200000)}}}},
		{"one-run", &KRL{Certs: []*CertRevocations{{CA: ca, Serials: []Range{{1, 100000}}}}}},
		{"key-ids", &KRL{Certs: []*CertRevocations{{CA: ca, KeyIDs: ids}}}},
		{"sha256", &KRL{SHA256: fps}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var n int
			for b.Loop() {
				data, err := c.k.Marshal()
				if err != nil {
					b.Fatal(err)
				}
				n = len(data)
			}
			b.ReportMetric(float64(n), "krl-bytes")
		})
	}
}
