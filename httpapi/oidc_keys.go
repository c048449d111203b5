package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// How often one issuer's keys (its JWKS) may be fetched. go-oidc fetches
// them again whenever a token's signature does not verify with the keys it
// holds — the provider may have rotated — and a forged token's iss, kid
// and signature cost nothing to write: without a limit every anonymous
// request could make keygate fetch a trusted issuer's keys. At most
// keyFetchBurst fetches at once (the first, and a refresh right after it)
// and one per keyRefreshInterval after that reach the issuer; in between,
// the keys fetched last are answered again. A real rotation is therefore
// picked up by the first token signed with the new key, or, when someone
// has just spent the allowance, within keyRefreshInterval.
const (
	keyRefreshInterval = 30 * time.Second
	keyFetchBurst      = 2
	maxJWKSBytes       = 1 << 20
)

// errKeysThrottled is a key fetch refused by the limit before any fetch
// succeeded (nothing to answer again).
var errKeysThrottled = errors.New("httpapi: the issuer's keys were fetched moments ago; not again yet")

// keysThrottle is the HTTP transport of one issuer's key set (only its
// JWKS requests go through it).
type keysThrottle struct {
	base http.RoundTripper
	now  func() time.Time

	mu   sync.Mutex
	lim  *rate.Limiter
	last *fetchedKeys // the last successful answer
}

type fetchedKeys struct {
	header http.Header
	body   []byte
}

func newKeysThrottle(base http.RoundTripper, now func() time.Time) *keysThrottle {
	if base == nil {
		base = http.DefaultTransport
	}
	return &keysThrottle{base: base, now: now, lim: rate.NewLimiter(rate.Every(keyRefreshInterval), keyFetchBurst)}
}

// RoundTrip fetches the keys when the limit allows, and otherwise answers
// the keys fetched last.
func (k *keysThrottle) RoundTrip(req *http.Request) (*http.Response, error) {
	k.mu.Lock()
	allowed := k.lim.AllowN(k.now(), 1)
	last := k.last
	k.mu.Unlock()
	if !allowed {
		if last == nil {
			return nil, errKeysThrottled
		}
		return &http.Response{Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: last.header.Clone(), Body: io.NopCloser(bytes.NewReader(last.body)),
			ContentLength: int64(len(last.body)), Request: req}, nil
	}
	resp, err := k.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("httpapi: the issuer's JWKS is larger than %d bytes", maxJWKSBytes)
	}
	k.mu.Lock()
	k.last = &fetchedKeys{header: resp.Header.Clone(), body: body}
	k.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}
