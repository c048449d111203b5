package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// receiver is a SIEM's HTTPS endpoint on loopback: it answers every other
// request 503, and can be taken down and brought back on the same port.
type receiver struct {
	t                 *testing.T
	addr              string
	certFile, keyFile string
	token             string

	mu       sync.Mutex
	srv      *http.Server
	requests int
	badToken int
	got      []int64          // ids of accepted deliveries, in arrival order
	bodies   map[int64]string // first accepted body of each id
	changed  []int64          // ids delivered twice with different bodies
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	if r.Header.Get("X-Gitlab-Event-Streaming-Token") != rc.token {
		rc.badToken++
		http.Error(w, "bad token", http.StatusUnauthorized)
		return
	}
	if rc.requests%2 == 1 {
		http.Error(w, "flaky", http.StatusServiceUnavailable)
		return
	}
	var ev struct {
		ID        int64  `json:"id"`
		EventType string `json:"event_type"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID == 0 || ev.EventType == "" ||
		r.Header.Get("X-Gitlab-Audit-Event-Type") != ev.EventType {
		http.Error(w, "bad event", http.StatusBadRequest)
		rc.t.Errorf("receiver: bad event %q (type header %q)", body, r.Header.Get("X-Gitlab-Audit-Event-Type"))
		return
	}
	if prev, ok := rc.bodies[ev.ID]; ok && prev != string(body) {
		rc.changed = append(rc.changed, ev.ID)
	} else if !ok {
		rc.bodies[ev.ID] = string(body)
	}
	rc.got = append(rc.got, ev.ID)
}

func (rc *receiver) up() {
	rc.t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port was ours a moment ago
		if ln, err = net.Listen("tcp", rc.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		rc.t.Fatalf("receiver: listen %s: %v", rc.addr, err)
	}
	rc.addr = ln.Addr().String()
	srv := &http.Server{Handler: rc, ReadHeaderTimeout: 5 * time.Second}
	rc.mu.Lock()
	rc.srv = srv
	rc.mu.Unlock()
	go srv.ServeTLS(ln, rc.certFile, rc.keyFile)
}

func (rc *receiver) down() {
	rc.mu.Lock()
	srv := rc.srv
	rc.mu.Unlock()
	srv.Close()
}

func (rc *receiver) snapshot() []int64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]int64(nil), rc.got...)
}

// auditIDs lists the ids of every audit event from the first one named
// action on, oldest first.
func auditIDs(t *testing.T, p *proc, token, from string) []int64 {
	t.Helper()
	var all []int64
	start := int64(0)
	for page := 1; ; page++ {
		r := p.must("GET", "/api/v4/audit_events?per_page=100&page="+strconv.Itoa(page), token, nil, 200)
		var evs []struct {
			ID        int64  `json:"id"`
			EventName string `json:"event_name"`
		}
		r.JSON(t, &evs)
		for _, e := range evs {
			all = append(all, e.ID)
			if e.EventName == from {
				start = e.ID
			}
		}
		if r.Header.Get("X-Next-Page") == "" {
			break
		}
	}
	if start == 0 {
		t.Fatalf("no %s audit event", from)
	}
	var out []int64
	for i := len(all) - 1; i >= 0; i-- {
		if all[i] >= start {
			out = append(out, all[i])
		}
	}
	return out
}

// checkStream requires every id of want, in order, in got: each delivered
// at least once, first deliveries in the order of the events, and a
// delivery that goes back only repeating ones delivered already — for a
// destination (its place is stored after each event) at most the last one
// (strict), for the file sink (stored after each fsynced batch) the last
// batch.
func checkStream(t *testing.T, what string, got, want []int64, strict bool) {
	t.Helper()
	seen := map[int64]bool{}
	var last int64
	for i, id := range got {
		switch {
		case !seen[id] && id < last:
			t.Errorf("%s: event %d first delivered after %d (out of order): %v", what, id, last, got)
		case strict && i > 0 && id < got[i-1]:
			t.Errorf("%s: event %d delivered again after %d (more than the one in flight): %v", what, id, got[i-1], got)
		}
		seen[id] = true
		last = max(last, id)
	}
	for _, id := range want {
		if !seen[id] {
			t.Errorf("%s: event %d never delivered", what, id)
		}
	}
}

// TestAuditStreamingAtLeastOnce: the built keygate streams every audit
// event — REST writes and SSH events — to an HTTPS receiver on loopback
// trusted through SSL_CERT_FILE, which fails half of the requests and is
// down for 10 s while keygate is killed with SIGKILL and restarted. Every
// event arrives, in order, a repeat carrying the same id and body; the
// JSON lines file sink gets them too.
func TestAuditStreamingAtLeastOnce(t *testing.T) {
	t.Parallel()
	requireSSH(t)
	ca := newTestCA(t)
	dir := t.TempDir()
	rc := &receiver{t: t, addr: "127.0.0.1:0", certFile: filepath.Join(dir, "r.crt"), keyFile: filepath.Join(dir, "r.key"),
		token: randomToken("verify-"), bodies: map[int64]string{}}
	ca.issue(t, "receiver", rc.certFile, rc.keyFile)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	rc.up()
	defer rc.down()

	token := randomToken("kgadmin-")
	jsonl := filepath.Join(dir, "audit.jsonl")
	opts := serveOpts{DataDir: filepath.Join(dir, "data"),
		Env:  []string{"KEYGATE_ADMIN_TOKEN=" + token, "SSL_CERT_FILE=" + caFile},
		Args: []string{"--audit-stream-max-backoff", "400ms", "--audit-stream-poll-interval", "100ms", "--audit-stream-file", jsonl}}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, opts)
	dest := p.must("POST", "/api/v4/admin/audit_events/streaming/destinations", token, map[string]any{
		"destination_url": "https://" + rc.addr + "/events", "verification_token": rc.token, "name": "siem"}, 201).Object(t)
	if dest["verification_token"] != rc.token || dest["destination_url"] != "https://"+rc.addr+"/events" {
		t.Fatalf("destination: %v", dest)
	}
	users := 0
	write := func(n int) {
		for i := 0; i < n; i++ {
			users++
			p.must("POST", "/api/v4/users", token, map[string]any{"username": fmt.Sprintf("u%03d", users),
				"email": fmt.Sprintf("u%03d@example.com", users), "name": "U"}, 201)
		}
	}
	write(15)
	// An SSH event: a forward no bastion target allows.
	work, _ := p.gitKey(t, token, "root's key")
	_, port, _ := net.SplitHostPort(p.SSHAddr)
	cmd := exec.Command("ssh", "-F", "/dev/null", "-i", filepath.Join(work, "id_ed25519"), "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-p", port,
		"-W", "192.0.2.1:22", "root@127.0.0.1")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("a forward without a target succeeded: %s", out)
	}
	write(5)
	if !waitUntil(30*time.Second, func() bool { return len(rc.snapshot()) >= 8 }) {
		t.Fatalf("nothing reached the receiver; keygate stderr:\n%s", p.Stderr)
	}

	// The receiver goes down for 10 s; meanwhile keygate is killed with
	// SIGKILL, restarted on the same data, and more events are written.
	rc.down()
	downAt := time.Now()
	write(10)
	p.kill()
	p = startServe(t, opts)
	write(10)
	time.Sleep(time.Until(downAt.Add(10 * time.Second)))
	rc.up()
	write(5)

	want := auditIDs(t, p, token, "audit_stream_destination_created")
	if !waitUntil(90*time.Second, func() bool {
		seen := map[int64]bool{}
		for _, id := range rc.snapshot() {
			seen[id] = true
		}
		for _, id := range want {
			if !seen[id] {
				return false
			}
		}
		return true
	}) {
		t.Errorf("not every event arrived within 90 s; keygate stderr:\n%s", p.Stderr)
	}
	got := rc.snapshot()
	checkStream(t, "receiver", got, want, true)
	rc.mu.Lock()
	if rc.badToken > 0 || len(rc.changed) > 0 {
		t.Errorf("receiver: %d requests without the token; ids delivered with different bodies: %v", rc.badToken, rc.changed)
	}
	sawSSH := false
	for _, b := range rc.bodies {
		sawSSH = sawSSH || strings.Contains(b, `"event_type":"bastion_forward_refused"`)
	}
	requests := rc.requests
	rc.mu.Unlock()
	if !sawSSH {
		t.Error("the SSH event (bastion_forward_refused) was not streamed")
	}
	t.Logf("%d events, %d deliveries, %d requests (half refused, 10 s down, one SIGKILL)", len(want), len(got), requests)

	// The file sink: every event, in order.
	if !waitUntil(30*time.Second, func() bool {
		seen := map[int64]bool{}
		for _, id := range fileIDs(t, jsonl) {
			seen[id] = true
		}
		for _, id := range want {
			if !seen[id] {
				return false
			}
		}
		return true
	}) {
		t.Errorf("the file sink misses events: %v, want %v", fileIDs(t, jsonl), want)
	}
	checkStream(t, "file sink", fileIDs(t, jsonl), want, false)

	// The metrics say what happened.
	metrics := string(p.must("GET", "/metrics", "", nil, 200).Body)
	id := strconv.FormatInt(int64(dest["id"].(float64)), 10)
	for _, m := range []string{`keygate_audit_stream_delivered_total{destination="` + id + `"}`, `keygate_audit_stream_retries_total{destination="` + id + `"}`,
		`keygate_audit_stream_queued{destination="` + id + `"}`, "keygate_audit_stream_leader 1", "keygate_build_info{"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics has no %s", m)
		}
	}
}

func fileIDs(t *testing.T, path string) []int64 {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []int64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			ID int64 `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Errorf("file sink: bad line %q", sc.Text())
			continue
		}
		out = append(out, ev.ID)
	}
	return out
}

func waitUntil(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

func requireSSH(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("ssh not installed (.ci/run installs openssh-client)")
	}
}
