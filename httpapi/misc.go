package httpapi

import (
	"context"
	"net/http"
	"time"
)

func (a *API) health(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readiness answers 200 once keygate serves (both listeners up) and the
// database answers. A SQLite file opened read-only shows as "database":
// "read-only" with "writes" saying they are refused (still 200: the node
// serves authentication and reads).
//
// With an auth index that follows the change feed (IndexStatus set), an
// unreachable database alone does not make the node unready: SSH
// authentication is decided from the index, which keeps serving what it
// has, so the node stays in rotation and says "database": "unreachable".
// It answers 503 once the index lags more than IndexMaxLag (it may then be
// enforcing stale identities) — a load balancer should move traffic to a
// node that still reaches the database.
func (a *API) readiness(w http.ResponseWriter, r *http.Request) {
	checks := map[string]string{"listeners": "ok", "database": "ok"}
	code := http.StatusOK
	if !a.ready() {
		checks["listeners"] = "starting"
		code = http.StatusServiceUnavailable
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	dbErr := a.store.Ping(ctx)
	if dbErr != nil {
		checks["database"] = "unreachable"
	}
	body := map[string]any{"checks": checks}
	if dbErr == nil && a.store.ReadOnly() {
		// Authentication and reads go on (the node stays in rotation: it
		// is the only one holding this SQLite file), but no write will
		// succeed until an operator fixes the file.
		checks["database"] = "read-only"
		body["writes"] = "refused: the database file is read-only (keygate's log names the file and the fix)"
	}
	if a.indexStatus == nil {
		if dbErr != nil {
			code = http.StatusServiceUnavailable
		}
	} else {
		st := a.indexStatus()
		reach := "reachable"
		if !st.DatabaseReachable {
			reach = "unreachable"
			checks["database"] = "unreachable"
		}
		checks["index"] = "ok"
		if st.Lag > a.indexMaxLag {
			checks["index"] = "stale"
			code = http.StatusServiceUnavailable
		}
		idx := map[string]any{
			"applied_seq": st.Applied,
			"lag_seconds": st.Lag.Seconds(),
			"database":    reach,
			"reloads":     st.Reloads,
		}
		if !st.LastPoll.IsZero() {
			idx["last_poll"] = st.LastPoll.UTC().Format(time.RFC3339Nano)
		}
		body["index"] = idx
	}
	status := "ok"
	if code != http.StatusOK {
		status = "failed"
	}
	body["status"] = status
	writeJSON(w, code, body)
}

func (a *API) getVersion(w http.ResponseWriter, r *http.Request) error {
	return respond(w, http.StatusOK, map[string]string{"version": a.version, "revision": "keygate"})
}

// getMetadata is GET /metadata, GitLab's successor of /version.
func (a *API) getMetadata(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]any{"version": a.version, "revision": "keygate", "enterprise": false,
		"kas": map[string]any{"enabled": false, "externalUrl": nil, "externalK8sProxyUrl": nil, "version": nil}})
	return nil
}
