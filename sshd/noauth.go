package sshd

import "encoding/binary"

// The noauth penalty. A connection that finished a key exchange and ended
// without authenticating — it offered no public key at all, or only
// "none", password or keyboard-interactive, which keygate does not serve —
// spends one unit of its source's failure budget, like a refused key (like
// OpenSSH's PerSourcePenalties noauth). Otherwise a scanner that makes the
// server do a key exchange and leaves, or a password guesser, is never
// refused before key exchange.
//
// "Finished" is the client's SSH_MSG_NEWKEYS (RFC 4253 §7.3), read off the
// cleartext start of the client's byte stream. A host-key probe such as
// ssh-keyscan aborts the exchange once it has the server's reply, before
// its NEWKEYS, and is not counted: keygate's README tells people to run
// ssh-keyscan, and a probe is bounded by the MaxStartups caps. A connection
// refused at a per-principal cap authenticated with a good credential and
// is not counted either.

const (
	msgNewKeys = 21 // SSH_MSG_NEWKEYS
	// maxVersionBytes is how much of the client's identification lines
	// x/crypto reads (all lines together) before it gives up.
	maxVersionBytes = 255
	// maxCleartextPacket bounds the packet length believed before NEWKEYS
	// (x/crypto refuses packets over 256 KB).
	maxCleartextPacket = 256 << 10
)

// kexScanner follows the client's cleartext stream: identification lines
// up to the one starting "SSH-", then binary packets (uint32 length, byte
// padding length, payload whose first byte is the message number) up to
// the client's NEWKEYS; after it everything is encrypted. It is fed by
// connection.Read, from one goroutine at a time.
type kexScanner struct {
	versionBytes int     // identification bytes read so far
	lineLen      int     // bytes of the current identification line
	linePrefix   [4]byte // its first bytes
	inPackets    bool    // the version line is done
	hdr          [6]byte // length, padding length, message number
	hdrN         int
	skip         int  // bytes of the current packet still to pass over
	gaveUp       bool // the stream is not SSH as expected: stop looking
}

// feed scans b and reports whether the client's NEWKEYS is in it.
func (k *kexScanner) feed(b []byte) bool {
	for len(b) > 0 && !k.gaveUp {
		if !k.inPackets {
			c := b[0]
			b = b[1:]
			k.versionBytes++
			if k.versionBytes > maxVersionBytes {
				k.gaveUp = true
				return false
			}
			if c == '\n' {
				if k.lineLen >= 4 && string(k.linePrefix[:]) == "SSH-" {
					k.inPackets = true
				}
				k.lineLen = 0
				continue
			}
			if k.lineLen < len(k.linePrefix) {
				k.linePrefix[k.lineLen] = c
			}
			k.lineLen++
			continue
		}
		if k.skip > 0 {
			n := min(k.skip, len(b))
			k.skip -= n
			b = b[n:]
			continue
		}
		n := copy(k.hdr[k.hdrN:], b)
		k.hdrN += n
		b = b[n:]
		if k.hdrN < len(k.hdr) {
			continue
		}
		k.hdrN = 0
		length := binary.BigEndian.Uint32(k.hdr[:4])
		if length < 2 || length > maxCleartextPacket {
			k.gaveUp = true
			return false
		}
		if k.hdr[5] == msgNewKeys {
			k.gaveUp = true // done: nothing after it is cleartext
			return true
		}
		k.skip = int(length) - 2 // the padding-length and message bytes are read
	}
	return false
}

// scanKex feeds what the client sent to c's scanner.
func (c *connection) scanKex(b []byte) {
	if c.kexScan.feed(b) {
		c.kexDone.Store(true)
	}
}

// noauth reports whether c counts as a noauth failure when it closes
// unauthenticated.
func (c *connection) noauth() bool {
	return c.kexDone.Load() && !c.capped.Load()
}
