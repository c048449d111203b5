package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/httpapi"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// TestReadinessWithIndex: with an index that follows the change feed, an
// unreachable database is reported but keeps the node ready while the index
// is fresh enough; a stale index makes it unready. Without an index status
// an unreachable database still answers 503, as before.
func TestReadinessWithIndex(t *testing.T) {
	t.Parallel()
	lastPoll := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		closeDB  bool
		status   *authindex.FeedStatus
		wantCode int
		wantDB   string
		wantIdx  string
	}{
		{"no-index-database-up", false, nil, 200, "ok", ""},
		{"no-index-database-down", true, nil, 503, "unreachable", ""},
		{"index-caught-up", false, &authindex.FeedStatus{Applied: 7, DatabaseReachable: true, LastPoll: lastPoll}, 200, "ok", "ok"},
		{"database-down-index-fresh", true, &authindex.FeedStatus{Applied: 7, Lag: 3 * time.Second, LastPoll: lastPoll}, 200, "unreachable", "ok"},
		{"database-down-index-stale", true, &authindex.FeedStatus{Applied: 7, Lag: 31 * time.Second, LastPoll: lastPoll}, 503, "unreachable", "stale"},
		{"database-up-index-stale", false, &authindex.FeedStatus{Applied: 7, Lag: time.Minute, DatabaseReachable: true, LastPoll: lastPoll}, 503, "ok", "stale"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			store, err := keystore.Open(context.Background(), keystore.Config{DSN: filepath.Join(t.TempDir(), "keygate.db")})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			reg := prometheus.NewRegistry()
			cfg := httpapi.Config{Store: store, Registry: reg}
			if c.status != nil {
				st := *c.status
				cfg.IndexStatus = func() authindex.FeedStatus { return st }
			}
			api, err := httpapi.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if c.closeDB {
				store.Close()
			}
			rec := httptest.NewRecorder()
			api.ServeHTTP(rec, httptest.NewRequest("GET", "/-/readiness", nil))
			var body struct {
				Status string            `json:"status"`
				Checks map[string]string `json:"checks"`
				Index  *struct {
					Applied  int64   `json:"applied_seq"`
					Lag      float64 `json:"lag_seconds"`
					Database string  `json:"database"`
					LastPoll string  `json:"last_poll"`
				} `json:"index"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			wantStatus := map[int]string{200: "ok", 503: "failed"}[c.wantCode]
			if rec.Code != c.wantCode || body.Status != wantStatus || body.Checks["database"] != c.wantDB ||
				body.Checks["index"] != c.wantIdx || body.Checks["listeners"] != "ok" {
				t.Fatalf("readiness = %d %s", rec.Code, rec.Body)
			}
			if c.status == nil {
				if body.Index != nil {
					t.Fatalf("index info without an index: %s", rec.Body)
				}
				return
			}
			wantReach := map[bool]string{true: "reachable", false: "unreachable"}[c.status.DatabaseReachable]
			if body.Index == nil || body.Index.Applied != 7 || body.Index.Lag != c.status.Lag.Seconds() ||
				body.Index.Database != wantReach || body.Index.LastPoll != "2026-05-01T12:00:00Z" {
				t.Fatalf("index info = %s", rec.Body)
			}
			rec = httptest.NewRecorder()
			api.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			m, _ := io.ReadAll(rec.Result().Body)
			for _, want := range []string{"keygate_index_applied_seq 7", "keygate_index_lag_seconds " + formatSeconds(c.status.Lag) + "\n", "keygate_index_reloads_total 0"} {
				if !strings.Contains(string(m), want) {
					t.Errorf("/metrics lacks %q", want)
				}
			}
			if rec.Code != http.StatusOK {
				t.Errorf("/metrics: %d", rec.Code)
			}
		})
	}
}

// formatSeconds writes whole seconds as Prometheus does ("3", not "3.0").
func formatSeconds(d time.Duration) string {
	b, _ := json.Marshal(d.Seconds())
	return string(b)
}
