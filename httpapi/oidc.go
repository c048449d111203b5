package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/keygate/keygate/keystore"
)

// OpenID Connect ID tokens: a person's (audience: the issuer's client_id)
// exchanged for a certificate, and a CI job's (audience: a trust rule's)
// exchanged for a project certificate. Discovery and keys go through
// coreos/go-oidc: the provider's JWKS is fetched on first use and again
// whenever a token names a key it does not hold (the provider rotated), and
// every token is checked for issuer, expiry, not-before, signature and
// algorithm (asymmetric only: no HS256, no "none"); the audience against
// the client_id or the rule.

// signingAlgs are the signature algorithms keygate accepts in ID tokens.
var signingAlgs = []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA}

// oidcProviders caches discovered providers by issuer URL. A failed
// discovery is retried after failedDiscoveryTTL.
type oidcProviders struct {
	client *http.Client
	mu     sync.Mutex
	byURL  map[string]*providerEntry
}

type providerEntry struct {
	p   *oidc.Provider
	err error
	at  time.Time
}

const failedDiscoveryTTL = 10 * time.Second

func newOIDCProviders(client *http.Client) *oidcProviders {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &oidcProviders{client: client, byURL: map[string]*providerEntry{}}
}

func (o *oidcProviders) provider(ctx context.Context, issuer string) (*oidc.Provider, error) {
	o.mu.Lock()
	e, ok := o.byURL[issuer]
	o.mu.Unlock()
	if ok && (e.err == nil || time.Since(e.at) < failedDiscoveryTTL) {
		return e.p, e.err
	}
	// The provider keeps the HTTP client (not the context) for its key
	// set, which outlives this request.
	dctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, o.client), 15*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(dctx, issuer)
	o.mu.Lock()
	o.byURL[issuer] = &providerEntry{p: p, err: err, at: time.Now()}
	o.mu.Unlock()
	return p, err
}

// forget drops issuer's provider (an admin removed or re-added it).
func (o *oidcProviders) forget(issuer string) {
	o.mu.Lock()
	delete(o.byURL, issuer)
	o.mu.Unlock()
}

// looksLikeJWT reports whether a bearer token has a JWT's shape (three
// base64url parts, the first a JSON object): such a token that is not a
// personal access token may be an ID token.
func looksLikeJWT(tok string) bool {
	return strings.HasPrefix(tok, "eyJ") && strings.Count(tok, ".") == 2 && len(tok) < 16<<10
}

