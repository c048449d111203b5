package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// client is the admin command line's REST client: every change goes
// through the API, so it is validated, audited and reaches every node's
// index like any other write.
type client struct {
	base  string // http://127.0.0.1:8080
	token string
	http  *http.Client
}

// clientConfig is where the admin command line finds keygate: KEYGATE_URL
// (else the address of KEYGATE_HTTP_ADDR on this host, else
// http://127.0.0.1:8080) and KEYGATE_TOKEN (else DATA_DIR/admin-token, the
// first start's token, readable on the server by its user).
type clientConfig struct {
	URL     string
	Token   string
	DataDir string
	JSON    bool
}

func defaultURL() string {
	addr := env("KEYGATE_HTTP_ADDR", ":8080")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://127.0.0.1:8080"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme := "http"
	if env("KEYGATE_TLS_CERT", "") != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

func (c *clientConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "url", env("KEYGATE_URL", defaultURL()), "keygate's REST API (env KEYGATE_URL)")
	fs.StringVar(&c.DataDir, "data-dir", env("KEYGATE_DATA_DIR", "./keygate-data"),
		"on the server: read the admin token from DATA_DIR/admin-token when KEYGATE_TOKEN is not set (env KEYGATE_DATA_DIR)")
	fs.BoolVar(&c.JSON, "json", false, "print the API's JSON instead of a table")
}

func (c *clientConfig) client() (*client, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("KEYGATE_URL %q: want http://HOST:PORT or https://HOST", c.URL)
	}
	token := os.Getenv("KEYGATE_TOKEN")
	if token == "" {
		path := filepath.Join(c.DataDir, "admin-token")
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("no token: set KEYGATE_TOKEN to an admin's personal access token, or run this on the server as keygate's user with --data-dir (or KEYGATE_DATA_DIR) naming its data dir, whose admin-token file holds the first start's token (%v)", err)
		}
		token = strings.TrimSpace(string(b))
	}
	return &client{base: strings.TrimRight(c.URL, "/"), token: token, http: &http.Client{Timeout: 60 * time.Second}}, nil
}

// apiError is a refusal by the API, with its own text.
type apiError struct {
	Status int
	Msg    string
}

func (e *apiError) Error() string {
	if strings.HasPrefix(e.Msg, strconv.Itoa(e.Status)+" ") {
		return e.Msg // GitLab's messages start with the status already
	}
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Msg)
}

// apiMessage renders GitLab's error bodies: {"message":"…"},
// {"message":{"field":["reason"]}}, {"error":"…","error_description":"…"}.
func apiMessage(body []byte) string {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return strings.TrimSpace(string(body))
	}
	switch msg := m["message"].(type) {
	case string:
		return msg
	case map[string]any:
		var parts []string
		for field, reasons := range msg {
			if rs, ok := reasons.([]any); ok {
				for _, r := range rs {
					parts = append(parts, fmt.Sprintf("%s %v", field, r))
				}
			} else {
				parts = append(parts, fmt.Sprintf("%s %v", field, reasons))
			}
		}
		sort.Strings(parts)
		return strings.Join(parts, "; ")
	}
	if e, ok := m["error_description"].(string); ok {
		return e
	}
	if e, ok := m["error"].(string); ok {
		return e
	}
	return strings.TrimSpace(string(body))
}

// do sends one request with form values and decodes a JSON answer into out
// (raw keeps the body as it came).
func (c *client) do(ctx context.Context, method, path string, form url.Values, out any) (http.Header, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/api/v4"+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("PRIVATE-TOKEN", c.token)
	req.Header.Set("User-Agent", "keygate-cli/"+version)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w (is keygate running there? set KEYGATE_URL)", method, c.base, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 32<<20))
	if err != nil {
		return nil, err
	}
	if res.StatusCode >= 300 {
		return nil, &apiError{Status: res.StatusCode, Msg: apiMessage(b)}
	}
	if out != nil && len(b) > 0 {
		if raw, ok := out.(*json.RawMessage); ok {
			*raw = append((*raw)[:0], b...)
			return res.Header, nil
		}
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("%s %s: unexpected answer: %w", method, path, err)
		}
	}
	return res.Header, nil
}

// all reads every page of a list.
func (c *client) all(ctx context.Context, path string) ([]map[string]any, error) {
	var out []map[string]any
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	for page := 1; ; page++ {
		var items []map[string]any
		h, err := c.do(ctx, "GET", path+sep+"per_page=100&page="+strconv.Itoa(page), nil, &items)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		if h.Get("X-Next-Page") == "" || len(items) == 0 {
			return out, nil
		}
	}
}

// userID resolves a username (or a numeric id) to the user's id.
func (c *client) userID(ctx context.Context, name string) (int64, error) {
	if id, err := strconv.ParseInt(name, 10, 64); err == nil {
		return id, nil
	}
	var users []map[string]any
	if _, err := c.do(ctx, "GET", "/users?username="+url.QueryEscape(name), nil, &users); err != nil {
		return 0, err
	}
	for _, u := range users {
		if u["username"] == name {
			return int64(u["id"].(float64)), nil
		}
	}
	return 0, &apiError{Status: http.StatusNotFound, Msg: fmt.Sprintf("404 User Not Found: no user %q", name)}
}

// groupRef is a group's id, or its full path escaped for a URL.
func groupRef(g string) string {
	if _, err := strconv.ParseInt(g, 10, 64); err == nil {
		return g
	}
	return url.PathEscape(strings.Trim(g, "/"))
}

// table prints rows under a header, aligned.
func table(w io.Writer, header []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// str renders a JSON value for a table cell.
func str(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case string:
		if x == "" {
			return "-"
		}
		return x
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = str(e)
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
}

// printJSON writes v indented.
func printJSON(w io.Writer, v any) error {
	if raw, ok := v.(json.RawMessage); ok {
		var x any
		if err := json.Unmarshal(raw, &x); err == nil {
			v = x
		}
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// errUsage: the command line was wrong (exit 2).
var errUsage = errors.New("usage")
