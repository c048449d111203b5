package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/keygate/keygate/keystore"
)

// principal is who a request acts as.
type principal struct {
	user  *keystore.User
	token *keystore.Token
	// sudoBy is the administrator whose token acts as user (Sudo), or nil.
	sudoBy *keystore.User
}

type ctxKey int

const principalKey ctxKey = 0

func withPrincipal(ctx context.Context, p *principal) context.Context {
	return context.WithValue(ctx, principalKey, p)
}

// me returns the authenticated user, or nil.
func me(r *http.Request) *keystore.User {
	if p, _ := r.Context().Value(principalKey).(*principal); p != nil {
		return p.user
	}
	return nil
}

func currentToken(r *http.Request) *keystore.Token {
	if p, _ := r.Context().Value(principalKey).(*principal); p != nil {
		return p.token
	}
	return nil
}

// tokenFrom extracts a token from the request's headers or query string.
func tokenFrom(r *http.Request) string {
	if t := r.Header.Get("PRIVATE-TOKEN"); t != "" {
		return t
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, ok := strings.Cut(h, " ")
		if ok && (strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "token")) {
			return strings.TrimSpace(rest)
		}
	}
	return r.URL.Query().Get("private_token")
}

// authenticate resolves the token, if any. A bad token is refused even on
// public routes, as GitLab does; no token leaves the request anonymous.
func (a *API) authenticate(v3 bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			secret := tokenFrom(r)
			if secret == "" {
				next.ServeHTTP(w, r)
				return
			}
			tk, u, err := a.store.Authenticate(r.Context(), secret)
			if err != nil {
				if !errors.Is(err, keystore.ErrNotFound) {
					a.fail(v3, w, r, err)
					return
				}
				if !v3 && looksLikeJWT(secret) && takesIDToken(r) {
					// Maybe an OpenID Connect ID token: the two issuing
					// routes verify it. Anywhere else it is a bad token.
					next.ServeHTTP(w, r.WithContext(withIDToken(r.Context(), secret)))
					return
				}
				if !a.failed.allow(remoteIP(r)) {
					w.Header().Set("Retry-After", "1")
					a.fail(v3, w, r, errStatus(http.StatusTooManyRequests, "429 Too Many Requests - too many failed authentications from your address"))
					return
				}
				if v3 {
					// GitHub: a token that is not valid is "Bad credentials";
					// no token at all is "Requires authentication".
					writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "Bad credentials", "documentation_url": ghDocs})
					return
				}
				a.fail(v3, w, r, errUnauthorized)
				return
			}
			if !u.Active() {
				a.fail(v3, w, r, errStatus(http.StatusForbidden, "403 Forbidden - Your account has been blocked."))
				return
			}
			if !tk.HasScope(keystore.ScopeAPI) && !tk.HasScope(keystore.ScopeReadAPI) {
				// A token whose only scope is sudo reads and writes nothing
				// (GitLab needs api or read_api beside it).
				if v3 {
					writeJSON(w, http.StatusForbidden, map[string]any{
						"message":           "Resource not accessible by personal access token: it has neither the api nor the read_api scope",
						"documentation_url": ghDocs,
					})
					return
				}
				writeJSON(w, http.StatusForbidden, map[string]string{
					"error":             "insufficient_scope",
					"error_description": "The request requires higher privileges than provided by the access token.",
					"scope":             "api read_api",
				})
				return
			}
			ident, err := sudoIdentifier(r)
			if err != nil {
				a.fail(v3, w, r, err)
				return
			}
			pr := &principal{user: u, token: tk}
			if ident != "" {
				target, err := a.sudo(r, u, tk, ident)
				if err != nil {
					a.fail(v3, w, r, err)
					return
				}
				pr = &principal{user: target, token: tk, sudoBy: u}
			}
			if v3 {
				w.Header().Set("X-OAuth-Scopes", ghScopes(tk))
			}
			if r.Method != http.MethodGet && r.Method != http.MethodHead && !tk.HasScope(keystore.ScopeAPI) {
				if v3 {
					w.Header().Set("X-Accepted-OAuth-Scopes", "admin:public_key")
					writeJSON(w, http.StatusForbidden, map[string]any{
						"message":           "Resource not accessible by personal access token: it has the read_api scope; writes need api",
						"documentation_url": ghDocs,
					})
					return
				}
				writeJSON(w, http.StatusForbidden, map[string]string{
					"error":             "insufficient_scope",
					"error_description": "The request requires higher privileges than provided by the access token.",
					"scope":             "api",
				})
				return
			}
			if err := a.store.TouchToken(r.Context(), tk); errors.Is(err, keystore.ErrUnavailable) {
				// The storage fault shows in every write's 503 and in
				// readiness; one warning per request would bury the log.
				a.log.Debug("recording token use failed", "token_id", tk.ID, "err", err)
			} else if err != nil {
				a.log.Warn("recording token use failed", "token_id", tk.ID, "err", err)
			}
			next.ServeHTTP(w, r.WithContext(withPrincipal(r.Context(), pr)))
		})
	}
}

