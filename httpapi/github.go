package httpapi

import (
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/keygate/keygate/keystore"
)

// GitHub's REST v3 shapes for user keys and SSH signing keys. Both are views
// of the one key table: a signing key is a key whose usage includes signing.

const ghDocs = "https://docs.github.com/rest"

// ghTime is GitHub's timestamp: RFC 3339, UTC, whole seconds
// ("2020-06-11T21:31:57Z"), where GitLab's has milliseconds.
func ghTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

type ghFieldError struct {
	Resource string `json:"resource"`
	Field    string `json:"field"`
	Code     string `json:"code"`
	Message  string `json:"message,omitempty"`
}

// writeErrorV3 writes err in GitHub's shape.
func (a *API) writeErrorV3(w http.ResponseWriter, r *http.Request, err error) {
	var ve *keystore.ValidationError
	if errors.As(err, &ve) {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{
			"message": "Validation Failed", "errors": ghFieldErrors(ve.Fields), "documentation_url": ghDocs})
		return
	}
	he := classify(err)
	if fields, ok := he.Body.(map[string][]string); ok && he.Code == http.StatusBadRequest {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{
			"message": "Validation Failed", "errors": ghFieldErrors(fields), "documentation_url": ghDocs})
		return
	}
	if he.Code >= 500 {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", he.Code, "err", he.Err)
	}
	msg := http.StatusText(he.Code)
	switch he.Code {
	case http.StatusUnauthorized:
		msg = "Requires authentication"
	case http.StatusForbidden:
		if s, ok := he.Body.(string); ok {
			msg = s
		}
	case http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusBadRequest, http.StatusServiceUnavailable:
		if s, ok := he.Body.(string); ok {
			msg = s
		}
	}
	if he.Code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	writeJSON(w, he.Code, map[string]any{"message": msg, "documentation_url": ghDocs})
}

func ghFieldErrors(fields map[string][]string) []ghFieldError {
	names := make([]string, 0, len(fields))
	for f := range fields {
		names = append(names, f)
	}
	sort.Strings(names)
	var out []ghFieldError
	for _, f := range names {
		for _, reason := range fields[f] {
			code := "custom"
			switch reason {
			case "is missing", "can't be blank":
				code = "missing_field"
			case "has already been taken", "is already in use":
				code = "already_exists"
			}
			field := f
			if f == "fingerprint_sha256" {
				field = "key"
			}
			out = append(out, ghFieldError{Resource: "PublicKey", Field: field, Code: code, Message: field + " " + reason})
		}
	}
	return out
}

type ghKeyJSON struct {
	ID        int64  `json:"id"`
	Key       string `json:"key"`
	URL       string `json:"url"`
	Title     string `json:"title"`
	CreatedAt string `json:"created_at"`
	Verified  bool   `json:"verified"`
	ReadOnly  bool   `json:"read_only"`
}

type ghSigningKeyJSON struct {
	ID        int64  `json:"id"`
	Key       string `json:"key"`
	URL       string `json:"url"`
	Title     string `json:"title"`
	CreatedAt string `json:"created_at"`
}

// ghKeyText strips the comment: GitHub returns "type base64".
func ghKeyText(k *keystore.Key) string {
	if f := strings.Fields(k.Key); len(f) >= 2 {
		return f[0] + " " + f[1]
	}
	return k.Key
}

func renderGHKey(r *http.Request, k *keystore.Key) ghKeyJSON {
	return ghKeyJSON{ID: k.ID, Key: ghKeyText(k), URL: baseURL(r) + "/api/v3/user/keys/" + strconv.FormatInt(k.ID, 10),
		Title: k.Title, CreatedAt: ghTime(k.CreatedAt), Verified: true}
}

// renderGHSigningKey is GitHub's ssh-signing-key: its url is where this
// API serves it (GitHub's document shows /user/keys/:id, which on keygate
// answers only for keys that can also log in).
func renderGHSigningKey(r *http.Request, k *keystore.Key) ghSigningKeyJSON {
	return ghSigningKeyJSON{ID: k.ID, Key: ghKeyText(k), URL: baseURL(r) + "/api/v3/user/ssh_signing_keys/" + strconv.FormatInt(k.ID, 10),
		Title: k.Title, CreatedAt: ghTime(k.CreatedAt)}
}

var (
	authUsages    = []string{keystore.UsageAuth, keystore.UsageAuthAndSigning}
	signingUsages = []string{keystore.UsageSigning, keystore.UsageAuthAndSigning}
)

func (a *API) ghKeys(r *http.Request, userID int64, usages []string) ([]*keystore.Key, paging, int, error) {
	pg, err := parsePaging(r, 30)
	if err != nil {
		return nil, pg, 0, err
	}
	keys, total, err := a.store.ListKeys(r.Context(), keystore.KeyFilter{UserID: userID, Usages: usages}, pg.store())
	return keys, pg, total, err
}

