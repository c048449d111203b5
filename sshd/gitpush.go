package sshd

import (
	"bytes"
	"io"
	"strconv"
	"sync"
)

// A push is followed on both of its streams, which pass through unchanged:
// what the client sends before the pack (its commands, capabilities and
// push options) and git receive-pack's report (unpack and one ok/ng line
// per ref). keygate learns the push options from the client's stream —
// git would pass them only to hooks (GIT_PUSH_OPTION_n), and keygate runs
// none — and what the push did from git's report, which git writes after
// it has updated the refs. A client may hang up once it has read the
// report (go-git closes the connection at once); git, still finishing,
// then dies of the closed pipe or is killed with the connection, and its
// exit status says nothing about the push: the report does.

// Bounds on what a push's audit event records of its push options.
const (
	maxPushOptions     = 32  // options recorded; the rest are counted
	maxPushOptionBytes = 256 // longer options are cut
	maxPktLen          = 65520
)

// pktScanner splits a byte stream into pkt-lines as it arrives. It holds
// at most one packet.
type pktScanner struct {
	buf []byte
	bad bool // not pkt-line framing: stop reading
}

// feed adds b and calls fn for each whole packet (flush: a flush, delim or
// response-end packet; else payload is the packet's data) until fn returns
// false, which stops it for good.
func (p *pktScanner) feed(b []byte, fn func(flush bool, payload []byte) bool) {
	if p.bad {
		return
	}
	p.buf = append(p.buf, b...)
	for len(p.buf) >= 4 {
		n, err := strconv.ParseUint(string(p.buf[:4]), 16, 16)
		switch {
		case err != nil || n == 3 || n > maxPktLen:
			p.stop()
			return
		case n < 4:
			p.buf = p.buf[4:]
			if !fn(true, nil) {
				p.stop()
				return
			}
			continue
		case len(p.buf) < int(n):
			return
		}
		payload := p.buf[4:n]
		p.buf = p.buf[n:]
		if !fn(false, payload) {
			p.stop()
			return
		}
	}
	if len(p.buf) == 0 {
		p.buf = nil // let a large read's array go
	}
}

func (p *pktScanner) stop() { p.bad, p.buf = true, nil }

// pushWatch follows one git-receive-pack session. A nil *pushWatch
// follows nothing.
type pushWatch struct {
	mu sync.Mutex

	in         pktScanner
	inFlushes  int // flushes seen from the client
	caps       string
	options    []string
	optDropped int

	out         pktScanner
	outFlushes  int // flushes of git's own stream (the advertisement's is the first)
	band        pktScanner
	reported    bool // a whole report was read
	unpackOK    bool
	refsOK      int
	refsRefused int
}

// client returns r, with what is read from it followed.
func (w *pushWatch) client(r io.Reader) io.Reader {
	if w == nil {
		return r
	}
	return io.TeeReader(r, writerFunc(w.seeClient))
}

// server returns wr, with what git writes to it followed (before it is
// passed on, so that a client that is gone loses nothing of the report).
func (w *pushWatch) server(wr io.Writer) io.Writer {
	if w == nil {
		return wr
	}
	return watchedWriter{wr, w.seeServer}
}

func (w *pushWatch) seeClient(b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.in.feed(b, func(flush bool, payload []byte) bool {
		if flush {
			w.inFlushes++
			// Commands end with a flush; push options, when both sides
			// support them, follow and end with another. Then the pack.
			return w.inFlushes == 1 && hasCap(w.caps, "push-options")
		}
		line := string(bytes.TrimSuffix(payload, []byte("\n")))
		if w.inFlushes == 0 {
			// The first command (or push-cert line) carries the
			// capabilities after a NUL; shallow lines come before it.
			if i := bytes.IndexByte(payload, 0); i >= 0 && w.caps == "" {
				w.caps = string(bytes.TrimSuffix(payload[i+1:], []byte("\n")))
			}
			return true
		}
		if len(w.options) >= maxPushOptions {
			w.optDropped++
			return true
		}
		if len(line) > maxPushOptionBytes {
			line = line[:maxPushOptionBytes] + "…"
		}
		w.options = append(w.options, line)
		return true
	})
}

func (w *pushWatch) seeServer(b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sideband := hasCap(w.caps, "side-band-64k") || hasCap(w.caps, "side-band")
	w.out.feed(b, func(flush bool, payload []byte) bool {
		if w.outFlushes == 0 { // the ref advertisement
			if flush {
				w.outFlushes++
			}
			return true
		}
		if !sideband {
			return w.reportLine(flush, payload)
		}
		if flush {
			return false // the end of the multiplexed stream
		}
		if len(payload) > 0 && payload[0] == 1 {
			w.band.feed(payload[1:], w.reportLine)
		}
		return true
	})
}

// reportLine reads one packet of git's report; it returns false once the
// report is whole.
func (w *pushWatch) reportLine(flush bool, payload []byte) bool {
	if flush {
		w.reported = true
		return false
	}
	line := string(bytes.TrimSuffix(payload, []byte("\n")))
	switch {
	case line == "unpack ok":
		w.unpackOK = true
	case len(line) > 3 && line[:3] == "ok ":
		w.refsOK++
	case len(line) > 3 && line[:3] == "ng ":
		w.refsRefused++
	}
	return true
}

// settle returns the exit status that tells what the push did, and
// whether git's own status was overridden: a push whose report said every
// ref was updated succeeded, whatever became of git after the client hung
// up.
func (w *pushWatch) settle(code int) (int, bool) {
	if w == nil || code == 0 {
		return code, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reported && w.unpackOK && w.refsRefused == 0 && w.refsOK > 0 {
		return 0, true
	}
	return code, false
}

// addDetails adds the push's options and what its report said to an audit
// event's details.
func (w *pushWatch) addDetails(d map[string]any) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.options) > 0 {
		d["push_options"] = append([]string(nil), w.options...)
	}
	if w.optDropped > 0 {
		d["push_options_dropped"] = w.optDropped
	}
	if w.reported {
		d["refs_updated"] = w.refsOK
		d["refs_rejected"] = w.refsRefused
	}
}

// hasCap reports whether a capability list names c (alone or as c=value).
func hasCap(caps, c string) bool {
	for _, f := range bytes.Fields([]byte(caps)) {
		if string(f) == c || bytes.HasPrefix(f, []byte(c+"=")) {
			return true
		}
	}
	return false
}

type writerFunc func([]byte)

func (f writerFunc) Write(b []byte) (int, error) { f(b); return len(b), nil }

// watchedWriter shows each write to see, then passes it on.
type watchedWriter struct {
	w   io.Writer
	see func([]byte)
}

func (w watchedWriter) Write(b []byte) (int, error) {
	w.see(b)
	return w.w.Write(b)
}
