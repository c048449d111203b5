package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// holdOptions configures a hold: open Conns authenticated connections and
// keep them open, idle, for Duration.
type holdOptions struct {
	Addr        string
	User        string
	Signer      gossh.Signer
	Conns       int
	Concurrency int           // connections being opened at once
	Duration    time.Duration // how long to hold once all are open
	Timeout     time.Duration // per connection (dial + handshake + auth)
	HostKey     gossh.HostKeyCallback
	// Ready, if set, is called once every connection has been tried, with
	// the number open; the hold time starts then.
	Ready func(open int)
}

// HoldResult reports a hold.
type HoldResult struct {
	Addr         string            `json:"addr"`
	Requested    int               `json:"requested"`
	Opened       int64             `json:"opened"`
	OpenSeconds  float64           `json:"open_s"` // time to open them all
	StillOpen    int64             `json:"still_open"`
	HeldSeconds  float64           `json:"held_s"`
	Errors       map[string]int64  `json:"errors"`
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
}

// hold opens the connections, reports Ready, waits Duration (or ctx), then
// counts how many the server kept open and closes them all.
func hold(ctx context.Context, opts holdOptions) (*HoldResult, error) {
	if opts.Addr == "" || opts.Signer == nil || opts.Conns <= 0 {
		return nil, errors.New("addr, key and a positive connection count are required")
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 16
	}
	cfg := clientConfig(opts.User, opts.Signer, opts.HostKey, opts.Timeout)
	res := &HoldResult{Addr: opts.Addr, Requested: opts.Conns,
		Errors: map[string]int64{errDial: 0, errHandshake: 0, errAuth: 0}, ErrorSamples: map[string]string{}}
	var mu sync.Mutex
	var clients []*gossh.Client
	fail := func(kind string, err error) {
		mu.Lock()
		defer mu.Unlock()
		res.Errors[kind]++
		if _, ok := res.ErrorSamples[kind]; !ok {
			res.ErrorSamples[kind] = err.Error()
		}
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()

	start := time.Now()
	var next, closed atomic.Int64
	var wg sync.WaitGroup
	for range opts.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && next.Add(1) <= int64(opts.Conns) {
				d := net.Dialer{Timeout: cfg.Timeout}
				conn, err := d.DialContext(ctx, "tcp", opts.Addr)
				if err != nil {
					fail(errDial, err)
					continue
				}
				_ = conn.SetDeadline(time.Now().Add(cfg.Timeout))
				c, chans, reqs, err := gossh.NewClientConn(conn, opts.Addr, cfg)
				if err != nil {
					conn.Close()
					if strings.Contains(err.Error(), "unable to authenticate") {
						fail(errAuth, err)
					} else {
						fail(errHandshake, err)
					}
					continue
				}
				_ = conn.SetDeadline(time.Time{})
				client := gossh.NewClient(c, chans, reqs)
				go func() { _ = client.Wait(); closed.Add(1) }()
				mu.Lock()
				clients = append(clients, client)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Opened = int64(len(clients))
	res.OpenSeconds = time.Since(start).Seconds()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if opts.Ready != nil {
		opts.Ready(len(clients))
	}
	held := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(opts.Duration):
	}
	res.HeldSeconds = time.Since(held).Seconds()
	// A connection the server closed has had its Wait return.
	res.StillOpen = res.Opened - closed.Load()
	return res, nil
}

func printHold(w io.Writer, r *HoldResult) {
	fmt.Fprintf(w, "target            %s\n", r.Addr)
	fmt.Fprintf(w, "opened            %d of %d in %.3fs\n", r.Opened, r.Requested, r.OpenSeconds)
	fmt.Fprintf(w, "held              %.3fs\n", r.HeldSeconds)
	fmt.Fprintf(w, "still open        %d\n", r.StillOpen)
	fmt.Fprintf(w, "errors            dial %d  handshake %d  auth %d\n", r.Errors[errDial], r.Errors[errHandshake], r.Errors[errAuth])
	for _, k := range []string{errDial, errHandshake, errAuth} {
		if s, ok := r.ErrorSamples[k]; ok {
			fmt.Fprintf(w, "first %s error: %s\n", k, s)
		}
	}
}