// peekIssuer reads a JWT's "iss" claim without verifying anything (to pick
// the provider that verifies it).
func peekIssuer(tok string) (string, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", false
	}
	var c struct {
		Iss any `json:"iss"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", false
	}
	iss, ok := c.Iss.(string)
	return iss, ok && iss != ""
}

// idToken is a verified ID token.
type idToken struct {
	issuer   *keystore.OIDCIssuer
	token    *oidc.IDToken
	claims   map[string]any
	audience []string
}

// unauthorizedToken is a 401 whose message says what is wrong with an ID
// token (never the token itself).
func unauthorizedToken(format string, args ...any) *httpError {
	return errStatus(http.StatusUnauthorized, "401 Unauthorized - "+fmt.Sprintf(format, args...))
}

// verifyIDToken checks raw against the issuer an admin trusts: signature,
// algorithm, issuer, expiry and not-before; the audience must be
// audience, or (audience "") is left to the caller. A token of an issuer
// nobody trusts, or for another audience, is a 401 that says which.
func (a *API) verifyIDToken(ctx context.Context, raw, audience string) (*idToken, error) {
	iss, ok := peekIssuer(raw)
	if !ok {
		return nil, unauthorizedToken("the bearer token is neither a personal access token nor a well-formed ID token")
	}
	issuer, err := a.store.OIDCIssuerByURL(ctx, iss)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, unauthorizedToken("ID token issuer %q is not trusted by this keygate (an administrator adds it with POST /api/v4/admin/oidc_issuers)", truncate(iss, 200))
	} else if err != nil {
		return nil, err
	}
	p, err := a.oidc.provider(ctx, issuer.Issuer)
	if err != nil {
		a.log.Warn("OpenID Connect discovery failed", "issuer", issuer.Issuer, "err", err)
		return nil, errStatus(http.StatusBadGateway, "502 Bad Gateway - the ID token's issuer could not be reached for its keys; try again later")
	}
	cfg := &oidc.Config{ClientID: audience, SkipClientIDCheck: audience == "", SupportedSigningAlgs: signingAlgs}
	tok, err := p.Verifier(cfg).Verify(ctx, raw)
	if err != nil {
		var expired *oidc.TokenExpiredError
		switch {
		case errors.As(err, &expired):
			return nil, unauthorizedToken("the ID token expired at %s", expired.Expiry.UTC().Format(time.RFC3339))
		case strings.Contains(err.Error(), "expected audience"):
			return nil, unauthorizedToken("the ID token is for audience %s, not %q", audienceOf(raw), audience)
		}
		a.log.Debug("ID token refused", "issuer", issuer.Issuer, "err", err)
		return nil, unauthorizedToken("the ID token does not verify: %s", strings.TrimPrefix(err.Error(), "oidc: "))
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, unauthorizedToken("the ID token's claims do not parse")
	}
	return &idToken{issuer: issuer, token: tok, claims: claims, audience: tok.Audience}, nil
}

// audienceOf is the (unverified) aud of a token, for messages.
func audienceOf(raw string) string {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "[]"
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		Aud any `json:"aud"`
	}
	_ = json.Unmarshal(payload, &c)
	b, _ := json.Marshal(c.Aud)
	return truncate(string(b), 300)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// personFromIDToken verifies a person's ID token (audience: the issuer's
// client_id) and maps it to a keygate user by the issuer's username_claim.
func (a *API) personFromIDToken(ctx context.Context, raw string) (*keystore.User, *idToken, error) {
	iss, ok := peekIssuer(raw)
	if !ok {
		return nil, nil, unauthorizedToken("the bearer token is neither a personal access token nor a well-formed ID token")
	}
	issuer, err := a.store.OIDCIssuerByURL(ctx, iss)
	if err == nil && issuer.ClientID == "" {
		return nil, nil, unauthorizedToken("issuer %q is trusted for CI jobs only (it has no client_id for people's tokens)", iss)
	}
	tok, err := a.verifyIDToken(ctx, raw, func() string {
		if issuer != nil {
			return issuer.ClientID
		}
		return ""
	}())
	if err != nil {
		return nil, nil, err
	}
	for name, want := range tok.issuer.RequiredClaims {
		got, ok := keystore.ClaimString(tok.claims[name])
		if !ok || got != want {
			return nil, nil, errStatus(http.StatusForbidden, fmt.Sprintf("403 Forbidden - the ID token's claim %q does not have the value this keygate requires", name))
		}
	}
	var u *keystore.User
	switch tok.issuer.UsernameClaim {
	case keystore.UsernameClaimEmail:
		email, _ := tok.claims["email"].(string)
		verified, _ := tok.claims["email_verified"].(bool)
		if email == "" {
			return nil, nil, errStatus(http.StatusForbidden, "403 Forbidden - the ID token has no email claim")
		}
		if !verified {
			return nil, nil, errStatus(http.StatusForbidden, "403 Forbidden - the ID token's email is not verified (email_verified is not true)")
		}
		u, err = a.store.UserByEmail(ctx, email)
	default:
		name, _ := tok.claims["preferred_username"].(string)
		if name == "" {
			return nil, nil, errStatus(http.StatusForbidden, "403 Forbidden - the ID token has no preferred_username claim")
		}
		u, err = a.store.UserByUsername(ctx, name)
	}
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, nil, errStatus(http.StatusForbidden, fmt.Sprintf("403 Forbidden - no keygate user has the %s of this ID token", tok.issuer.UsernameClaim))
	} else if err != nil {
		return nil, nil, err
	}
	if !u.Active() {
		return nil, nil, errStatus(http.StatusForbidden, "403 Forbidden - Your account has been blocked.")
	}
	return u, tok, nil
}
