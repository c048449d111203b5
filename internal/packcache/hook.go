package packcache

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
)

// HookMain is the hook mode of the keygate binary: upload-pack runs
// `<bin> pack-objects-hook git [--shallow-file ""] pack-objects ARGS…` with
// pack-objects' input on stdin and expects its output on stdout. The hook
// sends both to the serving process (the socket and the session's token
// are in its environment) and relays the answer. Without them — the hook
// run by hand, or no keygate listening — it runs pack-objects itself, as
// upload-pack would have. It returns the exit status.
func HookMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if _, _, err := parseArgs(args); err != nil {
		fmt.Fprintf(stderr, "keygate %s: %v\n", HookCommand, err)
		return 2
	}
	sock, token := os.Getenv(envSocket), os.Getenv(envToken)
	if sock == "" || token == "" {
		return runItself(args, stdin, stdout, stderr)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return runItself(args, stdin, stdout, stderr)
	}
	defer conn.Close()
	if err := sendRequest(conn, token, args, stdin); err != nil {
		fmt.Fprintf(stderr, "keygate: pack cache: sending the request: %v\n", err)
		return 1
	}
	return relay(conn, stdout, stderr)
}

func sendRequest(conn net.Conn, token string, args []string, stdin io.Reader) error {
	w := bufio.NewWriterSize(conn, 64<<10)
	if err := writeFrame(w, frameHello, []byte(token+"\x00"+strings.Join(args, "\x00"))); err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := stdin.Read(buf)
		if n > 0 {
			if werr := writeFrame(w, frameStdin, buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := writeFrame(w, frameStdinEOF, nil); err != nil {
		return err
	}
	return w.Flush()
}

// relay writes the answer's frames to stdout and stderr and returns its
// exit status.
func relay(conn net.Conn, stdout, stderr io.Writer) int {
	r := bufio.NewReaderSize(conn, 256<<10)
	buf := make([]byte, 64<<10)
	for {
		typ, p, err := readFrame(r, buf, maxFrame)
		if err != nil {
			fmt.Fprintln(stderr, "keygate: pack cache: the pack was cut off")
			return 1
		}
		buf = p[:0]
		switch typ {
		case frameStdout:
			if _, err := stdout.Write(p); err != nil {
				return 1
			}
		case frameStderr:
			_, _ = stderr.Write(p)
		case frameExit:
			if len(p) != 4 {
				return 1
			}
			return int(uint32(p[0])<<24 | uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3]))
		case frameError:
			fmt.Fprintf(stderr, "%s\n", p)
			return 1
		default:
			fmt.Fprintln(stderr, "keygate: pack cache: protocol error")
			return 1
		}
	}
}

// runItself runs what upload-pack asked for (args are "git" and its
// arguments, checked by parseArgs).
func runItself(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			return ee.ExitCode()
		}
		fmt.Fprintf(stderr, "keygate %s: %v\n", HookCommand, err)
		return 1
	}
	return 0
}
