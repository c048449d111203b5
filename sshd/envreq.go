package sshd

import (
	gossh "golang.org/x/crypto/ssh"
)

// Session "env" requests. gliderlabs' session handler stores every one it
// is sent, so a client could grow a session's memory without bound (2,000
// requests of 32 KB: +86 MB). keygate accepts only the names it uses, as
// OpenSSH's AcceptEnv does, small, and a few per session; every other env
// request is answered false and dropped before gliderlabs sees it.
const (
	// maxEnvValue is the longest env value accepted (git sends
	// GIT_PROTOCOL=version=2).
	maxEnvValue = 256
	// maxEnvPerSession is how many env requests a session may have
	// accepted.
	maxEnvPerSession = 4
)

// acceptedEnv is the names keygate passes on (to git).
var acceptedEnv = map[string]bool{"GIT_PROTOCOL": true}

// envFilter is a session's gossh.NewChannel whose accepted channel's
// request stream has the env requests keygate does not accept taken out.
type envFilter struct {
	gossh.NewChannel
}

// Accept accepts the channel and filters its requests.
func (f envFilter) Accept() (gossh.Channel, <-chan *gossh.Request, error) {
	ch, reqs, err := f.NewChannel.Accept()
	if err != nil {
		return ch, reqs, err
	}
	out := make(chan *gossh.Request)
	go filterEnv(reqs, out)
	return ch, out, nil
}

// filterEnv forwards reqs to out until reqs is closed, then closes out.
// Env requests beyond what keygate accepts are answered false there.
func filterEnv(reqs <-chan *gossh.Request, out chan<- *gossh.Request) {
	defer close(out)
	accepted := 0
	for req := range reqs {
		if req.Type == "env" {
			if accepted >= maxEnvPerSession || !acceptableEnv(req.Payload) {
				_ = req.Reply(false, nil)
				continue
			}
			accepted++
		}
		out <- req
	}
}

// acceptableEnv reports whether an env request's payload names a variable
// keygate uses with a value of at most maxEnvValue bytes.
func acceptableEnv(payload []byte) bool {
	var kv struct{ Name, Value string }
	if err := gossh.Unmarshal(payload, &kv); err != nil {
		return false
	}
	return acceptedEnv[kv.Name] && len(kv.Value) <= maxEnvValue
}
