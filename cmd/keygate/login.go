package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/oauth2"
)

// keygate login: a person's short-lived certificate. With an OpenID
// Connect issuer keygate trusts, the OAuth 2.0 device authorization grant
// (RFC 8628): keygate prints a URL and a code, the person signs in with a
// browser anywhere, and the ID token the issuer returns is exchanged for a
// certificate. With a personal access token, the same without the browser.
// The certificate goes beside the key (KEY-cert.pub) and, with the key,
// into the running ssh-agent for the certificate's lifetime.

type loginConfig struct {
	Server    string
	Token     string
	Issuer    string
	Key       string
	CreateKey bool
	TTL       time.Duration
	GroupID   int64
	NoAgent   bool
}

func parseLogin(args []string, stderr io.Writer) (*loginConfig, error) {
	c := &loginConfig{}
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	home, _ := os.UserHomeDir()
	fs.StringVar(&c.Server, "server", env("KEYGATE_SERVER", ""), "keygate's REST API base URL, e.g. https://keys.example.com (env KEYGATE_SERVER)")
	fs.StringVar(&c.Token, "token", "", "a personal access token instead of signing in with an OpenID Connect issuer (or env KEYGATE_TOKEN)")
	fs.StringVar(&c.Issuer, "issuer", env("KEYGATE_OIDC_ISSUER", ""), "the OpenID Connect issuer to sign in with, when keygate trusts several (env KEYGATE_OIDC_ISSUER)")
	fs.StringVar(&c.Key, "key", filepath.Join(home, ".ssh", "keygate_ed25519"), "the SSH private key to certify; its certificate is written to KEY-cert.pub")
	fs.BoolVar(&c.CreateKey, "create-key", false, "create the key (ed25519, no passphrase, 0600) if it does not exist")
	fs.DurationVar(&c.TTL, "ttl", 0, "how long the certificate lasts (default: the longest the group allows)")
	fs.Int64Var(&c.GroupID, "group-id", 0, "the top-level group whose CA signs (when several could)")
	fs.BoolVar(&c.NoAgent, "no-agent", false, "do not add the key and certificate to the ssh-agent")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "usage: keygate login --server URL [flags]")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if c.Token == "" {
		c.Token = os.Getenv("KEYGATE_TOKEN")
	}
	if c.Server == "" {
		return nil, errors.New("--server is required (keygate's REST API, e.g. https://keys.example.com)")
	}
	u, err := url.Parse(c.Server)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("--server %q: not an http(s) URL", c.Server)
	}
	c.Server = strings.TrimRight(c.Server, "/")
	if c.TTL < 0 || (c.TTL > 0 && c.TTL < time.Minute) {
		return nil, errors.New("--ttl must be at least 1m")
	}
	return c, nil
}

func runLogin(args []string, stdout, stderr io.Writer) int {
	c, err := parseLogin(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "keygate login:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := login(ctx, c, stdout); err != nil {
		fmt.Fprintln(stderr, "keygate login:", err)
		return 1
	}
	return 0
}

// serverInfo is GET /-/oidc_issuers.
type serverInfo struct {
	Issuers []struct {
		Issuer   string `json:"issuer"`
		ClientID string `json:"client_id"`
	} `json:"issuers"`
	GitUser string `json:"git_user"`
	SSHHost string `json:"ssh_host"`
	SSHPort int    `json:"ssh_port"`
}

