package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// slowRequest is a POST /api/v4/user/keys whose body the test writes when it
// chooses. It sends "Expect: 100-continue", so the server's "100 Continue"
// proves that the handler is running and reading the body.
type slowRequest struct {
	running chan struct{} // closed on "100 Continue"
	body    *io.PipeWriter
	result  chan slowResult
}

type slowResult struct {
	resp *response
	err  error
}

func startSlowRequest(t *testing.T, p *proc, token string) *slowRequest {
	t.Helper()
	pr, pw := io.Pipe()
	s := &slowRequest{running: make(chan struct{}), body: pw, result: make(chan slowResult, 1)}
	var once sync.Once
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got100Continue: func() { once.Do(func() { close(s.running) }) },
	})
	req, err := http.NewRequestWithContext(ctx, "POST", p.URL("/api/v4/user/keys"), pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("PRIVATE-TOKEN", token)
	req.Header.Set("Expect", "100-continue")
	tr := &http.Transport{ExpectContinueTimeout: time.Minute, DisableKeepAlives: true}
	t.Cleanup(func() {
		pw.CloseWithError(io.ErrClosedPipe)
		tr.CloseIdleConnections()
	})
	go func() {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			s.result <- slowResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		s.result <- slowResult{resp: &response{Status: resp.StatusCode, Header: resp.Header, Body: b}, err: err}
	}()
	select {
	case <-s.running:
	case r := <-s.result:
		t.Fatalf("the slow request ended before its body was sent: %+v", r)
	case <-time.After(startDeadline):
		t.Fatal("no 100 Continue: the handler never started reading the body")
	}
	return s
}

// waitRefused waits until addr refuses connections (the listener closed).
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(startDeadline)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections after the signal", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGracefulShutdown stops keygate while requests are in flight: it stops
// accepting, lets the running request finish, and exits 0.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	const grace = 30 * time.Second
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			token := randomToken("shutdown-admin-token-")
			opts := serveOpts{DataDir: t.TempDir(), Env: []string{"KEYGATE_ADMIN_TOKEN=" + token},
				Args: []string{"--shutdown-grace", grace.String()}}
			p := startServe(t, opts)
			p.must("GET", "/-/readiness", "", nil, 200)
			p.must("GET", "/-/health", "", nil, 200)

			// Background traffic: many concurrent readers until the signal.
			var (
				wg       sync.WaitGroup
				mu       sync.Mutex
				failures []string
			)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			for i := 0; i < 16; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ctx.Err() == nil {
						r, err := p.do(ctx, "GET", "/api/v4/user/keys", token, nil)
						if err != nil {
							return // the listener closed
						}
						if r.Status != http.StatusOK {
							mu.Lock()
							failures = append(failures, fmt.Sprintf("%d %s", r.Status, r.Body))
							mu.Unlock()
						}
					}
				}()
			}
			slow := startSlowRequest(t, p, token)

			p.signal(sig)
			waitRefused(t, p.HTTPAddr)
			cancel()
			wg.Wait()

			// The request that was running when the signal came completes.
			line := sshKeyLine("in-flight")
			body, _ := json.Marshal(map[string]string{"title": "sent during shutdown", "key": line})
			if _, err := slow.body.Write(body); err != nil {
				t.Fatalf("writing the in-flight body: %v; stderr:\n%s", err, p.Stderr)
			}
			slow.body.Close()
			var res slowResult
			select {
			case res = <-slow.result:
			case <-time.After(startDeadline):
				t.Fatal("no answer to the in-flight request")
			}
			if res.err != nil || res.resp.Status != http.StatusCreated {
				t.Fatalf("in-flight request: %+v, %v; want 201; stderr:\n%s", res.resp, res.err, p.Stderr)
			}
			if code := p.wait(grace); code != 0 {
				t.Fatalf("exit status %d after %v, want 0; stderr:\n%s", code, sig, p.Stderr)
			}
			for _, f := range failures {
				t.Errorf("concurrent request during shutdown: %s", f)
			}

			// What the in-flight request wrote was kept.
			kid := id(t, res.resp.Object(t))
			p = startServe(t, opts)
			p.must("GET", fmt.Sprintf("/api/v4/user/keys/%d", kid), token, nil, 200)
			p.stop()
		})
	}
}

// TestShutdownGraceExpires stops keygate while a request stalls forever: it
// must not wait past the grace period.
func TestShutdownGraceExpires(t *testing.T) {
	t.Parallel()
	token := randomToken("grace-admin-token-")
	p := startServe(t, serveOpts{Env: []string{"KEYGATE_ADMIN_TOKEN=" + token},
		Args: []string{"--shutdown-grace", "500ms"}})
	startSlowRequest(t, p, token) // its body never comes
	p.signal(syscall.SIGTERM)
	code := p.wait(startDeadline)
	if code != 0 {
		t.Errorf("exit status %d when the grace period ran out, want 0 (SPEC §2: SIGTERM … exit 0); stderr:\n%s", code, p.Stderr)
	}
}

// TestSignalDuringStartup sends SIGTERM while keygate is still starting
// (migrations, bootstrap, host key generation, listeners): it must exit, never
// hang, and the next start must work, with an admin token someone knows.
// Where the signal lands depends on timing, so each run tries a few moments.
func TestSignalDuringStartup(t *testing.T) {
	t.Parallel()
	for _, withEnv := range []bool{true, false} {
		for _, delay := range []time.Duration{0, 20 * time.Millisecond, 80 * time.Millisecond, 250 * time.Millisecond} {
			name := fmt.Sprintf("env-token/%v", delay)
			if !withEnv {
				name = fmt.Sprintf("generated-token/%v", delay)
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				opts := serveOpts{DataDir: t.TempDir()}
				token := randomToken("startup-signal-token-")
				if withEnv {
					opts.Env = []string{"KEYGATE_ADMIN_TOKEN=" + token}
				}
				p := launchServe(t, opts)
				time.Sleep(delay)
				p.signal(syscall.SIGTERM)
				code := p.wait(30 * time.Second)
				// SPEC §2 asks for exit 0 on SIGTERM; during startup keygate
				// may still report the interrupted step instead.
				if code != 0 {
					t.Logf("exit status %d; stderr:\n%s", code, p.Stderr)
				}

				// Whatever was interrupted, the next start succeeds and the
				// admin can log in.
				first := p
				p = startServe(t, opts)
				if !withEnv {
					b, err := os.ReadFile(filepath.Join(opts.DataDir, "admin-token"))
					if err != nil {
						t.Fatalf("after a start interrupted by SIGTERM, the next start left no admin token (%v): "+
							"root exists but nobody knows a token for it; stderr of the interrupted start:\n%s\nof the next:\n%s",
							err, first.Stderr, p.Stderr)
					}
					token = strings.TrimSpace(string(b))
				}
				if u := p.must("GET", "/api/v4/user", token, nil, 200).Object(t); u["username"] != "root" {
					t.Errorf("after an interrupted start, the admin token authenticates %v, want root", u["username"])
				}
				p.stop()
			})
		}
	}
}
