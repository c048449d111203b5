package httpapi_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
)

// openAPIDoc is the part of an OpenAPI 3 document this test reads.
type openAPIDoc struct {
	OpenAPI string                                `json:"openapi"`
	Info    map[string]any                        `json:"info"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
}

var httpMethods = map[string]bool{"get": true, "put": true, "post": true, "delete": true, "options": true,
	"head": true, "patch": true, "trace": true}

// chiPattern turns a chi route pattern into an OpenAPI path: chi's "/*"
// mount artefacts go, and regexp parameters ({id:[0-9]+}) lose the regexp.
func chiPattern(p string) string {
	p = strings.ReplaceAll(p, "/*/", "/")
	p = strings.TrimSuffix(p, "/*")
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '{' {
			b.WriteByte(p[i])
			continue
		}
		// A parameter: keep its name, drop a ":regexp" (which may nest braces).
		depth, j, colon := 1, i+1, -1
		for ; j < len(p) && depth > 0; j++ {
			switch p[j] {
			case '{':
				depth++
			case '}':
				depth--
			case ':':
				if colon < 0 && depth == 1 {
					colon = j
				}
			}
		}
		end := j - 1 // the closing brace
		if colon < 0 {
			colon = end
		}
		b.WriteString("{" + p[i+1:colon] + "}")
		i = end
	}
	return b.String()
}

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.raw(t, "GET", "/api/v4/openapi.json", nil, nil)
	expect(t, "GET openapi.json", r, http.StatusOK)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
	var doc openAPIDoc
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	if !regexp.MustCompile(`^3\.\d+\.\d+$`).MatchString(doc.OpenAPI) {
		t.Fatalf("openapi = %q, want 3.x.y", doc.OpenAPI)
	}
	if doc.Info["title"] == nil || doc.Info["version"] == nil {
		t.Fatalf("info lacks title or version: %v", doc.Info)
	}

	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		if !strings.HasPrefix(path, "/") {
			t.Errorf("path %q does not start with /", path)
		}
		for method, raw := range ops {
			if !httpMethods[method] {
				continue // parameters, summary, ...
			}
			var op map[string]any
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Errorf("%s %s: operation is not an object: %v", method, path, err)
				continue
			}
			if resp, ok := op["responses"].(map[string]any); !ok || len(resp) == 0 {
				t.Errorf("%s %s documents no responses", method, path)
			}
			// Every path parameter is declared.
			for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(path, -1) {
				if !declaresParam(op, m[1]) {
					t.Errorf("%s %s does not declare path parameter %q", method, path, m[1])
				}
			}
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}

	undocumented, unregistered := routeDiff(t, e.api.Router(), documented)
	if len(undocumented) > 0 {
		t.Errorf("routes missing from openapi.json:\n  %s", strings.Join(undocumented, "\n  "))
	}
	if len(unregistered) > 0 {
		t.Errorf("openapi.json documents routes the router does not serve:\n  %s", strings.Join(unregistered, "\n  "))
	}
}

// routeDiff compares the routes of a router with documented "METHOD path"
// entries: it returns the routes not documented and the documented routes
// not registered.
func routeDiff(t *testing.T, routes chi.Routes, documented map[string]bool) (undocumented, unregistered []string) {
	t.Helper()
	registered := map[string]bool{}
	err := chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		registered[method+" "+chiPattern(route)] = true
		return nil
	})
	if err != nil {
		t.Fatalf("chi.Walk: %v", err)
	}
	if len(registered) < 10 {
		t.Fatalf("walked only %d routes: %v", len(registered), registered)
	}
	for k := range registered {
		if !documented[k] {
			undocumented = append(undocumented, k)
		}
	}
	for k := range documented {
		if !registered[k] {
			unregistered = append(unregistered, k)
		}
	}
	sort.Strings(undocumented)
	sort.Strings(unregistered)
	return undocumented, unregistered
}

// TestOpenAPIRouteDiffCatchesDrift proves the check above can fail: a route
// added next to the real ones is reported undocumented, and a documented
// route that is not served is reported too.
func TestOpenAPIRouteDiffCatchesDrift(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	documented := map[string]bool{}
	err := chi.Walk(e.api.Router(), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		documented[method+" "+chiPattern(route)] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	documented["PATCH /api/v4/users/{id}"] = true

	r := chi.NewRouter()
	r.Mount("/", e.api.Router().(http.Handler))
	r.Get("/api/v4/undocumented/{thing_id}", func(http.ResponseWriter, *http.Request) {})
	undocumented, unregistered := routeDiff(t, r, documented)
	if strings.Join(undocumented, ",") != "GET /api/v4/undocumented/{thing_id}" {
		t.Errorf("undocumented = %v, want only the added route", undocumented)
	}
	if strings.Join(unregistered, ",") != "PATCH /api/v4/users/{id}" {
		t.Errorf("unregistered = %v, want only PATCH /api/v4/users/{id}", unregistered)
	}
}

// declaresParam reports whether op lists an "in: path" parameter name.
func declaresParam(op map[string]any, name string) bool {
	ps, _ := op["parameters"].([]any)
	for _, p := range ps {
		m, _ := p.(map[string]any)
		if m["name"] == name && m["in"] == "path" {
			return true
		}
	}
	return false
}

func TestChiPattern(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/api/v4/users/{id}":                  "/api/v4/users/{id}",
		"/api/v4/*/users/{id}":                "/api/v4/users/{id}",
		"/api/v4/keys/{id:[0-9]+}":            "/api/v4/keys/{id}",
		"/api/v4/groups/{id}/*":               "/api/v4/groups/{id}",
		"/api/v4/a/{x:[a-z]{2}}/b/{y:[0-9]+}": "/api/v4/a/{x}/b/{y}",
	} {
		if got := chiPattern(in); got != want {
			t.Errorf("chiPattern(%q) = %q, want %q", in, got, want)
		}
	}
}
