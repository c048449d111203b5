package sshd

import (
	"context"
	"testing"
	"time"
)

func TestInflightWaitsForHandlersStartedDuringTheWait(t *testing.T) {
	var f inflight
	if err := f.wait(context.Background()); err != nil {
		t.Fatalf("empty wait: %v", err)
	}
	f.add()
	done := make(chan error, 1)
	go func() { done <- f.wait(context.Background()) }()
	time.Sleep(10 * time.Millisecond)
	f.add() // a handler that starts while Shutdown waits
	f.done()
	select {
	case err := <-done:
		t.Fatalf("wait returned (%v) with a handler still running", err)
	case <-time.After(20 * time.Millisecond):
	}
	f.done()
	if err := <-done; err != nil {
		t.Fatalf("wait after the last handler: %v", err)
	}
	f.add()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := f.wait(ctx); err == nil {
		t.Fatal("wait with a running handler and an expired context returned nil")
	}
}
