package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/keygate/keygate/keystore"
)

// httpError is an error with a fixed client-facing status and body; Err, if
// set, goes to the log only.
type httpError struct {
	Code int
	Body any // GitLab "message" value
	Err  error
}

func (e *httpError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("http %d: %v", e.Code, e.Err)
	}
	return fmt.Sprintf("http %d: %v", e.Code, e.Body)
}

func (e *httpError) Unwrap() error { return e.Err }

func errStatus(code int, msg string) *httpError { return &httpError{Code: code, Body: msg} }

var (
	errUnauthorized = errStatus(http.StatusUnauthorized, "401 Unauthorized")
	errForbidden    = errStatus(http.StatusForbidden, "403 Forbidden")
	errNotFound     = errStatus(http.StatusNotFound, "404 Not Found")
	errGroupScope   = errStatus(http.StatusForbidden, "403 Forbidden - Group")
)

func notFound(what string) *httpError {
	return errStatus(http.StatusNotFound, "404 "+what+" Not Found")
}

func badRequest(field, reason string) *httpError {
	return &httpError{Code: http.StatusBadRequest, Body: map[string][]string{field: {reason}}}
}

// timeFormat is GitLab's: RFC 3339, UTC, milliseconds.
const timeFormat = "2006-01-02T15:04:05.000Z"

func fmtTime(t time.Time) string { return t.UTC().Format(timeFormat) }

func fmtTimePtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := fmtTime(*t)
	return &s
}

func fmtDatePtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := t.UTC().Format("2006-01-02")
	return &s
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// classify turns any error into an httpError with GitLab's body shapes.
func classify(err error) *httpError {
	var he *httpError
	var ve *keystore.ValidationError
	var nf *keystore.NotFoundError
	var ce *keystore.ConflictError
	var fe *keystore.ForbiddenError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		return he
	case errors.As(err, &mbe):
		return errStatus(http.StatusRequestEntityTooLarge, fmt.Sprintf("413 Request Entity Too Large - the body is larger than %d bytes", mbe.Limit))
	case errors.As(err, &ve):
		return &httpError{Code: http.StatusBadRequest, Body: gitlabFields(ve.Fields)}
	case errors.Is(err, keystore.ErrNotTopLevel):
		return errGroupScope
	case errors.As(err, &nf):
		return notFound(nf.What)
	case errors.As(err, &ce):
		return &httpError{Code: http.StatusConflict, Body: ce.Msg, Err: err}
	case errors.As(err, &fe):
		return &httpError{Code: http.StatusForbidden, Body: "403 Forbidden - " + fe.Msg, Err: err}
	case errors.Is(err, keystore.ErrReadOnly):
		// Not "try again later": it stays so until an operator fixes the
		// file (the log and /-/readiness say so; the path stays there).
		return &httpError{Code: http.StatusServiceUnavailable,
			Body: "503 Service Unavailable - the keystore cannot accept writes: its database file is read-only; an administrator must fix its owner or mode (keygate's log says how)", Err: err}
	case errors.Is(err, keystore.ErrUnavailable):
		return &httpError{Code: http.StatusServiceUnavailable,
			Body: "503 Service Unavailable - the keystore cannot accept writes right now; try again later", Err: err}
	}
	return &httpError{Code: http.StatusInternalServerError, Body: "500 Internal Server Error", Err: err}
}

// gitlabFields is a validation error's fields as GitLab shows them. A key
// that is already registered is reported on fingerprint_sha256 (what
// keygate always said, and newer GitLab says) and also on fingerprint and
// key, as GitLab's keys API document shows it: a client reads whichever
// it knows.
func gitlabFields(fields map[string][]string) map[string][]string {
	const taken = "has already been taken"
	if !slices.Contains(fields["fingerprint_sha256"], taken) {
		return fields
	}
	out := maps.Clone(fields)
	for _, f := range []string{"fingerprint", "key"} {
		if !slices.Contains(out[f], taken) {
			out[f] = append(slices.Clone(out[f]), taken)
		}
	}
	return out
}

// writeError writes err in GitLab's shape and logs what the client does not see.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	he := classify(err)
	if he.Code >= 500 {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", he.Code, "err", he.Err, "request_id", requestIDOf(r))
	} else if he.Err != nil {
		a.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", he.Code, "err", he.Err, "request_id", requestIDOf(r))
	}
	if he.Code == http.StatusServiceUnavailable && !errors.Is(he.Err, keystore.ErrReadOnly) {
		w.Header().Set("Retry-After", "5")
		if errors.Is(he.Err, keystore.ErrUnavailable) && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			he.Body = "503 Service Unavailable - the keystore cannot be read right now; try again later"
		}
	}
	if m, ok := he.Body.(map[string]string); ok { // already a full body (e.g. scope errors)
		writeJSON(w, he.Code, m)
		return
	}
	writeJSON(w, he.Code, map[string]any{"message": he.Body})
}

