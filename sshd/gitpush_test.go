package sshd

import (
	"fmt"
	"strings"
	"testing"
)

func pkt(s string) string { return fmt.Sprintf("%04x%s", len(s)+4, s) }

// band wraps pkt-lines in side-band channel 1.
func band(s string) string { return pkt("\x01" + s) }

func TestPushWatch(t *testing.T) {
	t.Parallel()
	const (
		zero = "0000000000000000000000000000000000000000"
		one  = "1111111111111111111111111111111111111111"
	)
	advert := pkt(zero+" capabilities^{}\x00report-status side-band-64k push-options\n") + "0000"
	for _, tc := range []struct {
		name         string
		client       string
		server       string
		code         int
		wantCode     int
		wantOverride bool
		wantOptions  string
		wantRefsOK   any
		wantRefsNG   any
	}{
		{
			name:   "sideband-report-ok-client-gone",
			client: pkt(zero+" "+one+" refs/heads/a\x00report-status side-band-64k push-options\n") + "0000" + pkt("ci.skip\n") + pkt("x=y") + "0000" + "PACK…",
			server: advert + band(pkt("unpack ok\n")+pkt("ok refs/heads/a\n")+"0000") + "0000",
			code:   1, wantCode: 0, wantOverride: true, wantOptions: "[ci.skip x=y]", wantRefsOK: 1, wantRefsNG: 0,
		},
		{
			name:   "plain-report-ref-refused",
			client: pkt(zero+" "+one+" refs/heads/a\x00report-status\n") + "0000PACK",
			server: advert + pkt("unpack ok\n") + pkt("ng refs/heads/a non-fast-forward\n") + "0000",
			code:   1, wantCode: 1, wantOptions: "[]", wantRefsOK: 0, wantRefsNG: 1,
		},
		{
			name:   "no-report-keeps-gits-status",
			client: pkt(zero+" "+one+" refs/heads/a\x00report-status side-band-64k\n") + "0000PACK",
			server: advert + band(pkt("unpack ok\n")),
			code:   1, wantCode: 1, wantOptions: "[]", wantRefsOK: nil, wantRefsNG: nil,
		},
		{
			name:   "unpack-failed",
			client: pkt(zero+" "+one+" refs/heads/a\x00report-status\n") + "0000PACK",
			server: advert + pkt("unpack index-pack abnormal exit\n") + pkt("ng refs/heads/a unpacker error\n") + "0000",
			code:   1, wantCode: 1, wantOptions: "[]", wantRefsOK: 0, wantRefsNG: 1,
		},
		{
			name:   "options-only-when-negotiated",
			client: pkt(zero+" "+one+" refs/heads/a\x00report-status\n") + "0000" + pkt("not-an-option\n") + "0000",
			server: advert,
			code:   0, wantCode: 0, wantOptions: "[]", wantRefsOK: nil, wantRefsNG: nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Byte by byte: framing must not depend on how reads split.
			w := &pushWatch{}
			for i := range len(tc.client) {
				w.seeClient([]byte{tc.client[i]})
			}
			for i := range len(tc.server) {
				w.seeServer([]byte{tc.server[i]})
			}
			code, over := w.settle(tc.code)
			if code != tc.wantCode || over != tc.wantOverride {
				t.Errorf("settle(%d) = %d, %v; want %d, %v", tc.code, code, over, tc.wantCode, tc.wantOverride)
			}
			d := map[string]any{}
			w.addDetails(d)
			opts, _ := d["push_options"].([]string)
			if got := fmt.Sprint(opts); got != tc.wantOptions {
				t.Errorf("options = %s, want %s", got, tc.wantOptions)
			}
			if d["refs_updated"] != tc.wantRefsOK || d["refs_rejected"] != tc.wantRefsNG {
				t.Errorf("refs = %v/%v, want %v/%v", d["refs_updated"], d["refs_rejected"], tc.wantRefsOK, tc.wantRefsNG)
			}
		})
	}
}

// FuzzPushWatch: any bytes from either side, split anywhere, never panic,
// and the recorded options stay within their bounds.
func FuzzPushWatch(f *testing.F) {
	f.Add([]byte(pkt("0 1 refs/heads/a\x00push-options side-band-64k report-status\n")+"0000"+pkt("o\n")+"0000"), []byte("0000"+band(pkt("unpack ok\n")+"0000")), uint8(3))
	f.Add([]byte("zzzz"), []byte("0003"), uint8(1))
	f.Fuzz(func(t *testing.T, client, server []byte, split uint8) {
		w := &pushWatch{}
		step := int(split)%7 + 1
		for i := 0; i < len(client); i += step {
			w.seeClient(client[i:min(i+step, len(client))])
		}
		for i := 0; i < len(server); i += step {
			w.seeServer(server[i:min(i+step, len(server))])
		}
		d := map[string]any{}
		w.addDetails(d)
		opts, _ := d["push_options"].([]string)
		if len(opts) > maxPushOptions {
			t.Fatalf("%d options recorded", len(opts))
		}
		for _, o := range opts {
			if len(o) > maxPushOptionBytes+len("…") || strings.Contains(o, "\n") && len(o) > maxPushOptionBytes {
				t.Fatalf("option of %d bytes recorded", len(o))
			}
		}
		_, _ = w.settle(1)
	})
}
