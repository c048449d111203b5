package auditstream

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestBackoffCapped: waits double from MinBackoff (±20 %) and never pass
// MaxBackoff (30 s by default).
func TestBackoffCapped(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Store: nilStore{}, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.MaxBackoff != 30*time.Second || s.cfg.MinBackoff != 500*time.Millisecond {
		t.Fatalf("defaults: %v..%v", s.cfg.MinBackoff, s.cfg.MaxBackoff)
	}
	for attempt := 0; attempt < 40; attempt++ {
		for i := 0; i < 50; i++ {
			d := s.backoff(attempt)
			want := min(500*time.Millisecond<<min(attempt, 10), 30*time.Second)
			if d > 30*time.Second || d < want*8/10 || d > want*12/10 {
				t.Fatalf("attempt %d: %v, want %v ±20%% and at most 30s", attempt, d, want)
			}
		}
	}
}

type nilStore struct{ Store }
