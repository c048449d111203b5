package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
)

// A backup is one gzip-compressed tar file, private (0600), written whole
// or not at all:
//
//	manifest.json                        what is in it (first)
//	keystore/keygate.db                  SQLite: a VACUUM INTO snapshot
//	keystore/export.json                 PostgreSQL: keygate's logical export
//	host-keys/ssh_host_*_key[.pub]       the SSH host keys
//	admin-token                          the first start's token file, if any
//	repositories/<full path>.bundle      --with-repositories: git bundles
const backupFormat = "keygate-backup/1"

// hostKeyFiles are the data dir's SSH host key files.
var hostKeyFiles = []string{"ssh_host_ed25519_key", "ssh_host_ecdsa_key", "ssh_host_rsa_key"}

type backupManifest struct {
	Format         string       `json:"format"`
	KeygateVersion string       `json:"keygate_version"`
	CreatedAt      time.Time    `json:"created_at"`
	Backend        string       `json:"backend"`
	SchemaVersion  int64        `json:"schema_version"`
	Keystore       string       `json:"keystore"` // the member holding it
	HostKeys       []string     `json:"host_keys"`
	AdminToken     bool         `json:"admin_token"`
	Repositories   []backupRepo `json:"repositories"`
}

type backupRepo struct {
	Path   string `json:"path"`             // the project's full path
	Bundle string `json:"bundle,omitempty"` // empty for a repository without refs
	Head   string `json:"head,omitempty"`   // refs/heads/main
}

// runBackup: keygate backup --output FILE [--with-repositories].
func runBackup(args []string, stdout, stderr io.Writer) int {
	var c dbConfig
	var output string
	var withRepos bool
	return runOneShot(args, stdout, stderr, "backup",
		func(a []string) error {
			err := parseOneShot("backup", a, stderr, &c, func(fs *flag.FlagSet) {
				fs.StringVar(&output, "output", "", "write the backup to FILE (mode 0600; it holds host private keys and token digests)")
				fs.BoolVar(&withRepos, "with-repositories", false, "add every git repository (each one consistent: a git bundle of its refs)")
			})
			if err == nil && output == "" {
				err = errors.New("--output FILE is required")
			}
			return err
		},
		func(ctx context.Context) error {
			dsn, err := c.dsn(true)
			if err != nil {
				return err
			}
			m, err := writeBackup(ctx, &c, dsn, output, withRepos)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "backup of %s (%s, schema version %d): %d host keys, %d repositories, written to %s\n",
				where(dsn), m.Backend, m.SchemaVersion, len(m.HostKeys)/2, len(m.Repositories), output)
			return nil
		})
}

