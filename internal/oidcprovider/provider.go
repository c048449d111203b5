// Package oidcprovider is an OpenID Connect provider for tests: it serves
// discovery and a JWKS over HTTP, signs ID tokens with keys it can rotate,
// and runs the OAuth 2.0 device authorization grant (RFC 8628), so that
// keygate's real verifier (coreos/go-oidc) and its real device-flow client
// (golang.org/x/oauth2) are tested against a provider on loopback rather
// than a mock of either. Only tests use it.
package oidcprovider

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Provider is a running test OpenID provider.
type Provider struct {
	srv *httptest.Server
	// Issuer is the provider's issuer URL (its "iss").
	Issuer string

	mu      sync.Mutex
	keys    []signingKey // published; the last one signs
	devices map[string]*deviceGrant
	// DeviceClaims are the claims of the ID token a device grant returns
	// once approved (iss, aud, iat, exp are added).
	deviceClaims map[string]any
	jwksFetches  atomic.Int64
}

type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv any
	pub  any
}

type deviceGrant struct {
	deviceCode, userCode, clientID string
	approved                       bool
	expires                        time.Time
}

// Start starts a provider on 127.0.0.1 with one ES256 key; it stops when
// the test's cleanup runs (the caller passes t.Cleanup).
func Start(cleanup func(func())) *Provider {
	p := &Provider{devices: map[string]*deviceGrant{}}
	p.addKey(jose.ES256)
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	p.Issuer = p.srv.URL
	cleanup(p.srv.Close)
	return p
}

func (p *Provider) addKey(alg jose.SignatureAlgorithm) string {
	var k signingKey
	switch alg {
	case jose.RS256:
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		k = signingKey{alg: alg, priv: priv, pub: &priv.PublicKey}
	default:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		k = signingKey{alg: jose.ES256, priv: priv, pub: &priv.PublicKey}
	}
	k.kid = randHex(8)
	p.mu.Lock()
	p.keys = append(p.keys, k)
	p.mu.Unlock()
	return k.kid
}

// Rotate publishes a new signing key (ES256) that signs from now on and,
// when dropOld, withdraws the others. It returns the new key's id.
func (p *Provider) Rotate(dropOld bool) string {
	kid := p.addKey(jose.ES256)
	if dropOld {
		p.mu.Lock()
		p.keys = p.keys[len(p.keys)-1:]
		p.mu.Unlock()
	}
	return kid
}

// JWKSFetches reports how many times the JWKS was fetched.
func (p *Provider) JWKSFetches() int64 { return p.jwksFetches.Load() }

// Sign signs claims as an ID token with the current key. iss is set to
// the provider's unless claims has it; iat and exp (an hour) are added
// unless present.
func (p *Provider) Sign(claims map[string]any) string {
	p.mu.Lock()
	k := p.keys[len(p.keys)-1]
	p.mu.Unlock()
	return SignWith(k.alg, k.priv, k.kid, p.withDefaults(claims))
}

func (p *Provider) withDefaults(claims map[string]any) map[string]any {
	c := maps.Clone(claims)
	now := time.Now()
	if _, ok := c["iss"]; !ok {
		c["iss"] = p.Issuer
	}
	if _, ok := c["iat"]; !ok {
		c["iat"] = now.Unix()
	}
	if _, ok := c["exp"]; !ok {
		c["exp"] = now.Add(time.Hour).Unix()
	}
	return c
}

// SignWith signs claims with any key (a foreign provider's, HS256 …).
func SignWith(alg jose.SignatureAlgorithm, priv any, kid string, claims map[string]any) string {
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: priv}, opts)
	if err != nil {
		panic(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		panic(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		panic(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		panic(err)
	}
	return s
}

// SetDeviceClaims sets the claims of the ID tokens device grants return.
func (p *Provider) SetDeviceClaims(c map[string]any) {
	p.mu.Lock()
	p.deviceClaims = maps.Clone(c)
	p.mu.Unlock()
}

func (p *Provider) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		writeJSON(w, 200, map[string]any{
			"issuer":                                p.Issuer,
			"jwks_uri":                              p.Issuer + "/keys",
			"authorization_endpoint":                p.Issuer + "/authorize",
			"token_endpoint":                        p.Issuer + "/token",
			"device_authorization_endpoint":         p.Issuer + "/device/code",
			"response_types_supported":              []string{"code", "id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"ES256", "RS256"},
			"grant_types_supported":                 []string{"urn:ietf:params:oauth:grant-type:device_code"},
		})
	case "/keys":
		p.jwksFetches.Add(1)
		p.mu.Lock()
		set := jose.JSONWebKeySet{}
		for _, k := range p.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.pub, KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
		}
		p.mu.Unlock()
		writeJSON(w, 200, set)
	case "/device/code":
		_ = r.ParseForm()
		g := &deviceGrant{deviceCode: randHex(16), userCode: strings.ToUpper(randHex(4)), clientID: r.PostForm.Get("client_id"),
			expires: time.Now().Add(5 * time.Minute)}
		p.mu.Lock()
		p.devices[g.deviceCode] = g
		p.mu.Unlock()
		writeJSON(w, 200, map[string]any{
			"device_code": g.deviceCode, "user_code": g.userCode,
			"verification_uri":          p.Issuer + "/device",
			"verification_uri_complete": p.Issuer + "/device?user_code=" + g.userCode,
			"expires_in":                300, "interval": 1,
		})
	case "/device":
		// The person's browser: opening the complete URL approves.
		code := r.URL.Query().Get("user_code")
		p.mu.Lock()
		found := false
		for _, g := range p.devices {
			if g.userCode == code {
				g.approved, found = true, true
			}
		}
		p.mu.Unlock()
		if !found {
			http.Error(w, "unknown code", 404)
			return
		}
		fmt.Fprintln(w, "approved; return to your terminal")
	case "/token":
		_ = r.ParseForm()
		if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:device_code" {
			writeJSON(w, 400, map[string]string{"error": "unsupported_grant_type"})
			return
		}
		p.mu.Lock()
		g := p.devices[r.PostForm.Get("device_code")]
		claims := p.deviceClaims
		p.mu.Unlock()
		switch {
		case g == nil || time.Now().After(g.expires):
			writeJSON(w, 400, map[string]string{"error": "expired_token"})
		case !g.approved:
			writeJSON(w, 400, map[string]string{"error": "authorization_pending"})
		default:
			c := maps.Clone(claims)
			c["aud"] = g.clientID
			writeJSON(w, 200, map[string]any{"access_token": randHex(16), "token_type": "Bearer", "expires_in": 3600,
				"id_token": p.Sign(c)})
		}
	default:
		http.NotFound(w, r)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