func login(ctx context.Context, c *loginConfig, out io.Writer) error {
	client := &http.Client{Timeout: 30 * time.Second}
	priv, pubLine, created, err := loginKey(c)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(out, "Created %s (ed25519).\n", c.Key)
	}
	var info serverInfo
	if err := getJSON(ctx, client, c.Server+"/-/oidc_issuers", &info); err != nil {
		return fmt.Errorf("asking %s which issuers it trusts: %w", c.Server, err)
	}
	bearer := c.Token
	if bearer == "" {
		if bearer, err = deviceLogin(ctx, client, c, info, out); err != nil {
			return err
		}
	}
	form := url.Values{"key": {pubLine}}
	if c.TTL > 0 {
		form.Set("ttl", strconv.FormatInt(int64(c.TTL/time.Second), 10))
	}
	if c.GroupID != 0 {
		form.Set("group_id", strconv.FormatInt(c.GroupID, 10))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Server+"/api/v4/user/ssh_certificates", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("keygate refused the certificate: %s %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var issued struct {
		Certificate string   `json:"certificate"`
		Serial      uint64   `json:"serial"`
		KeyID       string   `json:"key_id"`
		Principals  []string `json:"principals"`
		ValidBefore string   `json:"valid_before"`
		CAID        int64    `json:"ca_id"`
	}
	if err := json.Unmarshal(body, &issued); err != nil {
		return fmt.Errorf("keygate's answer: %w", err)
	}
	pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(issued.Certificate))
	if err != nil {
		return fmt.Errorf("keygate's certificate: %w", err)
	}
	cert, ok := pub.(*gossh.Certificate)
	if !ok {
		return errors.New("keygate's answer holds no certificate")
	}
	certPath := c.Key + "-cert.pub"
	if err := os.WriteFile(certPath, []byte(issued.Certificate+"\n"), 0o644); err != nil {
		return err
	}
	until := time.Unix(int64(cert.ValidBefore), 0)
	fmt.Fprintf(out, "Certificate for %s (principals %s, serial %d, CA %d), valid until %s.\n", issued.KeyID,
		strings.Join(issued.Principals, ","), issued.Serial, issued.CAID, until.Local().Format(time.RFC1123))
	fmt.Fprintf(out, "  key:         %s\n  certificate: %s\n", c.Key, certPath)
	switch added, why := addToAgent(priv, cert, until, c.NoAgent); {
	case added:
		fmt.Fprintln(out, "  ssh-agent:   added, removed when the certificate expires")
	default:
		fmt.Fprintln(out, "  ssh-agent:   not added ("+why+")")
	}
	host, port, user := info.SSHHost, info.SSHPort, info.GitUser
	if host == "" {
		if u, err := url.Parse(c.Server); err == nil {
			host = u.Hostname()
		}
	}
	if user == "" {
		user = "git"
	}
	portFlag, urlPort := "", ""
	if port != 0 && port != 22 {
		portFlag, urlPort = fmt.Sprintf(" -p %d", port), ":"+strconv.Itoa(port)
	}
	fmt.Fprintf(out, "Use it:\n  ssh%s %s@%s\n  git clone ssh://%s@%s%s/GROUP/PROJECT.git\n", portFlag, user, host, user, host, urlPort)
	fmt.Fprintf(out, "  without the agent: GIT_SSH_COMMAND='ssh -i %s -o CertificateFile=%s' git clone …\n", c.Key, certPath)
	return nil
}

// loginKey loads the key (creating it when asked) and returns its raw
// private key (nil for a passphrase-protected key, which ssh-add can add
// itself) and its public key line.
func loginKey(c *loginConfig) (priv any, pubLine string, created bool, err error) {
	data, err := os.ReadFile(c.Key)
	if errors.Is(err, fs.ErrNotExist) {
		if !c.CreateKey {
			return nil, "", false, fmt.Errorf("no key at %s; give --key PATH, or --create-key to make one", c.Key)
		}
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, "", false, err
		}
		host, _ := os.Hostname()
		block, err := gossh.MarshalPrivateKey(key, "keygate login "+host)
		if err != nil {
			return nil, "", false, err
		}
		if err := os.MkdirAll(filepath.Dir(c.Key), 0o700); err != nil {
			return nil, "", false, err
		}
		f, err := os.OpenFile(c.Key, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, "", false, err
		}
		if err := pem.Encode(f, block); err != nil {
			f.Close()
			return nil, "", false, err
		}
		if err := f.Close(); err != nil {
			return nil, "", false, err
		}
		pub, err := gossh.NewPublicKey(key.Public())
		if err != nil {
			return nil, "", false, err
		}
		line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pub))) + " keygate-login@" + host
		if err := os.WriteFile(c.Key+".pub", []byte(line+"\n"), 0o644); err != nil {
			return nil, "", false, err
		}
		return key, line, true, nil
	} else if err != nil {
		return nil, "", false, err
	}
	raw, err := gossh.ParseRawPrivateKey(data)
	var missing *gossh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, strings.TrimSpace(string(gossh.MarshalAuthorizedKey(missing.PublicKey))), false, nil
	}
	if err != nil {
		return nil, "", false, fmt.Errorf("%s: %w", c.Key, err)
	}
	signer, err := gossh.NewSignerFromKey(raw)
	if err != nil {
		return nil, "", false, fmt.Errorf("%s: %w", c.Key, err)
	}
	return raw, strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey()))), false, nil
}

