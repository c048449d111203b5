package main

import (
	"runtime/debug"
	"strings"
)

// nextRelease is the release the code on this branch becomes (CHANGELOG's
// [Unreleased]); builds that are not a tagged release say
// nextRelease-dev+COMMIT.
const nextRelease = "0.3.0"

// version is keygate's version: 0.x.y for a tagged release (scripts/build-deb
// and release builds set it with -ldflags "-X main.version=0.x.y"), else
// 0.x.y-dev+COMMIT, COMMIT from -ldflags (main.commit) or, for a plain `go build` in a
// checkout, from the build's VCS stamp (debug.ReadBuildInfo).
var version string

// commit is the commit the binary was built from, when the build says so
// (-ldflags "-X main.commit=…", as scripts/build-deb does); else the VCS
// stamp's.
var commit string

func init() {
	if version == "" {
		version = devVersion()
	}
}

// devVersion is nextRelease-dev+COMMIT (12 hex digits, ".dirty" for a
// build from a modified tree; "unknown" without a VCS stamp).
func devVersion() string {
	commit, dirty := vcsCommit()
	if commit == "" {
		commit = "unknown"
	}
	if dirty {
		commit += ".dirty"
	}
	return nextRelease + "-dev+" + commit
}

// vcsCommit is the commit the binary was built from (12 hex digits) and
// whether the tree was modified, from the build's VCS stamp.
func vcsCommit() (rev string, dirty bool) {
	if commit != "" {
		return commit, false
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", false
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
			if len(rev) > 12 {
				rev = rev[:12]
			}
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	return strings.TrimSpace(rev), dirty
}