// ghPublicKeyPage is a page of u's keys with usages as anyone sees them
// (GitHub's public routes show the public view to everyone).
func (a *API) ghPublicKeyPage(r *http.Request, u *keystore.User, usages []string) ([]*keystore.Key, paging, int, error) {
	pg, err := parsePaging(r, 30)
	if err != nil {
		return nil, pg, 0, err
	}
	keys, total, err := a.keysOf(r, u, usages, true, pg.store())
	return keys, pg, total, err
}

// ghUserKey loads {id} if it is the caller's and has one of usages.
func (a *API) ghUserKey(r *http.Request, usages []string) (*keystore.Key, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		return nil, errNotFound
	}
	k, err := a.store.Key(r.Context(), id)
	if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		return nil, err // a storage fault is 503, not "not found"
	}
	if err != nil || k.UserID != me(r).ID {
		return nil, errNotFound
	}
	for _, u := range usages {
		if k.UsageType == u {
			return k, nil
		}
	}
	return nil, errNotFound
}

func (a *API) ghListKeys(w http.ResponseWriter, r *http.Request) error {
	keys, pg, total, err := a.ghKeys(r, me(r).ID, authUsages)
	if err != nil {
		return err
	}
	return writePage(w, r, pg, total, keys, func(k *keystore.Key) ghKeyJSON { return renderGHKey(r, k) })
}

func (a *API) ghAdd(r *http.Request, usage string) (*keystore.Key, error) {
	p, err := readParams(r, "key")
	if err != nil {
		return nil, err
	}
	key, _ := p.str("key")
	title, ok := p.str("title")
	if !ok || title == "" {
		title = "key"
		if pk, err := keystore.ParseUserKey(key); err == nil {
			title = pk.FingerprintSHA256
		}
	}
	k, _, err := a.store.MergeKeyUsage(r.Context(), actor(r), me(r).ID, keystore.KeyInput{Title: title, Key: key, UsageType: usage})
	return k, err
}

func (a *API) ghAddKey(w http.ResponseWriter, r *http.Request) error {
	k, err := a.ghAdd(r, keystore.UsageAuth)
	if err != nil {
		return err
	}
	return respond(w, http.StatusCreated, renderGHKey(r, k))
}

func (a *API) ghGetKey(w http.ResponseWriter, r *http.Request) error {
	k, err := a.ghUserKey(r, authUsages)
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, renderGHKey(r, k))
}

func (a *API) ghDeleteKey(w http.ResponseWriter, r *http.Request) error {
	k, err := a.ghUserKey(r, authUsages)
	if err != nil {
		return err
	}
	return noContent(w, a.store.DropKeyUsage(r.Context(), actor(r), k.UserID, k.ID, keystore.UsageAuth))
}

func (a *API) ghListSigningKeys(w http.ResponseWriter, r *http.Request) error {
	keys, pg, total, err := a.ghKeys(r, me(r).ID, signingUsages)
	if err != nil {
		return err
	}
	return writePage(w, r, pg, total, keys, func(k *keystore.Key) ghSigningKeyJSON { return renderGHSigningKey(r, k) })
}

func (a *API) ghAddSigningKey(w http.ResponseWriter, r *http.Request) error {
	k, err := a.ghAdd(r, keystore.UsageSigning)
	if err != nil {
		return err
	}
	return respond(w, http.StatusCreated, renderGHSigningKey(r, k))
}

func (a *API) ghGetSigningKey(w http.ResponseWriter, r *http.Request) error {
	k, err := a.ghUserKey(r, signingUsages)
	if err != nil {
		return err
	}
	return respond(w, http.StatusOK, renderGHSigningKey(r, k))
}

func (a *API) ghDeleteSigningKey(w http.ResponseWriter, r *http.Request) error {
	k, err := a.ghUserKey(r, signingUsages)
	if err != nil {
		return err
	}
	return noContent(w, a.store.DropKeyUsage(r.Context(), actor(r), k.UserID, k.ID, keystore.UsageSigning))
}

func (a *API) ghPublicUser(r *http.Request) (*keystore.User, error) {
	u, err := a.store.UserByUsername(r.Context(), pathParam(r, "username"))
	if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		return nil, err // a storage fault is 503, not "not found"
	}
	if err != nil {
		return nil, errNotFound
	}
	return u, nil
}

func (a *API) ghPublicKeys(w http.ResponseWriter, r *http.Request) error {
	u, err := a.ghPublicUser(r)
	if err != nil {
		return err
	}
	keys, pg, total, err := a.ghPublicKeyPage(r, u, authUsages)
	if err != nil {
		return err
	}
	type pub struct {
		ID  int64  `json:"id"`
		Key string `json:"key"`
	}
	return writePage(w, r, pg, total, keys, func(k *keystore.Key) pub { return pub{ID: k.ID, Key: ghKeyText(k)} })
}

func (a *API) ghPublicSigningKeys(w http.ResponseWriter, r *http.Request) error {
	u, err := a.ghPublicUser(r)
	if err != nil {
		return err
	}
	keys, pg, total, err := a.ghPublicKeyPage(r, u, signingUsages)
	if err != nil {
		return err
	}
	return writePage(w, r, pg, total, keys, func(k *keystore.Key) ghSigningKeyJSON { return renderGHSigningKey(r, k) })
}
