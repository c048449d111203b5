package httpapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/keygate/keygate/internal/oidcprovider"
)

// TestKeyFetchLimitStillFollowsRotation: with the key fetch limit, forged
// tokens reach the issuer's JWKS at most keyFetchBurst times, and a
// provider's real rotation is still followed: a token signed with the new
// key verifies at once when the allowance is left, and within
// keyRefreshInterval when forged tokens have just spent it (in between it
// is refused, and the keys fetched last are answered again without a
// fetch). The limit's clock is the test's.
func TestKeyFetchLimitStillFollowsRotation(t *testing.T) {
	t.Parallel()
	idp := oidcprovider.Start(t.Cleanup)
	var mu sync.Mutex
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	o := newOIDCProviders(nil)
	o.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	ctx := context.Background()
	v, err := o.verifier(ctx, idp.Issuer, &oidc.Config{SkipClientIDCheck: true, SupportedSigningAlgs: signingAlgs})
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"sub": "s", "aud": "a"}
	verifies := func(raw string) bool {
		_, err := v.Verify(ctx, raw)
		return err == nil
	}
	// go-oidc's RemoteKeySet clears its in-flight fetch in a goroutine
	// after answering it: a Verify right after one that fetched may be
	// answered from that fetch again, without a new one. Where a test
	// expects a new fetch to succeed, it gives that goroutine a moment
	// (wall time; the limit's clock does not move).
	verifiesSoon := func(raw string) bool {
		for range 50 {
			if verifies(raw) {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	}
	if !verifies(idp.Sign(claims)) {
		t.Fatal("a good token does not verify")
	}
	// The allowance left (one refresh) follows a rotation at once.
	idp.Rotate(true)
	if !verifiesSoon(idp.Sign(claims)) {
		t.Fatal("a token of the rotated key does not verify with the allowance left")
	}
	if n := idp.JWKSFetches(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2 (first use, rotation)", n)
	}
	// Forged tokens: no fetch now that the allowance is spent.
	forger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged := map[string]any{"iss": idp.Issuer, "sub": "s", "aud": "a", "exp": time.Now().Add(time.Hour).Unix()}
	for i := range 100 {
		kid := "nope"
		if i%2 == 0 {
			kid = idp.KeyID()
		}
		if verifies(oidcprovider.SignWith(jose.ES256, forger, kid, forged)) {
			t.Fatal("a forged token verified")
		}
	}
	if n := idp.JWKSFetches(); n != 2 {
		t.Fatalf("100 forged tokens fetched the JWKS %d more times", n-2)
	}
	if !verifies(idp.Sign(claims)) {
		t.Fatal("a good token stopped verifying while fetches were held back")
	}
	// A rotation while held back: refused until the interval has passed.
	idp.Rotate(true)
	rotated := idp.Sign(claims)
	if verifies(rotated) {
		t.Fatal("the new key was known without a fetch")
	}
	advance(keyRefreshInterval / 2)
	if verifies(rotated) {
		t.Fatal("fetched again before keyRefreshInterval")
	}
	advance(keyRefreshInterval/2 + time.Second)
	if !verifiesSoon(rotated) {
		t.Fatalf("a token of the rotated key does not verify %s after the last permitted fetch", keyRefreshInterval)
	}
	if n := idp.JWKSFetches(); n != 3 {
		t.Fatalf("JWKS fetched %d times, want 3", n)
	}
}

// TestKeyFetchLimitColdStart: forged tokens arriving together at an issuer
// keygate has not used yet wait for one discovery and share one key set,
// so they too fetch its keys at most keyFetchBurst times.
func TestKeyFetchLimitColdStart(t *testing.T) {
	t.Parallel()
	idp := oidcprovider.Start(t.Cleanup)
	o := newOIDCProviders(nil)
	forger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged := oidcprovider.SignWith(jose.ES256, forger, "nope",
		map[string]any{"iss": idp.Issuer, "sub": "s", "aud": "a", "exp": time.Now().Add(time.Hour).Unix()})
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := o.verifier(context.Background(), idp.Issuer, &oidc.Config{SkipClientIDCheck: true, SupportedSigningAlgs: signingAlgs})
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := v.Verify(context.Background(), forged); err == nil {
				t.Error("a forged token verified")
			}
		}()
	}
	wg.Wait()
	if n := idp.JWKSFetches(); n > keyFetchBurst {
		t.Errorf("50 forged tokens at a cold start fetched the JWKS %d times, want at most %d", n, keyFetchBurst)
	}
}
