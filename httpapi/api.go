package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// Config configures the API.
type Config struct {
	Store *keystore.Store
	Log   *slog.Logger
	// Version is reported by GET /version.
	Version string
	// MaxBodyBytes caps request bodies (default 1 MiB).
	MaxBodyBytes int64
	// Ready reports whether keygate is ready to serve (both listeners up).
	Ready func() bool
	// Registry receives the API's metrics and is served at /metrics.
	Registry *prometheus.Registry
	// FailedAuthPerSecond and FailedAuthBurst limit failed token
	// authentications per client IP (defaults 1/s, burst 20); beyond them a
	// bad token gets 429 with Retry-After. Requests with a valid token are
	// never limited.
	FailedAuthPerSecond float64
	FailedAuthBurst     int
	// Repos creates and removes project repositories on disk.
	Repos keystore.Repos
	// Hostname, SSHPort and GitUser make the ssh_url_to_repo of projects.
	Hostname string
	SSHPort  int
	GitUser  string
	// IndexStatus, when set, reports the auth index's change feed: it is
	// shown by /-/readiness and exported as keygate_index_* metrics.
	IndexStatus func() authindex.FeedStatus
	// IndexMaxLag is how far the index may lag behind the database before
	// /-/readiness answers 503 (default 30 s). An unreachable database
	// alone does not: the index keeps serving SSH authentication.
	IndexMaxLag time.Duration
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Store == nil {
		return errors.New("httpapi: no store")
	}
	if c.MaxBodyBytes < 0 {
		return errors.New("httpapi: negative MaxBodyBytes")
	}
	if c.IndexMaxLag < 0 {
		return errors.New("httpapi: negative IndexMaxLag")
	}
	return nil
}

// API is the REST API handler.
type API struct {
	store   *keystore.Store
	log     *slog.Logger
	version string
	maxBody int64
	ready   func() bool
	reg     *prometheus.Registry
	router  chi.Router

	failed *ipLimiter

	repos    keystore.Repos
	hostname string
	sshPort  int
	gitUser  string

	indexStatus func() authindex.FeedStatus
	indexMaxLag time.Duration

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// New builds the API.
func New(cfg Config) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &API{
		store:   cfg.Store,
		log:     cfg.Log,
		version: cfg.Version,
		maxBody: cfg.MaxBodyBytes,
		ready:   cfg.Ready,
		reg:     cfg.Registry,

		repos:    cfg.Repos,
		hostname: cfg.Hostname,
		sshPort:  cfg.SSHPort,
		gitUser:  cfg.GitUser,

		indexStatus: cfg.IndexStatus,
		indexMaxLag: cfg.IndexMaxLag,
	}
	if a.indexMaxLag == 0 {
		a.indexMaxLag = 30 * time.Second
	}
	if a.gitUser == "" {
		a.gitUser = "git"
	}
	if a.hostname == "" {
		a.hostname = "localhost"
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.maxBody == 0 {
		a.maxBody = 1 << 20
	}
	if a.ready == nil {
		a.ready = func() bool { return true }
	}
	if a.reg == nil {
		a.reg = prometheus.NewRegistry()
	}
	rps, burst := cfg.FailedAuthPerSecond, cfg.FailedAuthBurst
	if rps <= 0 {
		rps = 1
	}
	if burst <= 0 {
		burst = 20
	}
	a.failed = newIPLimiter(rate.Limit(rps), burst)
	a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_http_requests_total", Help: "REST requests by method, route and status code.",
	}, []string{"method", "route", "code"})
	a.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "keygate_http_request_duration_seconds", Help: "REST request latency by route.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route"})
	if err := a.reg.Register(a.requests); err != nil {
		return nil, err
	}
	if err := a.reg.Register(a.duration); err != nil {
		return nil, err
	}
	if err := a.registerIndexMetrics(); err != nil {
		return nil, err
	}
	a.router = a.routes()
	return a, nil
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.router.ServeHTTP(w, r) }

// Router exposes the route table (for documentation checks).
func (a *API) Router() chi.Routes { return a.router }

func (a *API) metricsHandler() http.Handler {
	return promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{})
}

// statusWriter records the status code.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// observe logs and counts each request. It never logs the query string or
// headers (tokens travel there).
func (a *API) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if rec := recover(); rec != nil {
				a.log.Error("panic in handler", "method", r.Method, "path", r.URL.Path, "panic", rec)
				if sw.code == 0 {
					writeJSON(sw, http.StatusInternalServerError, map[string]string{"message": "500 Internal Server Error"})
				}
			}
			route := chi.RouteContext(r.Context()).RoutePattern()
			if route == "" {
				route = "unmatched"
			}
			code := sw.code
			if code == 0 {
				code = http.StatusOK
			}
			a.requests.WithLabelValues(r.Method, route, strconv.Itoa(code)).Inc()
			a.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
			a.log.Debug("http request", "method", r.Method, "route", route, "path", r.URL.Path,
				"status", code, "duration", time.Since(start), "remote", r.RemoteAddr)
		}()
		next.ServeHTTP(sw, r)
	})
}

// limitBody caps request bodies.
func (a *API) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > a.maxBody {
			a.writeError(w, r, &http.MaxBytesError{Limit: a.maxBody})
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, a.maxBody)
		}
		next.ServeHTTP(w, r)
	})
}

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
				if !a.failed.allow(remoteIP(r)) {
					w.Header().Set("Retry-After", "1")
					a.fail(v3, w, r, errStatus(http.StatusTooManyRequests, "429 Too Many Requests - too many failed authentications from your address"))
					return
				}
				a.fail(v3, w, r, errUnauthorized)
				return
			}
			if !u.Active() {
				a.fail(v3, w, r, errStatus(http.StatusForbidden, "403 Forbidden - Your account has been blocked."))
				return
			}
			pr := &principal{user: u, token: tk}
			if ident := sudoIdentifier(r); ident != "" {
				target, err := a.sudo(r, u, tk, ident)
				if err != nil {
					a.fail(v3, w, r, err)
					return
				}
				pr = &principal{user: target, token: tk, sudoBy: u}
			}
			if r.Method != http.MethodGet && r.Method != http.MethodHead && !tk.HasScope(keystore.ScopeAPI) {
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

// sudoIdentifier is the user a request asks to act as: the Sudo header or
// the sudo query parameter (GitLab reads both).
func sudoIdentifier(r *http.Request) string {
	if v := strings.TrimSpace(r.Header.Get("Sudo")); v != "" {
		return v
	}
	return strings.TrimSpace(r.URL.Query().Get("sudo"))
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

func remoteIP(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}

// pathInt parses a numeric URL parameter; a malformed one is "not found".
func pathInt(r *http.Request, name, what string) (int64, error) {
	n, err := strconv.ParseInt(chi.URLParam(r, name), 10, 64)
	if err != nil || n < 1 {
		return 0, notFound(what)
	}
	return n, nil
}

// pathParam returns a URL parameter, unescaped (chi routes on the raw path).
func pathParam(r *http.Request, name string) string {
	v := chi.URLParam(r, name)
	if u, err := urlUnescape(v); err == nil {
		return u
	}
	return v
}
