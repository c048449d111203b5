package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
)

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

// The middleware, outermost first: requestID, accessLog, countRequests,
// recoverer, limitBody. None logs the query string or headers (tokens
// travel there).

type requestIDKey struct{}

// requestID gives every request an id: the client's X-Request-Id when it
// is short and plain, else a new random one. It is answered in
// X-Request-Id and named in every log line about the request.
func (a *API) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			var b [8]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// requestIDOf is the request's id ("" outside requestID).
func requestIDOf(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	return id
}

// statusOf wraps w to record the status code, once per request.
func statusOf(w http.ResponseWriter) *statusWriter {
	if sw, ok := w.(*statusWriter); ok {
		return sw
	}
	return &statusWriter{ResponseWriter: w}
}

func (s *statusWriter) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

// methodLabel is the method as a metric label: one of the methods keygate
// serves, or "other" (a client may send any token as a method).
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// codeLabel is the status code as a metric label: the code, or "other"
// outside 100–599 (at most 500 values; keygate's handlers use a dozen).
func codeLabel(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code)
}

// routeOf is the request's route for logs and metrics: the chi pattern it
// matched (never the raw path), or "unmatched".
func routeOf(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		if route := rc.RoutePattern(); route != "" {
			return route
		}
	}
	return "unmatched"
}

// accessLog logs each request at debug: method, route, path, status,
// duration, remote address and request id.
func (a *API) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := statusOf(w)
		defer func() {
			a.log.Debug("http request", "method", r.Method, "route", routeOf(r), "path", r.URL.Path,
				"status", sw.status(), "duration", time.Since(start), "remote", r.RemoteAddr, "client", remoteIP(r), "request_id", requestIDOf(r))
		}()
		next.ServeHTTP(sw, r)
	})
}

// countRequests exports each request in keygate_http_requests_total and
// keygate_http_request_duration_seconds. Every label comes from a closed
// set, whatever the client sends: the method (methodLabel), chi's route
// pattern (routeOf: a pattern of the route table, or "unmatched") and the
// status code keygate answered (codeLabel).
func (a *API) countRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := statusOf(w)
		defer func() {
			route := routeOf(r)
			a.requests.WithLabelValues(methodLabel(r.Method), route, codeLabel(sw.status())).Inc()
			a.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, r)
	})
}

// recoverer turns a panic in a handler into a logged 500.
func (a *API) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := statusOf(w)
		defer func() {
			if rec := recover(); rec != nil {
				a.log.Error("panic in handler", "method", r.Method, "path", r.URL.Path, "panic", rec, "request_id", requestIDOf(r))
				if sw.code == 0 {
					writeJSON(sw, http.StatusInternalServerError, map[string]string{"message": "500 Internal Server Error"})
				}
			}
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
