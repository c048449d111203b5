package httpapi

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"time"
)

func (a *API) health(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readiness answers 200 once keygate serves (both listeners up) and the
// database answers.
func (a *API) readiness(w http.ResponseWriter, r *http.Request) {
	checks := map[string]string{"listeners": "ok", "database": "ok"}
	code := http.StatusOK
	if !a.ready() {
		checks["listeners"] = "starting"
		code = http.StatusServiceUnavailable
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.store.Ping(ctx); err != nil {
		checks["database"] = "unreachable"
		code = http.StatusServiceUnavailable
	}
	status := "ok"
	if code != http.StatusOK {
		status = "failed"
	}
	writeJSON(w, code, map[string]any{"status": status, "checks": checks})
}

func (a *API) getVersion(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"version": a.version, "revision": "keygate"})
	return nil
}

// allowedSigners serves git's gpg.ssh.allowedSignersFile: one line per
// unexpired signing-capable key of an active user.
func (a *API) allowedSigners(w http.ResponseWriter, r *http.Request) error {
	entries, err := a.store.AllowedSigners(r.Context())
	if err != nil {
		return err
	}
	var b bytes.Buffer
	for _, e := range entries {
		if strings.ContainsAny(e.Email, " \t\"") {
			continue
		}
		b.WriteString(e.Email)
		b.WriteString(` namespaces="git"`) // options are comma-separated, as in authorized_keys
		if e.ExpiresAt != nil {
			b.WriteString(`,valid-before="` + e.ExpiresAt.UTC().Format("20060102150405") + `Z"`)
		}
		b.WriteByte(' ')
		b.WriteString(e.Key)
		b.WriteByte('\n')
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err = w.Write(b.Bytes())
	return err
}
