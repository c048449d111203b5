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
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/keygate/keygate/keystore"
)

// runRestore: keygate restore --input FILE brings a backup back into an
// empty data dir (and, with --db postgres://…, an empty database). It
// refuses a target that holds anything, and never merges.
func runRestore(args []string, stdout, stderr io.Writer) int {
	var c dbConfig
	var input string
	return runOneShot(args, stdout, stderr, "restore",
		func(a []string) error {
			err := parseOneShot("restore", a, stderr, &c, func(fs *flag.FlagSet) {
				fs.StringVar(&input, "input", "", "the backup file written by keygate backup")
			})
			if err == nil && input == "" {
				err = errors.New("--input FILE is required")
			}
			return err
		},
		func(ctx context.Context) error {
			m, err := restoreBackup(ctx, &c, input, stderr)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "restored %s (keygate %s, %s, schema version %d, taken %s): the keystore, %d host keys, %d repositories into %s\n",
				input, m.KeygateVersion, m.Backend, m.SchemaVersion, m.CreatedAt.Format("2006-01-02 15:04:05Z"),
				len(m.HostKeys)/2, len(m.Repositories), c.DataDir)
			return nil
		})
}

// extractBackup unpacks FILE into dir, checking every name, and returns
// its manifest.
func extractBackup(input, dir string) (*backupManifest, error) {
	f, err := os.Open(input)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s is not a keygate backup: %w", input, err)
	}
	tr := tar.NewReader(gz)
	var m *backupManifest
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", input, err)
		}
		name := path.Clean(h.Name)
		if h.Typeflag != tar.TypeReg || strings.HasPrefix(name, "../") || path.IsAbs(name) || name == ".." {
			return nil, fmt.Errorf("%s: unexpected member %q", input, h.Name)
		}
		if m == nil {
			if name != "manifest.json" {
				return nil, fmt.Errorf("%s is not a keygate backup (no manifest first)", input)
			}
			m = &backupManifest{}
			if err := json.NewDecoder(io.LimitReader(tr, 64<<20)).Decode(m); err != nil || m.Format != backupFormat {
				return nil, fmt.Errorf("%s is not a keygate backup (manifest %q: %v)", input, m.Format, err)
			}
			continue
		}
		out := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
			return nil, err
		}
		w, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(w, tr)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", input, name, err)
		}
	}
	if m == nil {
		return nil, fmt.Errorf("%s is an empty archive, not a keygate backup", input)
	}
	return m, nil
}

// emptyDir reports whether dir exists, and refuses one that holds anything
// but the CA encryption key.
func emptyDir(dir string) (exists bool, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("--data-dir %s: %w", dir, err)
	}
	// The CA encryption key is kept apart from backups and may be put in
	// place before the restore.
	kept := entries[:0]
	for _, e := range entries {
		if e.Name() != defaultCAKeyFile {
			kept = append(kept, e)
		}
	}
	entries = kept
	if len(entries) > 0 {
		names := []string{}
		for i, e := range entries {
			if i == 5 {
				names = append(names, "…")
				break
			}
			names = append(names, e.Name())
		}
		return true, fmt.Errorf("--data-dir %s is not empty (%s): restore only into a new, empty data dir, so nothing is merged or overwritten",
			dir, strings.Join(names, ", "))
	}
	return true, nil
}

