package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/internal/krl"
)

// keygate fleet-sync keeps the files an OpenSSH server behind the bastion
// reads (docs/openssh-fleet.md) in step with one keygate group:
//
//	DIR/revoked_keys.krl       sshd RevokedKeys
//	DIR/trusted_user_ca_keys   sshd TrustedUserCAKeys
//	DIR/principals/USERNAME    sshd AuthorizedPrincipalsFile DIR/principals/%u (--principals)
//
// Every file is replaced atomically (written beside, synced, renamed), only
// after it was checked (the KRL parses as OpenSSH reads it, every CA line
// is a plain public key, every principal a username), and the KRL and the
// CA file only as a pair of one KRL version. When keygate cannot be
// reached, answers an error or something that does not check, the last
// good files stay and the command says so (exit 1 with --once).

type fleetConfig struct {
	URL, Group, Dir, TokenFile string
	Interval, Timeout          time.Duration
	Once, Principals           bool
	MinAccessLevel             int
}

const (
	fleetKRL       = "revoked_keys.krl"
	fleetCAs       = "trusted_user_ca_keys"
	fleetPrincipal = "principals"
	fleetETag      = ".revoked_keys.krl.etag"
)

func runFleetSync(args []string, stdout, stderr io.Writer) int {
	var c fleetConfig
	return runOneShot(args, stdout, stderr, "fleet-sync",
		func(a []string) error { return parseFleetSync(a, stderr, &c) },
		func(ctx context.Context) error {
			log := slog.New(slog.NewTextHandler(stderr, nil))
			return fleetSyncLoop(ctx, c, log)
		})
}

func parseFleetSync(args []string, stderr io.Writer, c *fleetConfig) error {
	fs := flag.NewFlagSet("fleet-sync", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.URL, "url", env("KEYGATE_FLEET_URL", ""), "keygate's REST base URL, e.g. https://keygate.example.com (env KEYGATE_FLEET_URL)")
	fs.StringVar(&c.Group, "group", env("KEYGATE_FLEET_GROUP", ""), "the top-level group: numeric id or full path (env KEYGATE_FLEET_GROUP)")
	fs.StringVar(&c.Dir, "dir", env("KEYGATE_FLEET_DIR", "/etc/ssh/keygate"), "directory of the files sshd reads (env KEYGATE_FLEET_DIR)")
	fs.StringVar(&c.TokenFile, "token-file", env("KEYGATE_FLEET_TOKEN_FILE", ""),
		"file holding a read_api token of a maintainer or owner of the group; none for a public KRL (env KEYGATE_FLEET_TOKEN_FILE)")
	interval, err := envDuration("KEYGATE_FLEET_INTERVAL", time.Minute)
	if err != nil {
		return err
	}
	fs.DurationVar(&c.Interval, "interval", interval, "time between refreshes (env KEYGATE_FLEET_INTERVAL)")
	timeout, err := envDuration("KEYGATE_FLEET_TIMEOUT", 30*time.Second)
	if err != nil {
		return err
	}
	fs.DurationVar(&c.Timeout, "timeout", timeout, "bound on one refresh (env KEYGATE_FLEET_TIMEOUT)")
	once, err := strconv.ParseBool(env("KEYGATE_FLEET_ONCE", "false"))
	if err != nil {
		return fmt.Errorf("KEYGATE_FLEET_ONCE: %w", err)
	}
	fs.BoolVar(&c.Once, "once", once, "refresh once and exit, 1 when the files could not be refreshed (for a systemd timer) (env KEYGATE_FLEET_ONCE)")
	principals, err := strconv.ParseBool(env("KEYGATE_FLEET_PRINCIPALS", "false"))
	if err != nil {
		return fmt.Errorf("KEYGATE_FLEET_PRINCIPALS: %w", err)
	}
	fs.BoolVar(&c.Principals, "principals", principals,
		"also write DIR/principals/USERNAME for the group's members, for AuthorizedPrincipalsFile DIR/principals/%u (env KEYGATE_FLEET_PRINCIPALS)")
	minLevel, err := envInt("KEYGATE_FLEET_MIN_ACCESS_LEVEL", 30)
	if err != nil {
		return err
	}
	fs.IntVar(&c.MinAccessLevel, "min-access-level", minLevel, "with --principals: the lowest access level that logs in (env KEYGATE_FLEET_MIN_ACCESS_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	u, err := url.Parse(c.URL)
	if c.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--url must be keygate's http:// or https:// base URL (got %q)", c.URL)
	}
	if c.Group == "" {
		return errors.New("--group is required")
	}
	if c.Dir == "" {
		return errors.New("--dir is required")
	}
	if c.Interval < time.Second || c.Timeout <= 0 {
		return errors.New("--interval must be at least 1s and --timeout positive")
	}
	if !slices.Contains([]int{10, 20, 30, 40, 50}, c.MinAccessLevel) {
		return errors.New("--min-access-level must be one of 10, 20, 30, 40, 50")
	}
	return nil
}

// fleetSyncLoop refreshes once, then (without --once) every interval
// until ctx ends. A failed refresh keeps the last good files.
func fleetSyncLoop(ctx context.Context, c fleetConfig, log *slog.Logger) error {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return err
	}
	lastGood := time.Time{}
	for {
		err := fleetSyncOnce(ctx, c, log)
		switch {
		case err == nil:
			lastGood = time.Now()
		case c.Once:
			return fmt.Errorf("%w (the files in %s are unchanged)", err, c.Dir)
		default:
			attrs := []any{"err", err, "dir", c.Dir}
			if !lastGood.IsZero() {
				attrs = append(attrs, "last_good", lastGood.UTC().Format(time.RFC3339))
			}
			log.Error("refresh failed: keeping the last good files", attrs...)
		}
		if c.Once {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(c.Interval):
		}
	}
}

var usernameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]*$`)

// fleetSyncOnce fetches, checks and installs the files once.
func fleetSyncOnce(ctx context.Context, c fleetConfig, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	var token string
	if c.TokenFile != "" {
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return fmt.Errorf("token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	base := strings.TrimRight(c.URL, "/") + "/api/v4/groups/" + url.PathEscape(c.Group) + "/ssh_certificates/"
	get := func(path, etag string) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return nil, nil, err
		}
		if token != "" {
			req.Header.Set("PRIVATE-TOKEN", token)
		}
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		req.Header.Set("User-Agent", "keygate-fleet-sync/"+version)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
		if err != nil {
			return nil, nil, err
		}
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotModified {
			return nil, nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body[:min(len(body), 200)]))
		}
		return resp, body, nil
	}

	krlPath, caPath := filepath.Join(c.Dir, fleetKRL), filepath.Join(c.Dir, fleetCAs)
	oldCAs, _ := os.ReadFile(caPath)
	etag := ""
	if _, err := os.Stat(krlPath); err == nil {
		if b, err := os.ReadFile(filepath.Join(c.Dir, fleetETag)); err == nil {
			etag = strings.TrimSpace(string(b))
		}
	}
	// A CA file and a KRL of one version: a change between the two reads
	// makes them disagree, and the pair is read again.
	var caResp, krlResp *http.Response
	var cas, krlData []byte
	for attempt := 0; ; attempt++ {
		var err error
		if caResp, cas, err = get(fleetCAs, ""); err != nil {
			return err
		}
		if krlResp, krlData, err = get("krl", etag); err != nil {
			return err
		}
		if caResp.Header.Get("X-KRL-Version") == krlResp.Header.Get("X-KRL-Version") {
			break
		}
		if attempt == 2 {
			return errors.New("the group kept changing between reading its CA keys and its KRL; trying again at the next refresh")
		}
		etag = "" // a 304 says nothing about the new version
	}
	if err := checkCAFile(cas); err != nil {
		return err
	}
	var newKRL *krl.KRL
	if krlResp.StatusCode == http.StatusOK {
		k, err := krl.Parse(krlData)
		if err != nil {
			return fmt.Errorf("the KRL keygate sent does not parse: %w", err)
		}
		newKRL = k
	}

	// Never trust a CA without its revocations installed: first the CA
	// file narrowed to the keys both versions trust, then the KRL, then
	// the new CA file.
	if !bytes.Equal(oldCAs, cas) {
		if err := writeAtomic(caPath, commonLines(oldCAs, cas), 0o644); err != nil {
			return err
		}
	}
	if newKRL != nil {
		if err := writeAtomic(krlPath, krlData, 0o644); err != nil {
			return err
		}
		if err := writeAtomic(filepath.Join(c.Dir, fleetETag), []byte(krlResp.Header.Get("ETag")+"\n"), 0o644); err != nil {
			return err
		}
		log.Info("KRL installed", "version", newKRL.Version, "generated_at", krlResp.Header.Get("X-KRL-Generated-At"), "bytes", len(krlData))
	}
	if !bytes.Equal(oldCAs, cas) {
		if err := writeAtomic(caPath, cas, 0o644); err != nil {
			return err
		}
		log.Info("CA keys installed", "keys", bytes.Count(cas, []byte("\n")))
	}
	if c.Principals {
		return syncPrincipals(c, get, log)
	}
	return nil
}

// checkCAFile accepts only plain public keys, one a line.
func checkCAFile(data []byte) error {
	for i, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return fmt.Errorf("the CA keys keygate sent: line %d: %w", i+1, err)
		}
		if _, ok := pub.(*gossh.Certificate); ok {
			return fmt.Errorf("the CA keys keygate sent: line %d is a certificate", i+1)
		}
	}
	return nil
}

// commonLines is the lines of old that are also in new (the CA keys both
// trust), in old's order.
func commonLines(old, new []byte) []byte {
	keep := map[string]bool{}
	for _, l := range strings.Split(string(new), "\n") {
		keep[l] = true
	}
	var out bytes.Buffer
	for _, l := range strings.Split(string(old), "\n") {
		if l != "" && keep[l] {
			out.WriteString(l + "\n")
		}
	}
	return out.Bytes()
}

// syncPrincipals writes DIR/principals/USERNAME (the username, one line)
// for every member the group names, and removes the others' files.
func syncPrincipals(c fleetConfig, get func(string, string) (*http.Response, []byte, error), log *slog.Logger) error {
	_, body, err := get("principals?min_access_level="+strconv.Itoa(c.MinAccessLevel), "")
	if err != nil {
		return err
	}
	var names []string
	for _, n := range strings.Split(string(body), "\n") {
		if n == "" {
			continue
		}
		if !usernameRE.MatchString(n) || len(n) > 255 {
			return fmt.Errorf("the principals keygate sent: %q is not a username", n)
		}
		names = append(names, n)
	}
	dir := filepath.Join(c.Dir, fleetPrincipal)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if cur, err := os.ReadFile(p); err == nil && string(cur) == n+"\n" {
			continue
		}
		if err := writeAtomic(p, []byte(n+"\n"), 0o644); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	removed := 0
	for _, e := range entries {
		if !slices.Contains(names, e.Name()) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
			removed++
		}
	}
	if removed > 0 {
		log.Info("principals updated", "members", len(names), "removed", removed)
	}
	return nil
}

// writeAtomic replaces path with data: a temporary file in the same
// directory, synced, renamed over path, and the directory synced, so a
// reader (sshd) sees the old file or the new one, never a part.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename: nothing
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
