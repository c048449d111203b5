package sshd

import (
	"bytes"
	"crypto/rand"
	"strings"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// OpenSSH's host key rotation (UpdateHostKeys): after authentication the
// server announces every host key ("hostkeys-00@openssh.com"); a client
// that does not know some of them asks the server to prove it holds them
// ("hostkeys-prove-00@openssh.com") and then records them in known_hosts.
// A go-git client (Argo CD, Flux) whose known_hosts holds the one key type
// it was given otherwise fails with "knownhosts: key mismatch" when
// x/crypto prefers another type.

const (
	reqHostKeys      = "hostkeys-00@openssh.com"
	reqHostKeysProve = "hostkeys-prove-00@openssh.com"
)

// announceHostKeys sends the host keys once per connection, after
// authentication (on its first channel).
func (s *Server) announceHostKeys(ctx ssh.Context, conn *gossh.ServerConn) {
	tc := connFromContext(ctx)
	if tc == nil || conn == nil || !tc.hostKeysSent.CompareAndSwap(false, true) {
		return
	}
	var payload []byte
	for _, k := range s.cfg.HostKeys {
		payload = append(payload, gossh.Marshal(struct{ Blob []byte }{k.PublicKey().Marshal()})...)
	}
	_, _, _ = conn.SendRequest(reqHostKeys, false, payload) // before the channel opens: the client can ask for proofs early
}

// proveHostKeys answers "hostkeys-prove-00@openssh.com": for each host key
// blob the client lists, a signature over ("hostkeys-prove-00@openssh.com",
// session id, blob), in order. A key that is not ours refuses the request.
func (s *Server) proveHostKeys(ctx ssh.Context, _ *ssh.Server, req *gossh.Request) (bool, []byte) {
	if tc := connFromContext(ctx); tc != nil {
		tc.proofs.Add(1)
		defer func() {
			tc.proofs.Add(-1)
			tc.proved.Store(true)
			select {
			case tc.proofDone <- struct{}{}:
			default:
			}
		}()
	}
	conn, ok := ctx.Value(ssh.ContextKeyConn).(*gossh.ServerConn)
	if !ok || conn == nil || identityFromContext(ctx) == nil {
		return false, nil
	}
	rsaAlg := gossh.KeyAlgoRSASHA512
	if am, ok := any(conn).(gossh.AlgorithmsConnMetadata); ok {
		// OpenSSH verifies an RSA proof with the signature algorithm
		// negotiated for the host key, when that was RSA.
		if alg := am.Algorithms().HostKey; strings.HasPrefix(alg, "rsa-sha2-") {
			rsaAlg = alg
		}
	}
	var out []byte
	rest := req.Payload
	for n := 0; len(rest) > 0; n++ {
		if n >= len(s.cfg.HostKeys) {
			return false, nil
		}
		var blob struct {
			Blob []byte
			Rest []byte `ssh:"rest"`
		}
		if err := gossh.Unmarshal(rest, &blob); err != nil {
			return false, nil
		}
		rest = blob.Rest
		var signer gossh.Signer
		for _, k := range s.cfg.HostKeys {
			if bytes.Equal(k.PublicKey().Marshal(), blob.Blob) {
				signer = k
			}
		}
		if signer == nil {
			return false, nil
		}
		data := gossh.Marshal(struct {
			Type, SessionID, Blob []byte
		}{[]byte(reqHostKeysProve), conn.SessionID(), blob.Blob})
		var sig *gossh.Signature
		var err error
		if as, ok := signer.(gossh.AlgorithmSigner); ok && signer.PublicKey().Type() == gossh.KeyAlgoRSA {
			sig, err = as.SignWithAlgorithm(rand.Reader, data, rsaAlg)
		} else {
			sig, err = signer.Sign(rand.Reader, data)
		}
		if err != nil {
			return false, nil
		}
		out = append(out, gossh.Marshal(struct{ Sig []byte }{gossh.Marshal(sig)})...)
	}
	return true, out
}

// waitHostKeyProofs lets a short session (the greeting) wait for host key
// proofs: OpenSSH asks for them as soon as it sees the announcement, before
// its session requests, but drops the answer if the session has ended. The
// request is then already on its way to the server, so an OpenSSH client's
// greeting waits at most proofStartWait for it to start, and at most a
// second for it to be answered; other clients never wait.
func (s *Server) waitHostKeyProofs(ctx ssh.Context) {
	tc := connFromContext(ctx)
	conn, _ := ctx.Value(ssh.ContextKeyConn).(*gossh.ServerConn)
	if tc == nil || conn == nil || !tc.hostKeysSent.Load() || tc.proved.Load() ||
		!strings.Contains(string(conn.ClientVersion()), "OpenSSH") {
		return
	}
	start := time.NewTimer(proofStartWait)
	defer start.Stop()
	deadline := time.NewTimer(time.Second)
	defer deadline.Stop()
	for !tc.proved.Load() {
		select {
		case <-tc.proofDone:
		case <-start.C:
			if tc.proofs.Load() == 0 {
				return // none asked for
			}
		case <-deadline.C:
			return
		}
	}
}

// proofStartWait bounds how long a greeting waits for a proof request that
// an OpenSSH client may have sent.
const proofStartWait = 100 * time.Millisecond
