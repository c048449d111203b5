package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// params are a request's parameters from the query string, a form body or a
// JSON body (GitLab clients use all three); body values win.
type params struct {
	v url.Values
	// null holds the names a JSON body set to null (absent from v): a
	// parameter that can be cleared reads it (isNull).
	null map[string]bool
}

// readParams parses r's parameters and checks that the required ones are
// there (GitLab's 400 "is missing"). It reads the body once.
func readParams(r *http.Request, required ...string) (params, error) {
	p, err := parseParams(r)
	if err != nil {
		return p, err
	}
	return p, p.require(required...)
}

func parseParams(r *http.Request) (params, error) {
	p := params{v: url.Values{}, null: map[string]bool{}}
	for k, vs := range r.URL.Query() {
		p.v[strings.TrimSuffix(k, "[]")] = vs
	}
	if r.Body == nil || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return p, nil
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return p, err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return p, nil
	}
	ct := r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	looksJSON := bytes.HasPrefix(bytes.TrimSpace(body), []byte("{"))
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json") || (ct == "" && looksJSON),
		// GitHub reads every body as JSON whatever its content type, and
		// its own examples (`curl -d '{"key":…}'`) send JSON as a form.
		looksJSON && strings.HasPrefix(r.URL.Path, "/api/v3/"):
		return p, p.fromJSON(body)
	case mt == "application/x-www-form-urlencoded" || ct == "":
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return p, errStatus(http.StatusBadRequest, "400 Bad request - the form body is malformed")
		}
		for k, vs := range vals {
			p.v[strings.TrimSuffix(k, "[]")] = vs
		}
		return p, nil
	case mt == "multipart/form-data":
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			return p, errStatus(http.StatusBadRequest, "400 Bad request - the multipart body is malformed")
		}
		for k, vs := range r.MultipartForm.Value {
			p.v[strings.TrimSuffix(k, "[]")] = vs
		}
		return p, nil
	}
	return p, errStatus(http.StatusUnsupportedMediaType,
		"415 Unsupported Media Type - send application/json or application/x-www-form-urlencoded")
}

func (p params) fromJSON(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return errStatus(http.StatusBadRequest, "400 Bad request - the body is not a valid JSON object")
	}
	if dec.More() {
		return errStatus(http.StatusBadRequest, "400 Bad request - the body holds more than one JSON value")
	}
	for k, v := range m {
		k = strings.TrimSuffix(k, "[]")
		switch x := v.(type) {
		case nil:
			delete(p.v, k)
			p.null[k] = true
		case string:
			p.v[k] = []string{x}
		case json.Number:
			p.v[k] = []string{x.String()}
		case bool:
			p.v[k] = []string{strconv.FormatBool(x)}
		case []any:
			var vs []string
			for _, e := range x {
				switch y := e.(type) {
				case string:
					vs = append(vs, y)
				case json.Number:
					vs = append(vs, y.String())
				default:
					return badRequest(k, "must be a list of strings")
				}
			}
			p.v[k] = vs
		case map[string]any:
			// Only the parameters that are objects take one: elsewhere an
			// object (an operator like {"$ne":""}) is refused, not ignored.
			if !objectParams[k] {
				return badRequest(k, "must be a string, number or boolean")
			}
			// An object is its fields as k[name], as a form sends them
			// (claims[ref]=…); see object.
			for name, e := range x {
				switch y := e.(type) {
				case string:
					p.v[k+"["+name+"]"] = []string{y}
				case json.Number:
					p.v[k+"["+name+"]"] = []string{y.String()}
				case bool:
					p.v[k+"["+name+"]"] = []string{strconv.FormatBool(y)}
				default:
					return badRequest(k, "must be an object of strings, numbers or booleans")
				}
			}
		default:
			return badRequest(k, "must be a string, number or boolean")
		}
	}
	return nil
}

// isNull reports whether a JSON body gave name as null.
func (p params) isNull(name string) bool { return p.null[name] }

