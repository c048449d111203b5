package keystore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// Git LFS: objects are files, content-addressed by their SHA-256, in the
// repository's own directory (<repo>.git/lfs/objects/ab/cd/<oid>), so they
// move with the repository and are deleted with the project. Locks are
// rows (lfs_locks), shared by every node.

// ErrLFSCorrupt is an upload whose content does not match the id and size
// the client announced.
var ErrLFSCorrupt = errors.New("keystore: LFS object does not match its id and size")

// ErrLFSOverlong is an upload that went on past the size the client
// announced; the caller stops reading.
var ErrLFSOverlong = errors.New("keystore: LFS object longer than announced")

var lfsOIDRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ValidLFSOID reports whether oid is a Git LFS object id: 64 lower-case
// hex digits (SHA-256). Only such ids ever name a file.
func ValidLFSOID(oid string) bool { return lfsOIDRE.MatchString(oid) }

// LFSStorage holds one repository's Git LFS objects.
type LFSStorage struct {
	Dir string // <repo>.git/lfs; "" stores nothing
}

// LFS returns the LFS storage of a project's repository.
func (r Repos) LFS(fullPath string) LFSStorage {
	dir := r.Path(fullPath)
	if dir == "" {
		return LFSStorage{}
	}
	return LFSStorage{Dir: filepath.Join(dir, "lfs")}
}

func (s LFSStorage) path(oid string) (string, error) {
	if s.Dir == "" || !ValidLFSOID(oid) {
		return "", fmt.Errorf("keystore: invalid LFS object id %q", oid)
	}
	return filepath.Join(s.Dir, "objects", oid[0:2], oid[2:4], oid), nil
}

