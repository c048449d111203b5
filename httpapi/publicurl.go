package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// Every URL keygate writes (pagination Link headers, web_url, the v3 url
// fields) starts with the public base URL, decided once per request by
// publicBase:
//
//  1. --external-url, when set: always, whatever the request says.
//  2. Else, when the peer is a trusted proxy (--trusted-proxies, default
//     loopback): the first Forwarded element's proto= and host=, else
//     X-Forwarded-Proto and X-Forwarded-Host.
//  3. Else the request itself: https when it arrived over TLS, and Host.
//
// Forwarding headers from anyone else are ignored, so a client cannot make
// keygate hand another client a link to a host it controls.
//
// The client's address (for the failed-token limiter, audit events and the
// access log) is decided the same way by clientAddr: behind trusted
// proxies, the nearest address in X-Forwarded-For (or Forwarded for=) that
// is not itself a trusted proxy; else the peer. Entries a client wrote
// before the first proxy are never believed, so it cannot pick the address
// it is limited or audited as.

type publicBaseKey struct{}

type clientAddrKey struct{}

// ParseExternalURL checks an --external-url: absolute http or https, a
// host, no query or fragment. A path is kept as a prefix (GitLab's
// relative URL root); a trailing slash is dropped.
func ParseExternalURL(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", errors.New("must start with https:// or http://")
	}
	if u.Host == "" || !validHost(u.Host) {
		return "", errors.New("has no valid host")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", errors.New("must not carry a query, fragment or user info")
	}
	return u.Scheme + "://" + u.Host + strings.TrimRight(u.EscapedPath(), "/"), nil
}

// DefaultTrustedProxies is loopback: a proxy on the same host.
var DefaultTrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

func (a *API) publicBase(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), publicBaseKey{}, a.baseFor(r))
		ctx = context.WithValue(ctx, clientAddrKey{}, a.clientAddr(r))
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// clientAddr is the address of the client behind any trusted proxies (see
// the top of this file).
func (a *API) clientAddr(r *http.Request) netip.Addr {
	peer := peerAddr(r)
	if !a.trusted(peer) {
		return peer
	}
	hops := forwardedFor(r.Header.Get("Forwarded"))
	if hops == nil {
		for _, h := range r.Header.Values("X-Forwarded-For") {
			for _, f := range strings.Split(h, ",") {
				hops = append(hops, parseHop(f))
			}
		}
	}
	// From the nearest hop outwards: each trusted proxy vouches for the
	// address before it; the first that is not trusted is the client.
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		if !hops[i].IsValid() {
			break // unparsable (or "unknown"): believe nothing beyond it
		}
		client = hops[i]
		if !a.trusted(client) {
			break
		}
	}
	return client
}

// forwardedFor lists the for= addresses of an RFC 7239 Forwarded header,
// nearest the client first (an element without one, or with an obfuscated
// or unknown one, is an invalid address); nil when no element has for=
// (the header is absent, or carries only proto= and host=).
func forwardedFor(v string) []netip.Addr {
	var out []netip.Addr
	seen := false
	for _, elem := range strings.Split(v, ",") {
		addr := netip.Addr{}
		for _, pair := range strings.Split(elem, ";") {
			if k, val, ok := strings.Cut(strings.TrimSpace(pair), "="); ok && strings.EqualFold(strings.TrimSpace(k), "for") {
				addr, seen = parseHop(strings.Trim(strings.TrimSpace(val), `"`)), true
			}
		}
		out = append(out, addr)
	}
	if !seen {
		return nil
	}
	return out
}

// parseHop reads one forwarded address: IP, IP:port, [v6] or [v6]:port.
func parseHop(s string) netip.Addr {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	if ip, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return ip.Unmap()
	}
	return netip.Addr{}
}

func peerAddr(r *http.Request) netip.Addr {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func (a *API) baseFor(r *http.Request) string {
	if a.externalURL != "" {
		return a.externalURL
	}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if a.fromTrustedProxy(r) {
		if p, h, ok := parseForwarded(r.Header.Get("Forwarded")); ok {
			scheme, host = orDefault(p, scheme), orDefault(h, host)
		} else {
			if p := firstToken(r.Header.Get("X-Forwarded-Proto")); p == "http" || p == "https" {
				scheme = p
			}
			if h := firstToken(r.Header.Get("X-Forwarded-Host")); validHost(h) {
				host = h
			}
		}
	}
	if !validHost(host) {
		host = "localhost"
	}
	return scheme + "://" + host
}

func (a *API) fromTrustedProxy(r *http.Request) bool { return a.trusted(peerAddr(r)) }

func (a *API) trusted(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	for _, p := range a.trustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// parseForwarded reads proto= and host= from the first element of an RFC
// 7239 Forwarded header: the one written by the proxy nearest the client,
// which saw the scheme and host the client used. ok is false when the
// header is absent or names neither.
func parseForwarded(v string) (proto, host string, ok bool) {
	if v == "" {
		return "", "", false
	}
	first, _, _ := strings.Cut(v, ",")
	for _, pair := range strings.Split(first, ";") {
		k, val, found := strings.Cut(strings.TrimSpace(pair), "=")
		if !found {
			continue
		}
		val = strings.Trim(strings.TrimSpace(val), `"`)
		switch strings.ToLower(k) {
		case "proto":
			if val = strings.ToLower(val); val == "http" || val == "https" {
				proto, ok = val, true
			}
		case "host":
			if validHost(val) {
				host, ok = val, true
			}
		}
	}
	return proto, host, ok
}

func firstToken(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.ToLower(strings.TrimSpace(first))
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// validHost accepts host, host:port, [v6] and [v6]:port made of the
// characters a DNS name or address has: nothing that could end the URL's
// authority or inject into a header.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == ':' || c == '[' || c == ']' || c == '_') {
			return false
		}
	}
	return true
}

// baseURL is the public scheme://host[/prefix] of the request.
func baseURL(r *http.Request) string {
	if b, ok := r.Context().Value(publicBaseKey{}).(string); ok {
		return b
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
