package packcache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// The hook and the serving process speak frames over the private socket:
// one type byte, a 4-byte big-endian length, the payload. The hook sends
// hello (token NUL args…), then stdin frames and an empty stdinEOF; the
// server answers with stdout and stderr frames and ends with exit (4-byte
// status) or error (a message). A cache entry's file is the server's answer
// as these frames, so a reader copies its bytes as they are.
const (
	frameStdout   byte = 1
	frameStderr   byte = 2
	frameExit     byte = 3
	frameError    byte = 4
	frameHello    byte = 5
	frameStdin    byte = 6
	frameStdinEOF byte = 7

	frameHeader = 5
	maxFrame    = 1 << 20
)

var errFrameTooBig = errors.New("packcache: frame too large")

func writeFrame(w io.Writer, typ byte, p []byte) error {
	var h [frameHeader]byte
	h[0] = typ
	binary.BigEndian.PutUint32(h[1:], uint32(len(p)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	if len(p) == 0 {
		return nil
	}
	_, err := w.Write(p)
	return err
}

// readFrame reads one frame; its payload is at most limit bytes.
func readFrame(r io.Reader, buf []byte, limit int) (byte, []byte, error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint32(h[1:]))
	if n > limit {
		return 0, nil, errFrameTooBig
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return h[0], buf, nil
}

// exitFrame is the frame that ends a successful or failed answer.
func exitFrame(code int) []byte {
	b := make([]byte, frameHeader+4)
	b[0] = frameExit
	binary.BigEndian.PutUint32(b[1:], 4)
	binary.BigEndian.PutUint32(b[frameHeader:], uint32(code))
	return b
}

// framer turns the writes of one stream (pack-objects' stdout or stderr)
// into frames of typ on a shared sink; a mutex keeps the two streams'
// frames whole.
type framer struct {
	typ  byte
	mu   *sync.Mutex
	sink io.Writer
}

func (f framer) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), maxFrame)
		var h [frameHeader]byte
		h[0] = f.typ
		binary.BigEndian.PutUint32(h[1:], uint32(n))
		f.mu.Lock()
		_, err := f.sink.Write(h[:])
		if err == nil {
			_, err = f.sink.Write(p[:n])
		}
		f.mu.Unlock()
		if err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// protocolError is a refusal the hook prints as is.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return e.msg }

func refusef(format string, a ...any) error {
	return &protocolError{msg: fmt.Sprintf(format, a...)}
}
