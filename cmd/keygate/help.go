package main

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// serveGroups sorts `keygate serve`'s flags for -h: an operator looks for
// "where does it listen", "where is the data", "TLS", "limits", "logs".
// A new flag goes in one of them (TestServeHelpGroupsFlags fails until it
// does).
var serveGroups = []struct {
	title string
	flags []string
}{
	{"Listeners", []string{"ssh-addr", "http-addr", "metrics-addr", "hostname", "host-certificate", "host-certificate-names", "git-user", "external-url", "trusted-proxies",
		"proxy-protocol", "proxy-protocol-trusted"}},
	{"Storage", []string{"data-dir", "db", "no-migrate", "index-poll-interval", "index-max-lag"}},
	{"TLS (the REST API; also from systemd credentials tls-cert.pem and tls-key.pem)", []string{"tls-cert", "tls-key"}},
	{"Limits", []string{"max-body-bytes", "login-grace-time", "max-auth-tries", "max-auth-requests", "max-sessions",
		"max-startups", "per-source-max-startups", "per-source-max-auth-failures", "per-source-penalty-window",
		"per-source-trust-window", "per-source-exempt", "max-connections-per-principal", "max-git-processes-per-principal",
		"keepalive-interval", "keepalive-count-max", "idle-timeout", "shutdown-grace", "lfs-max-object-size"}},
	{"Git", []string{"pack-cache-dir", "pack-cache-max-bytes", "pack-cache-max-entry-bytes", "pack-cache-ttl", "pack-cache-reader-timeout"}},
	{"Certificates", []string{"cert-clock-skew", "cert-require-principals", "cert-max-ttl", "ca-key-file", "ca-key-credential"}},
	{"Audit streaming (docs/audit-streaming.md)", []string{"audit-stream-file", "audit-stream-max-backoff", "audit-stream-drop-after", "audit-stream-poll-interval"}},
	{"Logging", []string{"log-format", "log-level"}},
}

// printServeHelp writes serve's flags by group, each with its env variable
// (in its usage text) and default.
func printServeHelp(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprint(w, `usage: keygate serve [flags]

Runs the SSH server and the REST API. Every flag has an environment variable
(named with each flag); a flag given on the command line wins over it.
`)
	seen := map[string]bool{}
	for _, g := range serveGroups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, name := range g.flags {
			f := fs.Lookup(name)
			if f == nil {
				continue
			}
			seen[name] = true
			printFlag(w, f)
		}
	}
	var rest []string
	fs.VisitAll(func(f *flag.Flag) {
		if !seen[f.Name] {
			rest = append(rest, f.Name)
		}
	})
	if len(rest) > 0 {
		sort.Strings(rest)
		fmt.Fprint(w, "\nOther:\n")
		for _, name := range rest {
			printFlag(w, fs.Lookup(name))
		}
	}
	fmt.Fprint(w, `
First start: KEYGATE_ADMIN_TOKEN (no flag, so it stays out of the process list) is root's API
token on a keystore without an admin; without it keygate generates one and saves it in
DATA_DIR/admin-token (mode 0600), never in the log. It is ignored afterwards: keygate
reset-admin-token is the way back in. Operations: docs/operations.md; the admin command
line: docs/cli.md.
`)
}

func printFlag(w io.Writer, f *flag.Flag) {
	kind, usage := flag.UnquoteUsage(f)
	line := "  --" + f.Name
	if kind != "" {
		line += " " + kind
	}
	def := f.DefValue
	switch {
	case def == "" || def == "false" || def == "0" || def == "0s":
		def = ""
	case kind == "string":
		def = fmt.Sprintf(" (default %q)", def)
	default:
		def = " (default " + def + ")"
	}
	fmt.Fprintf(w, "%s\n      %s%s\n", line, strings.ReplaceAll(usage, "\n", "\n      "), def)
}
