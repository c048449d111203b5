package sshd

import (
	"path/filepath"
	"strings"
	"testing"

	shlex "github.com/anmitsu/go-shlex"
)

// FuzzGitCommand feeds the SSH exec command line through the same split
// gliderlabs does (Session.Command) and keygate's repository path parser:
// no panic, and an accepted path is relative, clean, without ".." or
// ".git" segments, and stays under the repositories root.
func FuzzGitCommand(f *testing.F) {
	for _, s := range []string{
		"git-upload-pack 'group/project.git'",
		`git-receive-pack "/group/sub/project"`,
		"git-upload-archive ~/group/project.git",
		"git-upload-pack '../../etc/passwd'",
		"git-upload-pack 'group/../../x.git'",
		"git-upload-pack 'a/b.git/c'",
		"git-upload-pack 'group/.hidden'",
		`git-upload-pack "grp/proj\" extra"`,
		"git-upload-pack 'g/p' ; rm -rf /",
		"git-upload-pack '" + strings.Repeat("a/", 600) + "p'",
		"git-upload-pack 'g/p\x00'",
	} {
		f.Add(s)
	}
	const root = "/srv/keygate/repositories"
	f.Fuzz(func(t *testing.T, raw string) {
		args, err := shlex.Split(raw, true)
		if err != nil || len(args) != 2 {
			return
		}
		if _, ok := gitServices[args[0]]; !ok {
			return
		}
		p := parseRepoPath(args[1])
		if p == "" {
			return
		}
		if strings.HasPrefix(p, "/") || strings.HasPrefix(p, "~") || strings.HasSuffix(p, ".git") || strings.ContainsRune(p, 0) {
			t.Fatalf("%q -> %q: not a clean relative path", args[1], p)
		}
		for _, seg := range strings.Split(p, "/") {
			if seg == "" || seg == "." || seg == ".." || strings.HasPrefix(seg, ".") || strings.HasSuffix(seg, ".git") {
				t.Fatalf("%q -> %q: bad segment %q", args[1], p, seg)
			}
		}
		full := filepath.Join(root, filepath.FromSlash(p)+".git")
		if !strings.HasPrefix(full, root+"/") || filepath.Clean(full) != full {
			t.Fatalf("%q -> %q escapes the root: %s", args[1], p, full)
		}
	})
}
