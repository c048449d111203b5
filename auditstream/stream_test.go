package auditstream_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keygate/keygate/auditstream"
	itest "github.com/keygate/keygate/internal/testutil"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/pgtest"
)

// sink is a destination on loopback (plain http, allowed to loopback)
// that records the ids it accepted; fail makes it answer 500.
type sink struct {
	srv  *httptest.Server
	fail atomic.Bool
	mu   sync.Mutex
	ids  []int64
	node map[int64]string // which streamer's client sent each accepted id
}

func newSink(t *testing.T) *sink {
	s := &sink{node: map[int64]string{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if s.fail.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		var ev struct {
			ID int64 `json:"id"`
		}
		json.Unmarshal(b, &ev)
		s.mu.Lock()
		s.ids = append(s.ids, ev.ID)
		s.node[ev.ID] = r.Header.Get("User-Agent")
		s.mu.Unlock()
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) got() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.ids...)
}

func openStore(t *testing.T, dsn string) *keystore.Store {
	t.Helper()
	st, err := keystore.Open(context.Background(), keystore.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func record(t *testing.T, st *keystore.Store, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := st.RecordEvent(context.Background(), keystore.Actor{}, "test_event", "test", int64(i), map[string]any{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
}

func wait(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

func run(t *testing.T, cfg auditstream.Config) {
	t.Helper()
	s, err := auditstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestDropAfterTheLimit: a destination failing for longer than DropAfter
// has its events dropped, each counted and logged; once it answers again
// the next events are delivered; the filter skips other event types.
func TestDropAfterTheLimit(t *testing.T) {
	t.Parallel()
	st := openStore(t, filepath.Join(t.TempDir(), "k.db"))
	sk := newSink(t)
	sk.fail.Store(true)
	ctx := context.Background()
	url := sk.srv.URL + "/e"
	types := []string{"test_event"}
	if _, err := st.CreateStreamDestination(ctx, keystore.Actor{}, keystore.StreamDestinationInput{DestinationURL: &url, EventTypes: &types}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	logs := &itest.SyncBuffer{}
	run(t, auditstream.Config{Store: st, Registry: reg, Log: slog.New(slog.NewTextHandler(logs, nil)),
		Poll: 20 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, DropAfter: 300 * time.Millisecond})
	record(t, st, 3)
	dropped := func() float64 { return testutil.ToFloat64(dropCounter(t, reg)) }
	if !wait(10*time.Second, func() bool { return dropped() == 3 }) {
		t.Fatalf("dropped %v, want 3; log:\n%s", dropped(), logs)
	}
	if n := strings.Count(logs.String(), "event dropped"); n != 3 {
		t.Errorf("%d drops logged, want 3:\n%s", n, logs)
	}
	sk.fail.Store(false)
	if err := st.RecordEvent(ctx, keystore.Actor{}, "other_event", "test", 0, nil); err != nil {
		t.Fatal(err)
	}
	record(t, st, 2)
	if !wait(10*time.Second, func() bool { return len(sk.got()) == 2 }) {
		t.Fatalf("after the destination came back: got %v, want 2 events; log:\n%s", sk.got(), logs)
	}
	if !strings.Contains(logs.String(), "destination answers again") {
		t.Errorf("no log line says the destination answers again:\n%s", logs)
	}
	// Everything delivered or dropped: the outbox is trimmed.
	if !wait(10*time.Second, func() bool { n, _ := st.OutboxPending(ctx, 0); return n == 0 }) {
		n, _ := st.OutboxPending(ctx, 0)
		t.Errorf("%d outbox rows left after delivery", n)
	}
}

func dropCounter(t *testing.T, reg *prometheus.Registry) prometheus.Collector {
	return collectorFunc(func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "keygate_audit_stream_dropped_total" {
				var sum float64
				for _, m := range mf.GetMetric() {
					sum += m.GetCounter().GetValue()
				}
				return sum
			}
		}
		return 0
	})
}

// collectorFunc is a one-value gauge computed on collection.
func collectorFunc(f func() float64) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "value", Help: "v"}, f)
}

// TestOneNodeDelivers: two nodes on one PostgreSQL database stream to the
// same destination; each event is delivered by one of them, once (the
// destination never fails), and when the delivering node stops the other
// takes over where it left off.
func TestOneNodeDelivers(t *testing.T) {
	t.Parallel()
	if pgtest.AdminURL() == "" {
		t.Skip("needs PostgreSQL (KEYGATE_TEST_POSTGRES; scripts/test.sh starts one)")
	}
	dsn := pgtest.NewDatabase(t)
	a, b := openStore(t, dsn), openStore(t, dsn)
	sk := newSink(t)
	ctx := context.Background()
	url := sk.srv.URL + "/e"
	if _, err := a.CreateStreamDestination(ctx, keystore.Actor{}, keystore.StreamDestinationInput{DestinationURL: &url}); err != nil {
		t.Fatal(err)
	}
	cfg := func(st *keystore.Store, name string) auditstream.Config {
		return auditstream.Config{Store: st, Poll: 20 * time.Millisecond, Registry: prometheus.NewRegistry(),
			Client: &http.Client{Transport: uaTransport(name)}}
	}
	ca := cfg(a, "node-a")
	regA := prometheus.NewRegistry()
	ca.Registry = regA
	sa, err := auditstream.New(ca)
	if err != nil {
		t.Fatal(err)
	}
	actx, stopA := context.WithCancel(ctx)
	doneA := make(chan struct{})
	go func() { defer close(doneA); sa.Run(actx) }()
	leads := func(reg *prometheus.Registry) bool {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "keygate_audit_stream_leader" {
				return mf.GetMetric()[0].GetGauge().GetValue() == 1
			}
		}
		return false
	}
	if !wait(10*time.Second, func() bool { return leads(regA) }) {
		t.Fatal("node a never took the streaming lock")
	}
	cb := cfg(b, "node-b")
	regB := prometheus.NewRegistry()
	cb.Registry = regB
	run(t, cb)
	time.Sleep(100 * time.Millisecond)
	if leads(regB) {
		t.Fatal("node b leads while node a holds the lock")
	}
	// Both nodes write events.
	for i := 0; i < 20; i++ {
		st := a
		if i%2 == 1 {
			st = b
		}
		record(t, st, 1)
	}
	// 21: the destination's own creation is the first event it receives.
	if !wait(20*time.Second, func() bool { return len(sk.got()) >= 21 }) {
		t.Fatalf("got %d events, want 21", len(sk.got()))
	}
	stopA()
	<-doneA
	record(t, b, 10)
	if !wait(30*time.Second, func() bool { return len(sk.got()) >= 31 }) {
		t.Fatalf("after node a stopped: got %d events, want 31", len(sk.got()))
	}
	time.Sleep(200 * time.Millisecond) // room for a duplicate to show
	got := sk.got()
	if len(got) != 31 {
		t.Errorf("%d deliveries of 31 events (duplicates without any failure): %v", len(got), got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("out of order or repeated: %v", got)
		}
	}
	sk.mu.Lock()
	defer sk.mu.Unlock()
	if sk.node[got[0]] != "node-a" || sk.node[got[len(got)-1]] != "node-b" {
		t.Errorf("first event sent by %q, last by %q; want node-a then node-b", sk.node[got[0]], sk.node[got[len(got)-1]])
	}
}

// uaTransport marks a node's requests with its name.
type uaTransport string

func (u uaTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("User-Agent", string(u))
	return http.DefaultTransport.RoundTrip(r)
}

// TestDestinationURLs: https anywhere, plain http only to loopback.
func TestDestinationURLs(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		url string
		ok  bool
	}{
		{"https://siem.example.com/hook", true},
		{"http://127.0.0.1:9000/x", true},
		{"http://[::1]:9000/x", true},
		{"http://localhost:9000/x", true},
		{"http://siem.example.com/hook", false},
		{"ftp://siem.example.com/", false},
		{"https://user:pw@siem.example.com/", false},
		{"https://siem.example.com/#frag", false},
		{"not a url", false},
		{"", false},
	} {
		if err := keystore.ValidateDestinationURL(c.url); (err == nil) != c.ok {
			t.Errorf("%q: %v, want ok=%v", c.url, err, c.ok)
		}
	}
}
