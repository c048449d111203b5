package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
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
	// SeparateMetrics: /metrics is served by OpsHandler on its own
	// listener (--metrics-addr), not by the REST listener.
	SeparateMetrics bool
	// ExternalURL, when set, is the public base URL of every link keygate
	// writes (see ParseExternalURL); else it comes from trusted proxies'
	// forwarding headers or the request.
	ExternalURL string
	// TrustedProxies may set X-Forwarded-Proto, X-Forwarded-Host and
	// Forwarded (nil: DefaultTrustedProxies, loopback).
	TrustedProxies []netip.Prefix
	// OIDCClient fetches OpenID Connect discovery documents and keys (nil:
	// a client with a 10 s timeout).
	OIDCClient *http.Client
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

	separateMetrics bool
	indexStatus     func() authindex.FeedStatus
	indexMaxLag     time.Duration

	externalURL    string
	trustedProxies []netip.Prefix

	oidc *oidcProviders

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	krls krlCache // the last KRL built per group (fleet.go)
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

		indexStatus:     cfg.IndexStatus,
		separateMetrics: cfg.SeparateMetrics,
		indexMaxLag:     cfg.IndexMaxLag,

		trustedProxies: cfg.TrustedProxies,
		oidc:           newOIDCProviders(cfg.OIDCClient),
	}
	ext, err := ParseExternalURL(cfg.ExternalURL)
	if err != nil {
		return nil, fmt.Errorf("httpapi: external URL %q: %w", cfg.ExternalURL, err)
	}
	a.externalURL = ext
	if a.trustedProxies == nil {
		a.trustedProxies = DefaultTrustedProxies
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

// OpsHandler serves the unauthenticated operations endpoints (/metrics,
// /-/health, /-/readiness) for a listener of their own.
func (a *API) OpsHandler() http.Handler {
	r := chi.NewRouter()
	r.Use(a.requestID, a.recoverer)
	r.Get("/-/health", a.health)
	r.Get("/-/readiness", a.readiness)
	r.Method(http.MethodGet, "/metrics", a.metricsHandler())
	return r
}

func (a *API) metricsHandler() http.Handler {
	return promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{})
}
