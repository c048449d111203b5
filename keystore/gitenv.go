package keystore

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// SealedPath is the PATH every git keygate runs sees (after the directory
// of the git binary itself): system directories only, never keygate's own
// PATH, which may name directories other accounts can write.
const SealedPath = "/usr/local/bin:/usr/bin:/bin"

// GitEnv returns the whole environment for a git process that keygate
// runs, built from nothing: git reads configuration (and so can be made to
// run commands: uploadpack.packObjectsHook, core.hooksPath,
// tar.<fmt>.command, init.templateDir) from $HOME/.gitconfig,
// $XDG_CONFIG_HOME/git/config, the system file and GIT_CONFIG_* variables.
// None of those reach it: HOME is home (private to keygate), the global and
// system files are off, and no variable of keygate's own environment is
// passed on. gitBin is the git binary that will run; its directory comes
// first in PATH so that git finds its own helpers. Callers append
// GIT_PROTOCOL, the only value a client may set.
func GitEnv(home, gitBin string) []string {
	path := SealedPath
	if dir := filepath.Dir(gitBin); filepath.IsAbs(gitBin) && !strings.Contains(":"+SealedPath+":", ":"+dir+":") {
		path = dir + ":" + path
	}
	return []string{
		"PATH=" + path,
		"HOME=" + home,
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"LANG=C",
	}
}

// serveConfig is the configuration every git that serves a client runs
// with, as GitLab (Gitaly) sets it:
//
//   - uploadpack.allowFilter: partial clone (--filter=blob:none,
//     blob:limit=N, tree:0) over protocol v0 and v2;
//   - uploadpack.allowAnySHA1InWant: a client may fetch any object of the
//     repository by its name over protocol v0 too. Protocol v2's
//     upload-pack already serves any object (it advertises no refs to
//     check wants against), so the reachable variant
//     (allowReachableSHA1InWant) would make v0 and v2 differ without
//     hiding anything from a reader, and costs a reachability walk for
//     every such request. Read access is to the whole repository: an
//     object that must not be read again has to leave it (git gc --prune).
//   - receive.advertisePushOptions: git push -o; keygate records the
//     options in the push's audit event.
var serveConfig = []string{
	"uploadpack.allowFilter=true",
	"uploadpack.allowAnySHA1InWant=true",
	"receive.advertisePushOptions=true",
}

// GitServeArgs returns the -c arguments that go before the subcommand of
// every git that serves a client (upload-pack, receive-pack,
// upload-archive). Command-line settings win over a repository's own
// config, so every repository gets them, existing ones included, and none
// can turn them off.
func GitServeArgs() []string {
	out := make([]string, 0, 2*len(serveConfig))
	for _, kv := range serveConfig {
		out = append(out, "-c", kv)
	}
	return out
}

// PrepareGitHome creates git's private HOME (mode 0700; an existing
// directory is tightened to 0700) and returns its absolute path.
func PrepareGitHome(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", fmt.Errorf("keystore: git home: %w", err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("keystore: git home: %w", err)
	}
	if fi.Mode().Perm() != 0o700 {
		// Only when needed: a read-only data dir that is already private
		// must not fail the start.
		if err := os.Chmod(abs, 0o700); err != nil {
			return "", fmt.Errorf("keystore: git home: %w", err)
		}
	}
	return abs, nil
}

// ResolveGit returns the absolute path of the git binary (name, or "git"
// from keygate's PATH), resolved once at start so that later runs never
// search PATH again.
func ResolveGit(name string) (string, error) {
	if name == "" {
		name = "git"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", err
	}
	return filepath.Abs(p)
}

// PackObjectsHookArgs are git's arguments (before the subcommand) that make
// upload-pack run hook — a shell command to which git appends "git
// pack-objects …" — instead of pack-objects. git takes
// uploadpack.packObjectsHook only from protected configuration: the command
// line here, never a repository's config, and GitEnv keeps the global and
// system files away; so only keygate sets it.
func PackObjectsHookArgs(hook string) []string {
	return []string{"-c", "uploadpack.packObjectsHook=" + hook}
}