// str returns a parameter and whether it was given.
func (p params) str(name string) (string, bool) {
	vs, ok := p.v[name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

func (p params) strPtr(name string) *string {
	v, ok := p.str(name)
	if !ok {
		return nil
	}
	return &v
}

// objectParams are the parameters whose value is an object.
var objectParams = map[string]bool{"claims": true, "required_claims": true}

// object returns the fields name[key]=value of an object parameter (a
// JSON object, or form fields name[key]); nil when there are none.
func (p params) object(name string) map[string]string {
	var out map[string]string
	for k, vs := range p.v {
		key, ok := strings.CutPrefix(k, name+"[")
		if !ok || !strings.HasSuffix(key, "]") || len(vs) == 0 {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[strings.TrimSuffix(key, "]")] = vs[0]
	}
	return out
}

// list returns a list parameter; a single value may be comma-separated.
func (p params) list(name string) []string {
	vs := p.v[name]
	if len(vs) == 1 && strings.Contains(vs[0], ",") {
		return strings.Split(vs[0], ",")
	}
	return vs
}

func (p params) boolPtr(name string) (*bool, error) {
	v, ok := p.str(name)
	if !ok {
		return nil, nil
	}
	b, ok := gitlabBool(v)
	if !ok {
		return nil, badRequest(name, "is invalid: must be a boolean (true, 1, t, yes or false, 0, f, no)")
	}
	return &b, nil
}

// gitlabBool parses a boolean as GitLab's API (Grape) does: true, True, 1,
// t, yes and false, False, 0, f, no, in any letter case.
func gitlabBool(v string) (value, ok bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "1", "t", "yes":
		return true, true
	case "false", "0", "f", "no":
		return false, true
	}
	return false, false
}

// unsupported answers 400 for the first of names that was given: a
// documented GitLab filter keygate does not implement must never be
// silently ignored (a script would act on more than it asked for).
func (p params) unsupported(names ...string) error {
	for _, n := range names {
		if _, ok := p.v[n]; ok {
			return badRequest(n, "is not supported by keygate")
		}
	}
	return nil
}

// listing checks a GitLab list request: the order (see defaultOrder) and
// the filters keygate does not implement (see unsupported).
func (p params) listing(orderBy []string, unsupported ...string) error {
	if err := p.unsupported(unsupported...); err != nil {
		return err
	}
	return p.defaultOrder(orderBy...)
}

// defaultOrder accepts order_by and sort only when they name the order
// keygate lists in (orderBy values, ascending); anything else is 400
// rather than a silently different order.
func (p params) defaultOrder(orderBy ...string) error {
	if v, ok := p.str("order_by"); ok && !slices.Contains(orderBy, v) {
		return badRequest("order_by", "does not have a supported value; keygate lists by "+strings.Join(orderBy, " or "))
	}
	if v, ok := p.str("sort"); ok && v != "asc" {
		return badRequest("sort", "does not have a supported value; keygate lists in ascending order (asc)")
	}
	return nil
}

func (p params) int64Ptr(name string) (*int64, error) {
	v, ok := p.str(name)
	if !ok || v == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return nil, badRequest(name, "must be a positive integer")
	}
	return &n, nil
}

func (p params) intVal(name string) (int, bool, error) {
	v, ok := p.str(name)
	if !ok {
		return 0, false, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, true, badRequest(name, "must be an integer")
	}
	return n, true, nil
}

// timePtr parses a date ("2026-12-31", midnight UTC) or an RFC 3339 time.
func (p params) timePtr(name string) (*time.Time, error) {
	v, ok := p.str(name)
	if !ok || v == "" {
		return nil, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			t = t.UTC()
			return &t, nil
		}
	}
	return nil, badRequest(name, "is invalid; use a date (2026-12-31) or an RFC 3339 time (2026-12-31T12:00:00Z)")
}

// require reports missing parameters in GitLab's shape.
func (p params) require(names ...string) error {
	var missing []string
	for _, n := range names {
		if v, ok := p.str(n); !ok || strings.TrimSpace(v) == "" {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	fields := map[string][]string{}
	for _, m := range missing {
		fields[m] = []string{"is missing"}
	}
	return &httpError{Code: http.StatusBadRequest, Body: fields}
}

// listParams reads a list request's paging and parameters.
func listParams(r *http.Request, defPer int) (paging, params, error) {
	pg, err := parsePaging(r, defPer)
	if err != nil {
		return pg, params{}, err
	}
	p, err := readParams(r)
	return pg, p, err
}

// flag is a GitLab boolean parameter, false when absent.
func (p params) flag(name string) (bool, error) {
	v, err := p.boolPtr(name)
	return v != nil && *v, err
}
