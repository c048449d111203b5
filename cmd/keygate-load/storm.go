package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// stormOptions is one clone storm: Clients identical clones of one
// repository started at once.
type stormOptions struct {
	Mode    string // "clone": real git clone; "upload-pack": the protocol only
	Clients int
	Timeout time.Duration
	// clone mode
	URL, KeyPath, Dir string
	// upload-pack mode
	Addr, User, Path string
	Signer           gossh.Signer
	HostKey          gossh.HostKeyCallback
}

// StormResult is what a storm measured.
type StormResult struct {
	Mode    string           `json:"mode"`
	Clients int              `json:"clients"`
	OK      int              `json:"ok"`
	Errors  map[string]int64 `json:"errors"`
	// WallS is the time from the start to the last clone's end.
	WallS   float64 `json:"wall_s"`
	FirstS  float64 `json:"first_s"`
	MedianS float64 `json:"median_s"`
	// Bytes is what the clients received: the clones' object
	// directories, or the packs' bytes at the protocol level.
	Bytes int64 `json:"bytes"`
}

func storm(ctx context.Context, o stormOptions) (*StormResult, error) {
	if o.Clients <= 0 {
		return nil, errors.New("--clients must be positive")
	}
	res := &StormResult{Mode: o.Mode, Clients: o.Clients, Errors: map[string]int64{}}
	var mu sync.Mutex
	durs := make([]time.Duration, 0, o.Clients)
	one := func(i int) (int64, error) {
		switch o.Mode {
		case "clone":
			return cloneOnce(ctx, o, i)
		case "upload-pack":
			return uploadPackOnce(ctx, o)
		}
		return 0, fmt.Errorf("unknown --mode %q (clone or upload-pack)", o.Mode)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := range o.Clients {
		wg.Go(func() {
			n, err := one(i)
			d := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Errors[err.Error()]++
				return
			}
			res.OK++
			res.Bytes += n
			durs = append(durs, d)
		})
	}
	wg.Wait()
	res.WallS = time.Since(start).Seconds()
	if len(durs) > 0 {
		slices.Sort(durs)
		res.FirstS, res.MedianS = durs[0].Seconds(), durs[len(durs)/2].Seconds()
	}
	return res, nil
}

// cloneOnce runs one real `git clone --no-checkout` into a scratch
// directory (removed afterwards) and returns the size of its objects.
func cloneOnce(ctx context.Context, o stormOptions, i int) (int64, error) {
	dest := filepath.Join(o.Dir, fmt.Sprintf("clone-%d-%d", os.Getpid(), i))
	defer os.RemoveAll(dest)
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "clone", "--quiet", "--no-checkout", o.URL, dest)
	cmd.Env = append(os.Environ(), "GIT_SSH_COMMAND=ssh -F /dev/null -i "+o.KeyPath+
		" -o IdentitiesOnly=yes -o IdentityAgent=none -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR",
		"GIT_TERMINAL_PROMPT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("git clone: %v: %s", err, firstLine(string(out)))
	}
	var n int64
	err := filepath.WalkDir(filepath.Join(dest, ".git", "objects"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return err
	})
	return n, err
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// uploadPackOnce fetches every branch and tag of a repository as a clone
// does (protocol v0: wants, done; side-band-64k, thin-pack, ofs-delta,
// include-tag, no-progress) over one SSH connection and returns the pack's
// size; the pack is read and dropped (no indexing: the server's side only).
func uploadPackOnce(ctx context.Context, o stormOptions) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	conn, err := dialContext(ctx, o.Addr, clientConfig(o.User, o.Signer, o.HostKey, o.Timeout))
	if err != nil {
		return 0, fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	sess, err := conn.NewSession()
	if err != nil {
		return 0, err
	}
	defer sess.Close()
	in, err := sess.StdinPipe()
	if err != nil {
		return 0, err
	}
	out, err := sess.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := sess.Start("git-upload-pack '" + o.Path + "'"); err != nil {
		return 0, err
	}
	r := bufio.NewReaderSize(out, 64<<10)
	var wants []string
	seen := map[string]bool{}
	for {
		line, flush, err := readPkt(r)
		if err != nil {
			return 0, fmt.Errorf("advertisement: %w", err)
		}
		if flush {
			break
		}
		line, _, _ = strings.Cut(line, "\x00")
		oid, ref, _ := strings.Cut(strings.TrimSpace(line), " ")
		if (strings.HasPrefix(ref, "refs/heads/") || strings.HasPrefix(ref, "refs/tags/")) && !strings.HasSuffix(ref, "^{}") && !seen[oid] {
			seen[oid] = true
			wants = append(wants, oid)
		}
	}
	if len(wants) == 0 {
		return 0, errors.New("nothing to fetch")
	}
	w := bufio.NewWriter(in)
	for i, oid := range wants {
		line := "want " + oid
		if i == 0 {
			line += " multi_ack_detailed side-band-64k thin-pack no-progress ofs-delta include-tag agent=keygate-load"
		}
		writePkt(w, line+"\n")
	}
	w.WriteString("0000")
	writePkt(w, "done\n")
	if err := w.Flush(); err != nil {
		return 0, err
	}
	var n int64
	for {
		line, flush, err := readPkt(r)
		if err != nil {
			return n, fmt.Errorf("pack: %w", err)
		}
		if flush {
			break
		}
		if n == 0 && (line == "NAK\n" || strings.HasPrefix(line, "ACK ")) {
			continue
		}
		switch line[0] {
		case 1:
			if n == 0 && !strings.HasPrefix(line[1:], "PACK") {
				return 0, errors.New("pack: no PACK header")
			}
			n += int64(len(line) - 1)
		case 3:
			return n, fmt.Errorf("server error: %s", strings.TrimSpace(line[1:]))
		}
	}
	_ = in.Close()
	return n, nil
}

func writePkt(w *bufio.Writer, s string) {
	fmt.Fprintf(w, "%04x%s", len(s)+4, s)
}

// readPkt reads one pkt-line (flush is 0000).
func readPkt(r *bufio.Reader) (string, bool, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return "", false, err
	}
	n, err := strconv.ParseUint(string(h[:]), 16, 16)
	if err != nil {
		return "", false, fmt.Errorf("bad pkt-line length %q", h[:])
	}
	if n == 0 {
		return "", true, nil
	}
	if n < 4 {
		return "", false, fmt.Errorf("bad pkt-line length %d", n)
	}
	b := make([]byte, n-4)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", false, err
	}
	if len(b) == 0 {
		return "", false, errors.New("empty pkt-line")
	}
	return string(b), false, nil
}

func printStorm(w io.Writer, r *StormResult) {
	fmt.Fprintf(w, "%s storm: %d/%d clones ok, last done after %.2f s (first %.2f s, median %.2f s), %.1f MB received\n",
		r.Mode, r.OK, r.Clients, r.WallS, r.FirstS, r.MedianS, float64(r.Bytes)/1e6)
	for e, n := range r.Errors {
		fmt.Fprintf(w, "  %d× %s\n", n, e)
	}
}

// dialContext opens an authenticated SSH client connection.
func dialContext(ctx context.Context, addr string, cfg *gossh.ClientConfig) (*gossh.Client, error) {
	d := net.Dialer{Timeout: cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c, chans, reqs, err := gossh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return gossh.NewClient(c, chans, reqs), nil
}