func (a *API) fail(v3 bool, w http.ResponseWriter, r *http.Request, err error) {
	if v3 {
		a.writeErrorV3(w, r, err)
		return
	}
	a.writeError(w, r, err)
}

// requireUser refuses anonymous requests.
func (a *API) requireUser(v3 bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if me(r) == nil {
				if !a.failed.allow(remoteIP(r)) {
					w.Header().Set("Retry-After", "1")
					a.fail(v3, w, r, errStatus(http.StatusTooManyRequests, "429 Too Many Requests - too many failed authentications from your address"))
					return
				}
				a.fail(v3, w, r, errUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// requireAdmin refuses non-admins.
func (a *API) requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := me(r)
		switch {
		case u == nil:
			a.writeError(w, r, errUnauthorized)
		case !u.IsAdmin:
			a.writeError(w, r, errForbidden)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// actor describes the request for the audit log.
func actor(r *http.Request) keystore.Actor {
	ac := keystore.Actor{RemoteIP: remoteIP(r)}
	if p, _ := r.Context().Value(principalKey).(*principal); p != nil {
		ac.UserID = p.user.ID
		if p.sudoBy != nil {
			ac.SudoBy = p.sudoBy.ID
		}
	}
	return ac
}

// sudoIdentifier is the user a request asks to act as: the Sudo header, or
// the sudo parameter in the query string or a form or JSON body (GitLab
// reads them all; a body's sudo must never be ignored and the request
// performed as the token's own user). Different values in two places are
// refused. The body stays readable for the handler.
func sudoIdentifier(r *http.Request) (string, error) {
	var found []string
	if v := strings.TrimSpace(r.Header.Get("Sudo")); v != "" {
		found = append(found, v)
	}
	if v := strings.TrimSpace(r.URL.Query().Get("sudo")); v != "" {
		found = append(found, v)
	}
	v, err := bodySudo(r)
	if err != nil {
		return "", err
	}
	if v != "" {
		found = append(found, v)
	}
	for _, f := range found[min(1, len(found)):] {
		if f != found[0] {
			return "", badRequest("sudo", "is given more than once with different values (Sudo header, query string, body)")
		}
	}
	if len(found) == 0 {
		return "", nil
	}
	return found[0], nil
}

// bodySudo reads the sudo parameter of a form or JSON body, and puts the
// body back for the handler. A body that does not parse has none (the
// handler reports it).
func bodySudo(r *http.Request) (string, error) {
	if r.Body == nil || r.Body == http.NoBody || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return "", nil
	}
	body, err := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return "", err // too large: the body limit's 413
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return "", nil
	}
	peek := r.Clone(r.Context())
	peek.URL.RawQuery = ""
	peek.Body = io.NopCloser(bytes.NewReader(body))
	p, err := parseParams(peek)
	if err != nil {
		return "", nil
	}
	v, _ := p.str("sudo")
	return strings.TrimSpace(v), nil
}

// sudo resolves a Sudo request exactly as GitLab does: only an
// administrator's token with the sudo scope may act as another user (by id
// or username); anything else is refused, never performed as the token's
// own user.
func (a *API) sudo(r *http.Request, u *keystore.User, tk *keystore.Token, ident string) (*keystore.User, error) {
	if !u.IsAdmin {
		return nil, errStatus(http.StatusForbidden, "403 Forbidden - Must be admin to use sudo")
	}
	if !tk.HasScope(keystore.ScopeSudo) {
		return nil, &httpError{Code: http.StatusForbidden, Body: map[string]string{
			"error":             "insufficient_scope",
			"error_description": "The request requires higher privileges than provided by the access token.",
			"scope":             "sudo",
		}}
	}
	var target *keystore.User
	var err error
	if n, perr := strconv.ParseInt(ident, 10, 64); perr == nil {
		target, err = a.store.User(r.Context(), n)
	} else if len(ident) <= 255 {
		target, err = a.store.UserByUsername(r.Context(), ident)
	} else {
		err = keystore.ErrNotFound
	}
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, errStatus(http.StatusNotFound, "404 User '"+ident+"' Not Found")
	}
	if err != nil {
		return nil, err
	}
	if !target.Active() {
		return nil, errStatus(http.StatusForbidden, "403 Forbidden - The user you are trying to impersonate is blocked")
	}
	a.log.Info("sudo", "admin_id", u.ID, "user_id", target.ID, "method", r.Method, "path", r.URL.Path)
	return target, nil
}
