package main

import (
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/sshd"
)

// TestSSHLimitFlags is not parallel: it sets the environment.
func TestSSHLimitFlags(t *testing.T) {
	for _, k := range []string{"KEYGATE_LOGIN_GRACE_TIME", "KEYGATE_MAX_AUTH_TRIES", "KEYGATE_MAX_SESSIONS",
		"KEYGATE_KEEPALIVE_INTERVAL", "KEYGATE_KEEPALIVE_COUNT_MAX"} {
		t.Setenv(k, "")
	}
	c, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.LoginGraceTime != 30*time.Second || c.MaxAuthTries != 6 || c.MaxSessions != 10 ||
		c.KeepAliveInterval != 15*time.Second || c.KeepAliveCountMax != 3 {
		t.Fatalf("defaults: %+v", c)
	}

	t.Setenv("KEYGATE_LOGIN_GRACE_TIME", "45s")
	t.Setenv("KEYGATE_MAX_AUTH_TRIES", "4")
	t.Setenv("KEYGATE_MAX_SESSIONS", "20")
	t.Setenv("KEYGATE_KEEPALIVE_INTERVAL", "1m")
	t.Setenv("KEYGATE_KEEPALIVE_COUNT_MAX", "5")
	c, err = parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.LoginGraceTime != 45*time.Second || c.MaxAuthTries != 4 || c.MaxSessions != 20 ||
		c.KeepAliveInterval != time.Minute || c.KeepAliveCountMax != 5 {
		t.Fatalf("from env: %+v", c)
	}

	c, err = parseServe([]string{"--login-grace-time", "10s", "--max-auth-tries", "3", "--max-sessions", "2",
		"--keepalive-interval", "-1s", "--keepalive-count-max", "7"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.LoginGraceTime != 10*time.Second || c.MaxAuthTries != 3 || c.MaxSessions != 2 ||
		c.KeepAliveInterval != -time.Second || c.KeepAliveCountMax != 7 {
		t.Fatalf("flags over env: %+v", c)
	}

	for _, args := range [][]string{{"--max-sessions", "0"}, {"--login-grace-time", "0s"}, {"--keepalive-interval", "0s"}} {
		if _, err := parseServe(args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	t.Setenv("KEYGATE_MAX_SESSIONS", "many")
	if _, err := parseServe(nil, io.Discard); err == nil {
		t.Error("KEYGATE_MAX_SESSIONS=many accepted")
	}
}

// TestPreauthAndProxyFlags is not parallel: it sets the environment.
func TestPreauthAndProxyFlags(t *testing.T) {
	for _, k := range []string{"KEYGATE_MAX_STARTUPS", "KEYGATE_PER_SOURCE_MAX_STARTUPS", "KEYGATE_PER_SOURCE_MAX_AUTH_FAILURES",
		"KEYGATE_PER_SOURCE_PENALTY_WINDOW", "KEYGATE_MAX_AUTH_REQUESTS", "KEYGATE_IDLE_TIMEOUT",
		"KEYGATE_PROXY_PROTOCOL", "KEYGATE_PROXY_PROTOCOL_TRUSTED"} {
		t.Setenv(k, "")
	}
	c, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxStartups != sshd.DefaultMaxStartups || c.PerSourceMaxStartups != 0 || c.PerSourceMaxAuthFailures != 10 ||
		c.PerSourcePenaltyWindow != time.Minute || c.MaxAuthRequests != 20 || c.IdleTimeout != 5*time.Minute ||
		c.ProxyProtocol != "reject" || len(c.ProxyTrusted) != 0 {
		t.Fatalf("defaults: %+v", c)
	}
	t.Setenv("KEYGATE_MAX_STARTUPS", "5:50:20")
	t.Setenv("KEYGATE_PER_SOURCE_MAX_STARTUPS", "-1")
	t.Setenv("KEYGATE_PER_SOURCE_MAX_AUTH_FAILURES", "3")
	t.Setenv("KEYGATE_PER_SOURCE_PENALTY_WINDOW", "10m")
	t.Setenv("KEYGATE_MAX_AUTH_REQUESTS", "30")
	t.Setenv("KEYGATE_IDLE_TIMEOUT", "30s")
	t.Setenv("KEYGATE_PROXY_PROTOCOL", "require")
	t.Setenv("KEYGATE_PROXY_PROTOCOL_TRUSTED", "10.0.0.0/8, 192.0.2.1")
	c, err = parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxStartups != (sshd.MaxStartups{Start: 5, Rate: 50, Full: 20}) || c.PerSourceMaxStartups != -1 ||
		c.PerSourceMaxAuthFailures != 3 || c.PerSourcePenaltyWindow != 10*time.Minute || c.MaxAuthRequests != 30 ||
		c.IdleTimeout != 30*time.Second || c.ProxyProtocol != "require" ||
		len(c.ProxyTrusted) != 2 || c.ProxyTrusted[1].String() != "192.0.2.1/32" {
		t.Fatalf("from env: %+v", c)
	}
	c, err = parseServe([]string{"--max-startups", "7", "--proxy-protocol", "use", "--proxy-protocol-trusted", "127.0.0.1/32",
		"--idle-timeout", "-1s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxStartups != (sshd.MaxStartups{Start: 7, Rate: 100, Full: 7}) || c.ProxyProtocol != "use" || c.IdleTimeout != -time.Second {
		t.Fatalf("flags over env: %+v", c)
	}
	t.Setenv("KEYGATE_PROXY_PROTOCOL_TRUSTED", "")
	// The per-source cap: half of start by default, refused above it.
	t.Setenv("KEYGATE_MAX_STARTUPS", "")
	t.Setenv("KEYGATE_PER_SOURCE_MAX_STARTUPS", "")
	t.Setenv("KEYGATE_PROXY_PROTOCOL", "")
	for _, args := range [][]string{{"--max-startups", "10:30:100"}, {"--per-source-max-startups", "0"},
		{"--per-source-max-startups", "10"}, {"--max-startups", "10:30:100", "--per-source-max-startups", "5"}} {
		if _, err := parseServe(args, io.Discard); err != nil {
			t.Errorf("%v refused: %v", args, err)
		}
	}
	_, err = parseServe([]string{"--max-startups", "10:30:100", "--per-source-max-startups", "10"}, io.Discard)
	if err == nil || !strings.HasPrefix(err.Error(), "--per-source-max-startups 10 is more than half of start in max-startups 10:30:100") {
		t.Errorf("a per-source cap of start: %v", err)
	}
	for _, args := range [][]string{{"--max-startups", "10:30"}, {"--proxy-protocol", "ignore"},
		{"--proxy-protocol", "use"}, {"--proxy-protocol", "reject", "--proxy-protocol-trusted", "nonsense"},
		{"--max-auth-requests", "0"}, {"--idle-timeout", "0s"}} {
		if _, err := parseServe(args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// TestIndexFeedFlags is not parallel: it sets the environment.
func TestIndexFeedFlags(t *testing.T) {
	t.Setenv("KEYGATE_INDEX_POLL_INTERVAL", "")
	t.Setenv("KEYGATE_INDEX_MAX_LAG", "")
	c, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.IndexPollInterval != 250*time.Millisecond || c.IndexMaxLag != 30*time.Second {
		t.Fatalf("defaults: poll %v, max lag %v", c.IndexPollInterval, c.IndexMaxLag)
	}
	t.Setenv("KEYGATE_INDEX_POLL_INTERVAL", "1s")
	t.Setenv("KEYGATE_INDEX_MAX_LAG", "2m")
	if c, err = parseServe(nil, io.Discard); err != nil || c.IndexPollInterval != time.Second || c.IndexMaxLag != 2*time.Minute {
		t.Fatalf("from env: %+v, %v", c, err)
	}
	if c, err = parseServe([]string{"--index-poll-interval", "100ms", "--index-max-lag", "5s"}, io.Discard); err != nil ||
		c.IndexPollInterval != 100*time.Millisecond || c.IndexMaxLag != 5*time.Second {
		t.Fatalf("flags over env: %+v, %v", c, err)
	}
	for _, args := range [][]string{{"--index-poll-interval", "0s"}, {"--index-max-lag", "-1s"}} {
		if _, err := parseServe(args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	t.Setenv("KEYGATE_INDEX_POLL_INTERVAL", "often")
	if _, err := parseServe(nil, io.Discard); err == nil {
		t.Error("KEYGATE_INDEX_POLL_INTERVAL=often accepted")
	}
}

// TestNetworkAndCertificateFlags is not parallel: it sets the environment.
func TestNetworkAndCertificateFlags(t *testing.T) {
	for _, k := range []string{"KEYGATE_PER_SOURCE_TRUST_WINDOW", "KEYGATE_PER_SOURCE_EXEMPT", "KEYGATE_CERT_CLOCK_SKEW", "KEYGATE_CERT_REQUIRE_PRINCIPALS"} {
		t.Setenv(k, "")
	}
	c, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.PerSourceTrustWindow != time.Hour || len(c.PerSourceExempt) != 0 || c.CertClockSkew != 0 || c.CertRequirePrincipals {
		t.Fatalf("defaults: %+v", c)
	}
	t.Setenv("KEYGATE_PER_SOURCE_EXEMPT", "10.0.0.0/8, 192.0.2.7")
	t.Setenv("KEYGATE_CERT_CLOCK_SKEW", "30s")
	t.Setenv("KEYGATE_CERT_REQUIRE_PRINCIPALS", "true")
	t.Setenv("KEYGATE_PER_SOURCE_TRUST_WINDOW", "10m")
	c, err = parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.PerSourceExempt) != 2 || c.PerSourceExempt[1].String() != "192.0.2.7/32" || c.CertClockSkew != 30*time.Second ||
		!c.CertRequirePrincipals || c.PerSourceTrustWindow != 10*time.Minute {
		t.Fatalf("from env: %+v", c)
	}
	c, err = parseServe([]string{"--cert-require-principals=false", "--cert-clock-skew", "2m", "--per-source-exempt", ""}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.CertRequirePrincipals || c.CertClockSkew != 2*time.Minute || len(c.PerSourceExempt) != 0 {
		t.Fatalf("flags over env: %+v", c)
	}
	for _, args := range [][]string{{"--cert-clock-skew", "-1s"}, {"--cert-clock-skew", "48h"}, {"--per-source-exempt", "10.0.0.0/33"}, {"--per-source-trust-window", "0s"}} {
		if _, err := parseServe(args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	t.Setenv("KEYGATE_CERT_REQUIRE_PRINCIPALS", "sometimes")
	if _, err := parseServe(nil, io.Discard); err == nil {
		t.Error("KEYGATE_CERT_REQUIRE_PRINCIPALS=sometimes accepted")
	}
}

// TestFlagRefusalsNameTheFlag: values sshd.Config.Check refuses, and zeros
// the flags cannot take, are reported as the flag the user typed.
func TestFlagRefusalsNameTheFlag(t *testing.T) {
	for _, args := range [][]string{
		{"--login-grace-time", "-1s"}, {"--per-source-penalty-window", "-1m"}, {"--max-sessions", "-2"},
		{"--max-auth-tries", "-1"}, {"--keepalive-count-max", "-1"}, {"--max-auth-requests", "-5"},
		{"--cert-clock-skew", "25h"}, {"--proxy-protocol", "ignore"},
		{"--idle-timeout", "0s"}, {"--per-source-max-startups", "11"}, {"--index-max-lag", "-1s"},
	} {
		_, err := parseServe(args, io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), args[0]+" ") {
			t.Errorf("%v: %v (want an error naming %s)", args, err, args[0])
		}
	}
	_, err := parseServe([]string{"--proxy-protocol", "use", "--proxy-protocol-trusted", ""}, io.Discard)
	if err == nil || !strings.HasPrefix(err.Error(), "--proxy-protocol-trusted ") {
		t.Errorf("use without trusted proxies: %v", err)
	}
	// Every sshd.Config field a flag sets has its flag's name.
	for field, flag := range sshFlags {
		if _, ok := reflect.TypeOf(sshd.Config{}).FieldByName(field); !ok {
			t.Errorf("sshFlags names %s (--%s), which sshd.Config does not have", field, flag)
		}
	}
}
