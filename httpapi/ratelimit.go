package httpapi

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ipLimiter keeps one token bucket per client IP, forgetting idle ones.
type ipLimiter struct {
	mu      sync.Mutex
	limit   rate.Limit
	burst   int
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newIPLimiter(limit rate.Limit, burst int) *ipLimiter {
	return &ipLimiter{limit: limit, burst: burst, buckets: map[string]*bucket{}}
}

// limiterKey is the bucket of a client address: the address itself for
// IPv4, its /64 for IPv6 (one host usually holds a whole /64, so keying by
// address would give it 2^64 buckets), as the SSH side does.
func limiterKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.WithZone("").Prefix(64)
		return p.String()
	}
	return a.String()
}

// allow takes one token from ip's bucket.
func (l *ipLimiter) allow(ip string) bool {
	ip = limiterKey(ip)
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.seen) > 10*time.Minute {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[ip]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[ip] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}

// exhausted reports whether ip's bucket is empty now, without taking a
// token: a request that would be refused after a failure is refused before
// it costs keygate anything (an ID token's verification may fetch keys).
func (l *ipLimiter) exhausted(ip string) bool {
	ip = limiterKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[ip]
	return ok && b.lim.TokensAt(time.Now()) < 1
}