// Size returns the size of a stored object; fs.ErrNotExist when there is
// none.
func (s LFSStorage) Size(oid string) (int64, error) {
	p, err := s.path(oid)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// Open opens a stored object for reading and returns its size;
// fs.ErrNotExist when there is none.
func (s LFSStorage) Open(oid string) (*os.File, int64, error) {
	p, err := s.path(oid)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// Put stores an object from r, which must hold exactly size bytes whose
// SHA-256 is oid: it reads at most size+1 bytes, to a temporary file that
// becomes the object only once verified (ErrLFSCorrupt otherwise;
// ErrLFSOverlong when r had more). An object already stored is kept.
func (s LFSStorage) Put(oid string, size int64, r io.Reader) (err error) {
	final, err := s.path(oid)
	if err != nil {
		return err
	}
	if size < 0 {
		return ErrLFSCorrupt
	}
	tmpDir := filepath.Join(s.Dir, "tmp")
	if err := os.MkdirAll(tmpDir, 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(tmpDir, oid[:16]+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, size+1))
	switch {
	case err != nil:
		return err
	case n > size:
		return ErrLFSOverlong
	case n != size || hex.EncodeToString(h.Sum(nil)) != oid:
		return ErrLFSCorrupt
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o750); err != nil {
		return err
	}
	if _, err := os.Stat(final); err == nil {
		return nil // the same content, by its id
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return err
	}
	tmp = nil
	return nil
}

// LFSLock is a Git LFS file lock.
type LFSLock struct {
	ID        int64
	ProjectID int64
	UserID    int64
	Username  string
	Path      string
	RefName   string
	CreatedAt time.Time
}

// MaxLFSLockPath bounds a lock's path.
const MaxLFSLockPath = 4096

// validLockPath refuses paths the line-based protocol could not carry
// back: empty, too long, or with control characters.
func validLockPath(p string) error {
	if p == "" || len(p) > MaxLFSLockPath || strings.IndexFunc(p, unicode.IsControl) >= 0 {
		return invalid("path", fmt.Sprintf("must be 1 to %d bytes without control characters", MaxLFSLockPath))
	}
	return nil
}

const lfsLockCols = `l.id, l.project_id, l.user_id, u.username, l.path, l.ref_name, l.created_at`
const lfsLockFrom = ` FROM lfs_locks l JOIN users u ON u.id = l.user_id`

func scanLFSLock(row rowScanner) (LFSLock, error) {
	var l LFSLock
	var created int64
	if err := row.Scan(&l.ID, &l.ProjectID, &l.UserID, &l.Username, &l.Path, &l.RefName, &created); err != nil {
		return LFSLock{}, err
	}
	l.CreatedAt = fromMS(created)
	return l, nil
}

// LFSLockConflict is CreateLFSLock's error when the path is locked: it
// names the lock that holds it.
type LFSLockConflict struct{ Lock LFSLock }

func (e *LFSLockConflict) Error() string {
	return fmt.Sprintf("keystore: %s is locked by %s", e.Lock.Path, e.Lock.Username)
}
func (e *LFSLockConflict) Is(target error) bool { return target == ErrConflict }

// CreateLFSLock locks path in a project for userID (an audit event
// lfs_lock_created); a path already locked is an *LFSLockConflict.
func (s *Store) CreateLFSLock(ctx context.Context, a Actor, projectID, userID int64, path, refName string) (*LFSLock, error) {
	if err := validLockPath(path); err != nil {
		return nil, err
	}
	if len(refName) > 1024 || strings.IndexFunc(refName, unicode.IsControl) >= 0 {
		return nil, invalid("refname", "must be at most 1024 bytes without control characters")
	}
	var out LFSLock
	err := s.writeTx(ctx, a, false, func(t *tx) error {
		l, err := scanLFSLock(t.queryRow(ctx, `SELECT `+lfsLockCols+lfsLockFrom+` WHERE l.project_id = ? AND l.path = ?`, projectID, path))
		if err == nil {
			return &LFSLockConflict{Lock: l}
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		id, err := t.insert(ctx, `INSERT INTO lfs_locks (project_id, user_id, path, ref_name, created_at) VALUES (?, ?, ?, ?, ?)`,
			projectID, userID, path, refName, ms(t.now))
		if err != nil {
			return err
		}
		if out, err = scanLFSLock(t.queryRow(ctx, `SELECT `+lfsLockCols+lfsLockFrom+` WHERE l.id = ?`, id)); err != nil {
			return err
		}
		return t.audit(ctx, "lfs_lock_created", "project", projectID, map[string]any{"lock_id": id, "path": path, "refname": refName})
	})
	if err != nil {
		var c *LFSLockConflict
		if !errors.As(err, &c) {
			// Two nodes locking at once: the unique index decides.
			if l, lerr := s.LFSLockByPath(ctx, projectID, path); lerr == nil && l.UserID != userID {
				return nil, &LFSLockConflict{Lock: *l}
			}
		}
		return nil, err
	}
	return &out, nil
}

// LFSLock returns a project's lock by id.
func (s *Store) LFSLock(ctx context.Context, projectID, id int64) (*LFSLock, error) {
	l, err := scanLFSLock(s.queryRow(ctx, `SELECT `+lfsLockCols+lfsLockFrom+` WHERE l.project_id = ? AND l.id = ?`, projectID, id))
	if err != nil {
		return nil, s.lockErr(err)
	}
	return &l, nil
}

// LFSLockByPath returns the lock on a path of a project.
func (s *Store) LFSLockByPath(ctx context.Context, projectID int64, path string) (*LFSLock, error) {
	l, err := scanLFSLock(s.queryRow(ctx, `SELECT `+lfsLockCols+lfsLockFrom+` WHERE l.project_id = ? AND l.path = ?`, projectID, path))
	if err != nil {
		return nil, s.lockErr(err)
	}
	return &l, nil
}

func (s *Store) lockErr(err error) error {
	if errors.Is(err, sql.ErrNoRows) || errors.Is(err, ErrNotFound) {
		return notFound("LFS lock")
	}
	return err
}

// LFSLocks lists a project's locks with ids above after, in id order, at
// most limit of them.
func (s *Store) LFSLocks(ctx context.Context, projectID, after int64, limit int) ([]LFSLock, error) {
	rows, err := s.query(ctx, `SELECT `+lfsLockCols+lfsLockFrom+` WHERE l.project_id = ? AND l.id > ? ORDER BY l.id LIMIT ?`,
		projectID, after, limit)
	return scanRows(rows, err, scanLFSLock)
}

// DeleteLFSLock removes a project's lock (an audit event lfs_lock_deleted;
// forced when someone other than its holder removed it).
func (s *Store) DeleteLFSLock(ctx context.Context, a Actor, projectID, id int64) (*LFSLock, error) {
	var out LFSLock
	err := s.writeTx(ctx, a, false, func(t *tx) error {
		l, err := scanLFSLock(t.queryRow(ctx, `SELECT `+lfsLockCols+lfsLockFrom+` WHERE l.project_id = ? AND l.id = ?`, projectID, id))
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("LFS lock")
		} else if err != nil {
			return err
		}
		if err := t.execOne(ctx, "LFS lock", `DELETE FROM lfs_locks WHERE id = ?`, id); err != nil {
			return err
		}
		out = l
		return t.audit(ctx, "lfs_lock_deleted", "project", projectID, map[string]any{
			"lock_id": id, "path": l.Path, "owner_id": l.UserID, "forced": a.UserID != l.UserID,
		})
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}
