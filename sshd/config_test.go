package sshd

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// TestConfigCheck: Check is the one place the SSH server's values are
// judged; it names the field it refuses and changes nothing.
func TestConfigCheck(t *testing.T) {
	var zero Config
	if err := zero.Check(); err != nil {
		t.Fatalf("zero Config (all defaults) refused: %v", err)
	}
	if zero.LoginGraceTime != 0 || zero.MaxStartups != (MaxStartups{}) || zero.Now != nil {
		t.Fatalf("Check changed its receiver: %+v", zero)
	}
	ok := []Config{
		{KeepAliveInterval: -1, IdleTimeout: -1, PerSourceTrustWindow: -1, PerSourceMaxStartups: -1, PerSourceMaxAuthFailures: -1},
		{CertClockSkew: MaxCertClockSkew},
		{ProxyProtocol: ProxyRequire, ProxyTrusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		{MaxStartups: MaxStartups{Start: 5, Rate: 50, Full: 20}},
	}
	for _, c := range ok {
		if err := c.Check(); err != nil {
			t.Errorf("%+v refused: %v", c, err)
		}
	}
	bad := []struct {
		field string
		c     Config
	}{
		{"LoginGraceTime", Config{LoginGraceTime: -time.Second}},
		{"PerSourcePenaltyWindow", Config{PerSourcePenaltyWindow: -time.Second}},
		{"MaxAuthTries", Config{MaxAuthTries: -1}},
		{"MaxSessions", Config{MaxSessions: -1}},
		{"KeepAliveCountMax", Config{KeepAliveCountMax: -1}},
		{"MaxAuthRequests", Config{MaxAuthRequests: -1}},
		{"CertClockSkew", Config{CertClockSkew: -time.Second}},
		{"CertClockSkew", Config{CertClockSkew: MaxCertClockSkew + time.Second}},
		{"ProxyProtocol", Config{ProxyProtocol: "ignore"}},
		{"ProxyTrusted", Config{ProxyProtocol: ProxyUse}},
		{"MaxStartups", Config{MaxStartups: MaxStartups{Start: 30, Rate: 30, Full: 10}}},
		{"MaxStartups", Config{MaxStartups: MaxStartups{Start: 1, Rate: 101, Full: 10}}},
	}
	for _, b := range bad {
		err := b.c.Check()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != b.field {
			t.Errorf("%+v: got %v, want a ConfigError on %s", b.c, err, b.field)
		}
	}
}
