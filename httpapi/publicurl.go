package httpapi

import (
	"context"
	"errors"
	"net"
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

type publicBaseKey struct{}

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
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), publicBaseKey{}, a.baseFor(r))))
	})
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

func (a *API) fromTrustedProxy(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
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