// paging is a parsed page request.
type paging struct {
	Page, PerPage int
	defPer        int
}

func (p paging) store() keystore.Page { return keystore.Page{Page: p.Page, PerPage: p.PerPage} }

// maxPage bounds page numbers so offsets never overflow.
const maxPage = 1_000_000_000

func parsePaging(r *http.Request, defPer int) (paging, error) {
	p := paging{Page: 1, PerPage: defPer, defPer: defPer}
	q := r.URL.Query()
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPage {
			return p, badRequest("page", "does not have a valid value; must be an integer from 1 to 1000000000")
		}
		p.Page = n
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return p, badRequest("per_page", "does not have a valid value; must be an integer from 1 to 100")
		}
		p.PerPage = min(n, 100)
	}
	return p, nil
}

// setPageHeaders writes GitLab's pagination headers and a Link header.
func setPageHeaders(w http.ResponseWriter, r *http.Request, p paging, total int) {
	totalPages := int(math.Ceil(float64(total) / float64(p.PerPage)))
	if totalPages == 0 {
		totalPages = 1
	}
	h := w.Header()
	h.Set("X-Page", strconv.Itoa(p.Page))
	h.Set("X-Per-Page", strconv.Itoa(p.PerPage))
	h.Set("X-Total", strconv.Itoa(total))
	h.Set("X-Total-Pages", strconv.Itoa(totalPages))
	next, prev := "", ""
	if p.Page < totalPages {
		next = strconv.Itoa(p.Page + 1)
	}
	if p.Page > 1 {
		prev = strconv.Itoa(min(p.Page-1, totalPages))
	}
	h.Set("X-Next-Page", next)
	h.Set("X-Prev-Page", prev)
	link := func(page int, rel string) string {
		q := r.URL.Query()
		q.Del("private_token")
		q.Set("page", strconv.Itoa(page))
		q.Set("per_page", strconv.Itoa(p.PerPage))
		u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
		return "<" + baseURL(r) + u.String() + ">; rel=\"" + rel + "\""
	}
	// The Link targets are the pages the X-*-Page headers name.
	var links []string
	if prev != "" {
		n, _ := strconv.Atoi(prev)
		links = append(links, link(n, "prev"))
	}
	if next != "" {
		links = append(links, link(p.Page+1, "next"))
	}
	links = append(links, link(1, "first"), link(totalPages, "last"))
	for i, l := range links {
		if i == 0 {
			h.Set("Link", l)
		} else {
			h.Set("Link", h.Get("Link")+", "+l)
		}
	}
}

// writePage renders one page of a list with GitLab's pagination headers.
func writePage[T, J any](w http.ResponseWriter, r *http.Request, pg paging, total int, items []T, render func(T) J) error {
	return writePageE(w, r, pg, total, items, func(it T) (J, error) { return render(it), nil })
}

// respond writes v as JSON with code; handlers end with it.
func respond(w http.ResponseWriter, code int, v any) error {
	writeJSON(w, code, v)
	return nil
}

// respondPage writes one rendered page with GitLab's pagination headers.
func respondPage(w http.ResponseWriter, r *http.Request, pg paging, total int, out any) error {
	setPageHeaders(w, r, pg, total)
	return respond(w, http.StatusOK, out)
}

// writePageE is writePage for a render step that can fail (it reads the
// store).
func writePageE[T, J any](w http.ResponseWriter, r *http.Request, pg paging, total int, items []T, render func(T) (J, error)) error {
	out := make([]J, 0, len(items))
	for _, it := range items {
		j, err := render(it)
		if err != nil {
			return err
		}
		out = append(out, j)
	}
	return respondPage(w, r, pg, total, out)
}

// paged lists one page (the request's page and per_page, defPer by
// default) with list and writes it rendered, with GitLab's pagination
// headers.
func paged[T, J any](w http.ResponseWriter, r *http.Request, defPer int, list func(keystore.Page) ([]T, int, error), render func(T) J) error {
	pg, err := parsePaging(r, defPer)
	if err != nil {
		return err
	}
	items, total, err := list(pg.store())
	if err != nil {
		return err
	}
	return writePage(w, r, pg, total, items, render)
}

// accepted is GitLab's answer to a deletion (202: it schedules them; here
// the deletion is done).
func accepted(w http.ResponseWriter) error {
	return respond(w, http.StatusAccepted, map[string]string{"message": "202 Accepted"})
}