// deviceLogin signs in with the issuer's device authorization grant and
// returns the ID token.
func deviceLogin(ctx context.Context, client *http.Client, c *loginConfig, info serverInfo, out io.Writer) (string, error) {
	var issuer, clientID string
	for _, i := range info.Issuers {
		if c.Issuer == "" || c.Issuer == i.Issuer {
			if issuer != "" {
				var names []string
				for _, j := range info.Issuers {
					names = append(names, j.Issuer)
				}
				return "", fmt.Errorf("keygate trusts several issuers (%s): choose one with --issuer, or use --token", strings.Join(names, ", "))
			}
			issuer, clientID = i.Issuer, i.ClientID
		}
	}
	if issuer == "" {
		if c.Issuer != "" {
			return "", fmt.Errorf("keygate does not trust issuer %q for people", c.Issuer)
		}
		return "", errors.New("keygate trusts no OpenID Connect issuer for people: sign in with a personal access token (--token or KEYGATE_TOKEN)")
	}
	octx := oidc.ClientContext(ctx, client)
	p, err := oidc.NewProvider(octx, issuer)
	if err != nil {
		return "", fmt.Errorf("issuer %s: %w", issuer, err)
	}
	ep := p.Endpoint()
	if ep.DeviceAuthURL == "" {
		return "", fmt.Errorf("issuer %s offers no device authorization (RFC 8628); use --token", issuer)
	}
	cfg := &oauth2.Config{ClientID: clientID, Endpoint: ep, Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}
	da, err := cfg.DeviceAuth(octx)
	if err != nil {
		return "", fmt.Errorf("device authorization at %s: %w", issuer, err)
	}
	fmt.Fprintf(out, "To sign in, open %s and enter the code %s\n", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(out, "  (or open %s)\n", da.VerificationURIComplete)
	}
	fmt.Fprintln(out, "Waiting for you to sign in…")
	tok, err := cfg.DeviceAccessToken(octx, da)
	if err != nil {
		return "", fmt.Errorf("signing in: %w", err)
	}
	idToken, _ := tok.Extra("id_token").(string)
	if idToken == "" {
		return "", fmt.Errorf("issuer %s returned no ID token", issuer)
	}
	// Check it here too: a token keygate would refuse is better caught
	// with a clear message before it is sent.
	if _, err := p.Verifier(&oidc.Config{ClientID: clientID}).Verify(octx, idToken); err != nil {
		return "", fmt.Errorf("the issuer's ID token: %w", err)
	}
	return idToken, nil
}

// addToAgent adds the key with its certificate to the ssh-agent at
// $SSH_AUTH_SOCK, to be removed when the certificate expires.
func addToAgent(raw any, cert *gossh.Certificate, until time.Time, off bool) (bool, string) {
	switch {
	case off:
		return false, "--no-agent"
	case raw == nil:
		return false, "the key has a passphrase: ssh-add it yourself"
	case os.Getenv("SSH_AUTH_SOCK") == "":
		return false, "no ssh-agent: SSH_AUTH_SOCK is not set"
	}
	conn, err := net.Dial("unix", os.Getenv("SSH_AUTH_SOCK"))
	if err != nil {
		return false, err.Error()
	}
	defer conn.Close()
	life := time.Until(until)
	if life <= 0 {
		return false, "the certificate has already expired"
	}
	err = agent.NewClient(conn).Add(agent.AddedKey{PrivateKey: raw, Certificate: cert, LifetimeSecs: uint32(life / time.Second),
		Comment: "keygate " + cert.KeyId})
	if err != nil {
		return false, err.Error()
	}
	return true, ""
}

// getJSON GETs url into v.
func getJSON(ctx context.Context, client *http.Client, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}
