package sshd

import (
	"errors"
	"net"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// TestNoauthPenalty: connections that finish key exchange and then offer
// no public key — nothing ("none"), a password, keyboard-interactive —
// spend their source's failure budget like a refused key, so such a
// scanner is refused before key exchange after the budget (10 a minute).
// A host-key probe that aborts the key exchange (ssh-keyscan's way) is not
// counted, and neither is a scanner at another address.
func TestNoauthPenalty(t *testing.T) {
	t.Parallel()
	s, addr, cc := limitsServer(t, nil) // the defaults: 10 failures a minute
	for _, tc := range []struct {
		name, source string
		auth         []gossh.AuthMethod
	}{
		{"none", "127.0.0.41", nil},
		{"password", "127.0.0.42", []gossh.AuthMethod{gossh.Password("hunter2")}},
		{"keyboard-interactive", "127.0.0.43", []gossh.AuthMethod{gossh.KeyboardInteractive(
			func(string, string, []string, []bool) ([]string, error) { return nil, nil })}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scanner := *cc
			scanner.Auth = tc.auth
			firstRefused := -1
			for i := range 20 {
				err := loginFrom(tc.source, addr, &scanner)
				if err == nil {
					t.Fatal("a client without a key logged in")
				}
				if beforeKex(err) {
					firstRefused = i
					break
				}
			}
			if firstRefused < 0 || firstRefused > 12 {
				t.Fatalf("a source doing key exchange and offering %s: first refused before key exchange at attempt %d (0: never in 20), want by 12", tc.name, firstRefused+1)
			}
			// Also with a good key now: the address only failed.
			if err := loginFrom(tc.source, addr, cc); !beforeKex(err) {
				t.Fatalf("the penalised source got through: %v", err)
			}
		})
	}
	if got := refusals(s, refuseSourcePenalty); got < 6 {
		t.Fatalf("per_source_penalty refusals = %v, want at least 6", got)
	}

	// ssh-keyscan's way: take the host key, abort the key exchange.
	probe := *cc
	probe.HostKeyCallback = func(string, net.Addr, gossh.PublicKey) error { return errors.New("got the host key") }
	for i := range 40 {
		err := loginFrom("127.0.0.44", addr, &probe)
		if err == nil || !strings.Contains(err.Error(), "got the host key") {
			t.Fatalf("host-key probe %d: %v", i+1, err)
		}
	}
	if err := loginFrom("127.0.0.44", addr, cc); err != nil {
		t.Fatalf("after 40 host-key probes the source was refused: %v", err)
	}
}

// packet is an unencrypted SSH binary packet carrying msg.
func packet(msg byte, payload int) []byte {
	length := 1 + 1 + payload + 4 // padding length, message, payload, padding
	out := []byte{byte(length >> 24), byte(length >> 16), byte(length >> 8), byte(length), 4, msg}
	return append(out, make([]byte, payload+4)...)
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// TestKexScanner: the client's NEWKEYS is found after its version line
// (and lines before it) and other packets, however the stream is split;
// streams that are not SSH, or end before NEWKEYS, never count.
func TestKexScanner(t *testing.T) {
	t.Parallel()
	version := []byte("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
	for _, tc := range []struct {
		name   string
		stream []byte
		want   bool
	}{
		{"kex-finished", concat(version, packet(20, 1200), packet(30, 36), packet(21, 0), []byte("encrypted...")), true},
		{"lines-before-version", concat([]byte("hello\n"), version, packet(20, 10), packet(21, 0)), true},
		{"probe-aborts-before-newkeys", concat(version, packet(20, 1200), packet(30, 36)), false},
		{"newkeys-byte-in-payload", concat(version, packet(20, 40)[:6], []byte{0, 0, 0, 21, 21, 21}, make([]byte, 38)), false},
		{"no-version", concat(packet(21, 0), packet(21, 0)), false},
		{"oversized-packet", concat(version, []byte{0x7f, 0, 0, 0, 4, 20}, packet(21, 0)), false},
		{"zero-length-packet", concat(version, []byte{0, 0, 0, 0, 0, 21}), false},
		{"long-junk-line", concat([]byte(strings.Repeat("x", 300)+"\n"), version, packet(21, 0)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, chunk := range []int{1, 3, 7, 64, len(tc.stream)} {
				var k kexScanner
				got := false
				for b := tc.stream; len(b) > 0; {
					n := min(chunk, len(b))
					if k.feed(b[:n]) {
						got = true
					}
					b = b[n:]
				}
				if got != tc.want {
					t.Fatalf("in chunks of %d: NEWKEYS found = %v, want %v", chunk, got, tc.want)
				}
			}
		})
	}
}

// FuzzKexScanner: any stream, split anywhere, gives the same answer as in
// one piece, and never panics.
func FuzzKexScanner(f *testing.F) {
	f.Add(concat([]byte("SSH-2.0-x\r\n"), packet(20, 10), packet(21, 0)), uint8(3))
	f.Add([]byte("SSH-2.0-x\n\x00\x00\x00\x02\x00\x15"), uint8(1))
	f.Fuzz(func(t *testing.T, stream []byte, split uint8) {
		var whole kexScanner
		want := whole.feed(stream)
		var parts kexScanner
		got := false
		chunk := int(split%16) + 1
		for b := stream; len(b) > 0; {
			n := min(chunk, len(b))
			got = parts.feed(b[:n]) || got
			b = b[n:]
		}
		if got != want {
			t.Fatalf("split in chunks of %d: %v, whole: %v", chunk, got, want)
		}
	})
}