func writeBackup(ctx context.Context, c *dbConfig, dsn, output string, withRepos bool) (*backupManifest, error) {
	s, err := c.open(ctx, dsn, true, false)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	current, _, err := s.SchemaVersion(ctx)
	if err != nil {
		return nil, err
	}
	scratch, err := os.MkdirTemp(filepath.Dir(output), ".keygate-backup-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	m := &backupManifest{Format: backupFormat, KeygateVersion: version, CreatedAt: time.Now().UTC().Truncate(time.Second),
		Backend: s.Backend(), SchemaVersion: current, Repositories: []backupRepo{}}
	files := map[string]string{} // member → file in scratch or the data dir

	// The keystore first: one consistent snapshot while writes go on.
	if s.Backend() == "sqlite" {
		snap := filepath.Join(scratch, "keygate.db")
		if err := s.SnapshotSQLite(ctx, snap); err != nil {
			return nil, err
		}
		m.Keystore, files["keystore/keygate.db"] = "keystore/keygate.db", snap
	} else {
		exp := filepath.Join(scratch, "export.json")
		f, err := os.OpenFile(exp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		err = s.Export(ctx, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
		m.Keystore, files["keystore/export.json"] = "keystore/export.json", exp
	}
	for _, name := range hostKeyFiles {
		for _, f := range []string{name, name + ".pub"} {
			p := filepath.Join(c.DataDir, f)
			if _, err := os.Stat(p); err != nil {
				return nil, fmt.Errorf("host key %s: %w (back up the data dir keygate serve uses: --data-dir)", p, err)
			}
			m.HostKeys = append(m.HostKeys, f)
			files["host-keys/"+f] = p
		}
	}
	if p := filepath.Join(c.DataDir, "admin-token"); fileExists(p) {
		m.AdminToken, files["admin-token"] = true, p
	}
	if withRepos {
		repos, err := bundleRepositories(ctx, filepath.Join(c.DataDir, "repositories"), scratch)
		if err != nil {
			return nil, err
		}
		for _, r := range repos {
			if r.Bundle != "" {
				files[r.Bundle] = filepath.Join(scratch, filepath.FromSlash(r.Bundle))
			}
		}
		m.Repositories = repos
	}
	return m, writeArchive(output, m, files)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// gitForBackup is git with keygate's sealed environment and a private HOME.
func gitForBackup(ctx context.Context, home string, args ...string) (string, error) {
	gitBin, err := keystore.ResolveGit("git")
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, gitBin, args...)
	cmd.Env = keystore.GitEnv(home, gitBin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// bundleRepositories writes one git bundle per bare repository under root:
// `git bundle create --all` reads the refs once and packs what they reach,
// so each repository is consistent even while pushes go on.
func bundleRepositories(ctx context.Context, root, scratch string) ([]backupRepo, error) {
	home, err := keystore.PrepareGitHome(filepath.Join(scratch, "git-home"))
	if err != nil {
		return nil, err
	}
	var repos []backupRepo
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return fs.SkipAll
			}
			return err
		}
		if !d.IsDir() || !strings.HasSuffix(p, ".git") || !fileExists(filepath.Join(p, "HEAD")) {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		r := backupRepo{Path: filepath.ToSlash(strings.TrimSuffix(rel, ".git"))}
		if head, err := gitForBackup(ctx, home, "-C", p, "symbolic-ref", "HEAD"); err == nil {
			r.Head = strings.TrimSpace(head)
		}
		refs, err := gitForBackup(ctx, home, "-C", p, "for-each-ref", "--count=1", "--format=%(refname)")
		if err != nil {
			return err
		}
		if strings.TrimSpace(refs) != "" {
			r.Bundle = "repositories/" + r.Path + ".bundle"
			out := filepath.Join(scratch, filepath.FromSlash(r.Bundle))
			if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
				return err
			}
			if _, err := gitForBackup(ctx, home, "-C", p, "bundle", "create", "--quiet", out, "--all"); err != nil {
				return fmt.Errorf("repository %s: %w", r.Path, err)
			}
		}
		repos = append(repos, r)
		return fs.SkipDir
	})
	sort.Slice(repos, func(i, j int) bool { return repos[i].Path < repos[j].Path })
	return repos, err
}

// writeArchive writes the manifest and files to output atomically.
func writeArchive(output string, m *backupManifest, files map[string]string) error {
	tmp := output + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fail(err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o600, Size: int64(len(mb)), ModTime: m.CreatedAt, Typeflag: tar.TypeReg}); err != nil {
		return fail(err)
	}
	if _, err := tw.Write(mb); err != nil {
		return fail(err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := addFile(tw, name, files[name]); err != nil {
			return fail(fmt.Errorf("%s: %w", name, err))
		}
	}
	if err := tw.Close(); err != nil {
		return fail(err)
	}
	if err := gz.Close(); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, output)
}

func addFile(tw *tar.Writer, name, path string) error {
	src, err := os.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	mode := int64(0o600)
	if strings.HasSuffix(name, ".pub") {
		mode = 0o644
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: fi.Size(), ModTime: fi.ModTime(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	n, err := io.Copy(tw, src)
	if err == nil && n != fi.Size() {
		err = fmt.Errorf("changed while being read (%d of %d bytes)", n, fi.Size())
	}
	return err
}
