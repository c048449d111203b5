package main

import (
	"bytes"
	"errors"
	"flag"
	"regexp"
	"strings"
	"testing"
)

// TestServeHelpGroupsFlags: `keygate serve -h` lists every flag once, under
// its group (listeners, storage, TLS, limits, logging), each naming its
// environment variable, and says what KEYGATE_ADMIN_TOKEN does.
func TestServeHelpGroupsFlags(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if _, err := parseServe([]string{"-h"}, &buf); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseServe -h: %v", err)
	}
	help := buf.String()
	for _, h := range []string{"\nListeners:\n", "\nStorage:\n", "\nTLS ", "\nLimits:\n", "\nLogging:\n", "KEYGATE_ADMIN_TOKEN", "DATA_DIR/admin-token"} {
		if !strings.Contains(help, h) {
			t.Errorf("serve -h lacks %q", h)
		}
	}
	if strings.Contains(help, "\nOther:\n") {
		t.Errorf("a flag is in no group (add it to serveGroups in help.go):\n%s", help[strings.Index(help, "\nOther:\n"):])
	}
	flagLine := regexp.MustCompile(`(?m)^  --([a-z-]+)`)
	names := flagLine.FindAllStringSubmatch(help, -1)
	if len(names) < 30 {
		t.Fatalf("only %d flags in serve -h:\n%s", len(names), help)
	}
	seen := map[string]bool{}
	blocks := flagLine.Split(help, -1)[1:]
	for i, m := range names {
		if seen[m[1]] {
			t.Errorf("--%s listed twice", m[1])
		}
		seen[m[1]] = true
		want := "(env KEYGATE_" + strings.ToUpper(strings.ReplaceAll(m[1], "-", "_")) + ")"
		if !strings.Contains(blocks[i], want) {
			t.Errorf("--%s does not name %s:%s", m[1], want, blocks[i])
		}
	}
	for _, f := range []string{"ssh-addr", "http-addr", "db", "data-dir", "tls-cert", "tls-key", "log-format", "max-body-bytes", "no-migrate"} {
		if !seen[f] {
			t.Errorf("--%s missing from serve -h", f)
		}
	}
}
