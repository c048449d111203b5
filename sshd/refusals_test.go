package sshd

import (
	"errors"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

func TestAuthReasons(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		errs   []error
		client string
		want   string
	}{
		{"sha1-signature", []error{gossh.ErrNoAuth, errors.New(`ssh: algorithm "ssh-rsa" not accepted`)}, "SSH-2.0-libssh2_1.10.0", "ssh-rsa (SHA-1)"},
		{"unknown-key", []error{gossh.ErrNoAuth, errors.New("permission denied")}, "SSH-2.0-OpenSSH_9.2", "unknown key"},
		{"expired", []error{refuseLoudly("expired key", "banner")}, "", "expired key"},
		{"banner-wrapped", []error{&gossh.BannerError{Err: refuseLoudly("blocked user", "b"), Message: "b"}}, "", "blocked user"},
		{"old-libssh2-offers-nothing", []error{gossh.ErrNoAuth}, "SSH-2.0-libssh2_1.10.0", "ssh-rsa (SHA-1)"},
		{"old-jsch-offers-nothing", []error{gossh.ErrNoAuth}, "SSH-2.0-JSCH-0.1.54", "ssh-rsa (SHA-1)"},
		{"new-libssh2-offers-nothing", []error{gossh.ErrNoAuth}, "SSH-2.0-libssh2_1.11.0", "no key offered that keygate accepts"},
	} {
		if got := authReasons(c.errs, c.client); !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want it to say %q", c.name, got, c.want)
		}
	}
	// Repeated reasons appear once.
	got := authReasons([]error{errors.New("permission denied"), errors.New("permission denied")}, "")
	if strings.Count(got, "unknown key") != 1 {
		t.Errorf("repeated reason: %q", got)
	}
}
