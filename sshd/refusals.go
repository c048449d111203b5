package sshd

import (
	"errors"
	"io"
	"net"
	"reflect"
	"strings"

	gossh "golang.org/x/crypto/ssh"
)

// connectionFailed logs, at INFO and sampled like the other refusal logs,
// every connection that ended without authenticating: what each attempt
// was refused for (an unknown key, an expired one, a SHA-1 signature from
// an old libssh2 or JSch...), or why the handshake failed (no common
// algorithm), or that the client went away first. An admin whose Jenkins
// or libgit2 client cannot log in sees why without debug logging.
func (s *Server) connectionFailed(c net.Conn, err error) {
	if !s.refusalLog.Allow() {
		return
	}
	remote := c.RemoteAddr().String()
	client := ""
	if tc := unwrapTracked(c); tc != nil {
		client = tc.clientVersion()
	}
	var sae *gossh.ServerAuthError
	if errors.As(err, &sae) {
		s.log.Info("ssh login failed", "remote", remote, "client", client, "reasons", authReasons(sae.Errors, client))
		return
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		s.log.Info("ssh connection ended before authentication", "remote", remote, "client", client, "err", err)
		return
	}
	msg := err.Error()
	if strings.Contains(msg, "no common algorithm") {
		s.log.Info("ssh handshake refused: no common algorithm (keygate offers no SHA-1 or DSA algorithms)", "remote", remote, "client", client, "err", msg)
		return
	}
	s.log.Info("ssh handshake failed", "remote", remote, "client", client, "err", msg)
}

// sha1RSAHint explains an ssh-rsa (SHA-1) signature refusal.
const sha1RSAHint = "the client signs RSA keys only with ssh-rsa (SHA-1), refused as by OpenSSH >= 8.8: use an ed25519 or ECDSA key, or a client that signs rsa-sha2-256/512 (libssh2 >= 1.11, JSch >= 0.2 from mwiede)"

// authReasons turns x/crypto's per-attempt errors into distinct reasons.
// client is the client's version line, which explains a client that
// offered nothing.
func authReasons(errs []error, client string) string {
	var out []string
	seen := map[string]bool{}
	for _, e := range errs {
		if e == nil || errors.Is(e, gossh.ErrNoAuth) {
			continue
		}
		r := e.Error()
		var ae *authError
		switch {
		case errors.As(e, &ae):
			r = ae.reason
		case strings.Contains(r, `algorithm "ssh-rsa" not accepted`) || strings.Contains(r, `algorithm "ssh-rsa-cert-v01@openssh.com" not accepted`):
			r = sha1RSAHint
		case r == "permission denied": // gliderlabs' answer to a refused key offer
			r = "unknown key (not registered, or a certificate of an unregistered CA)"
		case strings.Contains(r, `algorithm "ssh-dss`):
			r = "the client offered a DSA key (ssh-dss), which keygate refuses"
		}
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		if oldSHA1Client(client) {
			return "no key offered; " + sha1RSAHint
		}
		return "no key offered that keygate accepts (an RSA key that the client signs only with ssh-rsa (SHA-1) is not offered to a server that refuses SHA-1)"
	}
	return strings.Join(out, "; ")
}

// oldSHA1Client reports client versions known to sign RSA only with SHA-1:
// libssh2 before 1.11 (libgit2 on Debian 12) and JSch 0.1.x (old JGit and
// Jenkins).
func oldSHA1Client(v string) bool {
	v = strings.ToLower(v)
	if i := strings.Index(v, "libssh2_1."); i >= 0 {
		minor := v[i+len("libssh2_1."):]
		if j := strings.IndexByte(minor, '.'); j >= 0 {
			minor = minor[:j]
		}
		return len(minor) == 1 || minor == "10"
	}
	return strings.Contains(v, "jsch-0.1.")
}

// unwrapTracked finds our connection under gliderlabs' connection wrapper
// (an unexported struct embedding the net.Conn that ConnCallback returned).
func unwrapTracked(c net.Conn) *connection {
	for depth := 0; c != nil && depth < 4; depth++ {
		if tc, ok := c.(*connection); ok {
			return tc
		}
		v := reflect.ValueOf(c)
		if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
			return nil
		}
		f := v.Elem().FieldByName("Conn")
		if !f.IsValid() || !f.CanInterface() {
			return nil
		}
		inner, ok := f.Interface().(net.Conn)
		if !ok {
			return nil
		}
		c = inner
	}
	return nil
}
