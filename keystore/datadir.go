package keystore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrDataDirBusy: another process holds the data dir in a way that
// excludes this one.
var ErrDataDirBusy = errors.New("keystore: data dir busy")

// LockDataDir takes DIR/keygate.lock: shared for `keygate serve` (several
// nodes may share a data dir), exclusive for a tool that rewrites the
// database behind keygate's back (keygate-load seed). It never blocks:
// a conflicting holder returns ErrDataDirBusy. The lock goes with the
// process, or with release.
func LockDataDir(dir string, exclusive bool) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "keygate.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		if errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES) {
			return func() {}, nil // a read-only data dir: nothing can rewrite it either
		}
		return nil, err
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is in use by another process", ErrDataDirBusy, dir)
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}