func restoreBackup(ctx context.Context, c *dbConfig, input string, stderr io.Writer) (m *backupManifest, err error) {
	existed, err := emptyDir(c.DataDir)
	if err != nil {
		return nil, err
	}
	dsn, err := resolveDB(c.DB, c.DataDir)
	if err != nil {
		return nil, err
	}
	file := sqlitePath(dsn)
	if file != "" && fileExists(file) {
		return nil, fmt.Errorf("--db %s already exists: restore only into a new database", file)
	}
	if file != "" && c.DB != "" && !fileExists(filepath.Dir(file)) {
		return nil, fmt.Errorf("--db %s: its directory %s does not exist (keygate never creates one)", file, filepath.Dir(file))
	}
	scratch, err := os.MkdirTemp("", "keygate-restore-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	if m, err = extractBackup(input, scratch); err != nil {
		return nil, err
	}
	if latest := keystore.LatestSchema(); m.SchemaVersion > latest {
		return nil, fmt.Errorf("the backup's schema is at version %d (keygate %s), newer than this keygate %s knows (%d): restore it with keygate %s or newer",
			m.SchemaVersion, m.KeygateVersion, version, latest, m.KeygateVersion)
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && !existed {
			os.RemoveAll(c.DataDir) // a failed restore leaves nothing behind
		}
	}()

	// The keystore.
	src := filepath.Join(scratch, filepath.FromSlash(m.Keystore))
	switch {
	case m.Keystore == "keystore/keygate.db" && file != "":
		// SQLite to SQLite: the snapshot is the database (keygate serve
		// migrates it forward on its first start, logging each step).
		if err := copyFile(src, file, 0o600); err != nil {
			return nil, err
		}
	case m.Keystore == "keystore/keygate.db":
		// SQLite to PostgreSQL: migrate the snapshot (a scratch copy), then
		// export it into the new database.
		snap, err := keystore.Open(ctx, keystore.Config{DSN: src, MustExist: true})
		if err != nil {
			return nil, fmt.Errorf("the backup's keystore: %w", err)
		}
		exp := filepath.Join(scratch, "export.json")
		err = exportTo(ctx, snap, exp)
		snap.Close()
		if err != nil {
			return nil, err
		}
		if err := importInto(ctx, dsn, exp, 0); err != nil {
			return nil, err
		}
	default:
		if err := importInto(ctx, dsn, src, m.SchemaVersion); err != nil {
			return nil, err
		}
	}

	// The host keys and the admin token, private as keygate makes them.
	for _, f := range m.HostKeys {
		mode := os.FileMode(0o600)
		if strings.HasSuffix(f, ".pub") {
			mode = 0o644
		}
		if err := copyFile(filepath.Join(scratch, "host-keys", f), filepath.Join(c.DataDir, f), mode); err != nil {
			return nil, err
		}
	}
	if m.AdminToken {
		if err := copyFile(filepath.Join(scratch, "admin-token"), filepath.Join(c.DataDir, "admin-token"), 0o600); err != nil {
			return nil, err
		}
	}

	// The repositories.
	if len(m.Repositories) > 0 {
		repos := keystore.Repos{Root: filepath.Join(c.DataDir, "repositories"), Home: filepath.Join(c.DataDir, "git-home")}
		home, err := keystore.PrepareGitHome(repos.Home)
		if err != nil {
			return nil, err
		}
		for _, r := range m.Repositories {
			if err := repos.Create(ctx, r.Path); err != nil {
				return nil, err
			}
			dir := repos.Path(r.Path)
			if r.Bundle != "" {
				bundle := filepath.Join(scratch, filepath.FromSlash(r.Bundle))
				if _, err := gitForBackup(ctx, home, "-C", dir, "fetch", "--quiet", bundle, "+refs/*:refs/*"); err != nil {
					return nil, fmt.Errorf("repository %s: %w", r.Path, err)
				}
			}
			if r.Head != "" {
				if _, err := gitForBackup(ctx, home, "-C", dir, "symbolic-ref", "HEAD", r.Head); err != nil {
					return nil, fmt.Errorf("repository %s: %w", r.Path, err)
				}
			}
		}
	}
	giveBack(c.DataDir, file, existed, stderr)
	return m, nil
}

// giveBack: a restore run as root into a data dir that belongs to another
// user (keygate's) hands everything it wrote to that user, so keygate does
// not start on root's read-only files.
func giveBack(dataDir, dbFile string, existed bool, stderr io.Writer) {
	if os.Geteuid() != 0 {
		return
	}
	fi, err := os.Stat(dataDir)
	st, ok := fi.Sys().(*syscall.Stat_t)
	if err != nil || !ok || !existed || st.Uid == 0 {
		fmt.Fprintf(stderr, "keygate restore: run as root into a data dir root owns: before keygate runs as another user, give it the files: chown -R USER %s\n", dataDir)
		return
	}
	paths := []string{dataDir}
	if dbFile != "" && !strings.HasPrefix(dbFile, dataDir+string(filepath.Separator)) {
		paths = append(paths, dbFile)
	}
	for _, root := range paths {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil {
				err = os.Lchown(p, int(st.Uid), int(st.Gid))
			}
			return err
		})
	}
	fmt.Fprintf(stderr, "keygate restore: run as root: the restored files belong to the data dir's owner, %s\n", describeUID(int(st.Uid)))
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func exportTo(ctx context.Context, s *keystore.Store, file string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = s.Export(ctx, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// importInto loads an export at schema version at (0: this build's) into
// the new keystore dsn, then migrates it the rest of the way.
func importInto(ctx context.Context, dsn, exportFile string, at int64) error {
	s, err := keystore.Open(ctx, keystore.Config{DSN: dsn, NoMigrate: true})
	if err != nil {
		return dbError(where(dsn), err)
	}
	defer s.Close()
	if at == 0 {
		at = keystore.LatestSchema()
	}
	if err := s.MigrateTo(ctx, at); err != nil {
		return err
	}
	f, err := os.Open(exportFile)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := s.Import(ctx, f); err != nil {
		if errors.Is(err, keystore.ErrNotEmpty) {
			return fmt.Errorf("%s is not empty: restore only into a new, empty database: %w", where(dsn), err)
		}
		return err
	}
	return s.Migrate(ctx)
}
