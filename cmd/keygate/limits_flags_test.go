package main

import (
	"io"
	"testing"
	"time"
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
