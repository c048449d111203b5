package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

func TestHoldKeepsAuthenticatedConnectionsOpen(t *testing.T) {
	s := startServer(t, t.TempDir())
	signer := s.addUser(t, "henry")
	readyWith := -1
	res, err := hold(context.Background(), holdOptions{
		Addr: s.addr, User: "git", Signer: signer, Conns: 30, Concurrency: 4, Duration: 200 * time.Millisecond,
		Ready: func(open int) { readyWith = open },
	})
	if err != nil {
		t.Fatal(err)
	}
	if readyWith != 30 || res.Opened != 30 || res.StillOpen != 30 || res.Requested != 30 {
		t.Fatalf("ready with %d, result %+v", readyWith, res)
	}
	if res.HeldSeconds < 0.2 {
		t.Fatalf("held %.3fs, want the full duration", res.HeldSeconds)
	}
	for kind, n := range res.Errors {
		if n != 0 {
			t.Errorf("%d %s errors: %v", n, kind, res.ErrorSamples)
		}
	}
}

// The server closing held connections (here: the user is blocked while
// they are open) shows as connections no longer open.
func TestHoldCountsConnectionsTheServerClosed(t *testing.T) {
	s := startServer(t, t.TempDir())
	signer := s.addUser(t, "irene")
	u, err := s.store.UserByUsername(context.Background(), "irene")
	if err != nil {
		t.Fatal(err)
	}
	res, err := hold(context.Background(), holdOptions{
		Addr: s.addr, Signer: signer, Conns: 5, Duration: 4 * time.Second,
		Ready: func(int) {
			if _, err := s.store.SetUserState(context.Background(), keystore.Actor{}, u.ID, keystore.StateBlocked); err != nil {
				t.Error(err)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Opened != 5 || res.StillOpen != 0 {
		t.Fatalf("result %+v, want 5 opened and none still open after blocking the user", res)
	}
}

func TestHoldCLIUnknownKeyFails(t *testing.T) {
	s := startServer(t, t.TempDir())
	s.addUser(t, "jack")
	_, priv := newSigner(t) // a key keygate does not know
	keyPath := writeKey(t, priv)
	var out, errb bytes.Buffer
	code := cli(context.Background(), []string{"hold", "--addr", s.addr, "--key", keyPath, "--conns", "3",
		"--duration", "1ms", "--json", "--host-key-check=false"}, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %s", code, errb.String())
	}
	var res HoldResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("json: %v: %s", err, out.String())
	}
	if res.Opened != 0 || res.Errors[errAuth] != 3 || !strings.Contains(res.ErrorSamples[errAuth], "unable to authenticate") {
		t.Fatalf("result %+v", res)
	}
	if !strings.Contains(errb.String(), "holding 0 connections") {
		t.Errorf("stderr lacks the ready line: %s", errb.String())
	}
}

func TestHoldCLIUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := cli(context.Background(), []string{"hold", "--addr", "127.0.0.1:1"}, &out, &errb); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.Contains(errb.String(), "--conns") {
		t.Errorf("usage error does not name --conns: %s", errb.String())
	}
}
