package sshd

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/charmbracelet/git-lfs-transfer/transfer"

	"github.com/keygate/keygate/keystore"
)

// Git LFS locks over SSH: one per path per project, held by a person, in
// the keystore (lfs_locks). Listing needs read; locking and unlocking an
// upload session (write). A developer removes their own locks, a
// maintainer (or an admin) anyone's.

// listLocks answers list-lock: a project's locks by id (cursor: the last
// id seen), one path's or one id's; with owner ours/theirs in an upload
// session, as git lfs push verifies them.
func (ls *lfsSession) listLocks() (transfer.Status, error) {
	list, err := ls.pl.ReadPacketListToFlush()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", transfer.ErrParseError, err)
	}
	args, err := transfer.ParseArgs(list)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", transfer.ErrParseError, err)
	}
	limit, _ := strconv.Atoi(args[transfer.LimitKey])
	if limit <= 0 || limit > lfsListLimit {
		limit = lfsListLimit
	}
	var after int64
	if c := args[transfer.CursorKey]; c != "" {
		if after, err = strconv.ParseInt(c, 10, 64); err != nil || after < 0 {
			return nil, fmt.Errorf("%w: invalid cursor", transfer.ErrParseError)
		}
	}
	locks := []keystore.LFSLock{}
	if db := ls.s.cfg.LFSLocks; db != nil {
		switch {
		case args[transfer.PathKey] != "":
			l, err := db.LFSLockByPath(ls.ctx, ls.project.ID, args[transfer.PathKey])
			if err == nil && l.ID > after {
				locks = append(locks, *l)
			} else if err != nil && !errors.Is(err, keystore.ErrNotFound) {
				return nil, err
			}
		case args["id"] != "":
			n, _ := strconv.ParseInt(args["id"], 10, 64)
			l, err := db.LFSLock(ls.ctx, ls.project.ID, n)
			if err == nil && l.ID > after {
				locks = append(locks, *l)
			} else if err != nil && !errors.Is(err, keystore.ErrNotFound) {
				return nil, err
			}
		default:
			if locks, err = db.LFSLocks(ls.ctx, ls.project.ID, after, limit); err != nil {
				return nil, err
			}
		}
	}
	msgs := []string{}
	for i := range locks {
		spec, _ := (&lfsLock{ls: ls, l: locks[i]}).AsLockSpec(ls.op == transfer.UploadOperation)
		msgs = append(msgs, spec...)
	}
	var more []string
	if len(locks) == limit {
		more = append(more, "next-cursor="+strconv.FormatInt(locks[len(locks)-1].ID, 10))
	}
	return transfer.NewSuccessStatusWithArgs(msgs, more...), nil
}

// lock answers lock: the path locked for the session's user, or 409 with
// the lock that holds it and who holds it.
func (ls *lfsSession) lock() (transfer.Status, error) {
	list, err := ls.pl.ReadPacketListToFlush()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", transfer.ErrParseError, err)
	}
	args, err := transfer.ParseArgs(list)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", transfer.ErrParseError, err)
	}
	l, err := lfsLocks{ls}.Create(args[transfer.PathKey], args[transfer.RefnameKey])
	if errors.Is(err, transfer.ErrConflict) && l != nil {
		return transfer.NewStatusWithArgs(transfer.StatusConflict,
			[]string{fmt.Sprintf("%s is already locked by %s", l.Path(), l.OwnerName())}, l.AsArguments()...), nil
	}
	if err != nil {
		return nil, err
	}
	return transfer.NewStatusWithArgs(transfer.StatusCreated, nil, l.AsArguments()...), nil
}

// mayLock refuses locking outside an upload session and to deploy keys (a
// lock belongs to a person).
func (ls *lfsSession) mayLock() error {
	switch {
	case ls.op != transfer.UploadOperation:
		return fmt.Errorf("%w: locking needs an upload session", transfer.ErrForbidden)
	case ls.id.IsDeployKey():
		return fmt.Errorf("%w: a deploy key cannot lock files: a lock belongs to a person", transfer.ErrForbidden)
	case ls.s.cfg.LFSLocks == nil:
		return fmt.Errorf("%w: file locking is not available on this server", transfer.ErrNotAllowed)
	}
	return nil
}

func (ls *lfsSession) actor() keystore.Actor {
	return keystore.Actor{UserID: ls.id.UserID, RemoteIP: hostOnly(ls.remote)}
}

// lfsLocks is transfer.LockBackend over the keystore's locks of the
// session's project.
type lfsLocks struct{ ls *lfsSession }

func (b lfsLocks) Create(path, refname string) (transfer.Lock, error) {
	if err := b.ls.mayLock(); err != nil {
		return nil, err
	}
	l, err := b.ls.s.cfg.LFSLocks.CreateLFSLock(b.ls.ctx, b.ls.actor(), b.ls.project.ID, b.ls.id.UserID, path, refname)
	var c *keystore.LFSLockConflict
	switch {
	case errors.As(err, &c):
		return &lfsLock{ls: b.ls, l: c.Lock}, transfer.ErrConflict
	case errors.Is(err, keystore.ErrInvalid):
		return nil, fmt.Errorf("%w: %v", transfer.ErrParseError, err)
	case err != nil:
		return nil, err
	}
	return &lfsLock{ls: b.ls, l: *l}, nil
}

// Unlock removes a lock: its holder may, and a maintainer (or an admin)
// may remove anyone's — the SSH protocol does not carry git lfs unlock's
// --force, so a maintainer's unlock is always a forced one.
func (b lfsLocks) Unlock(lock transfer.Lock) error {
	if err := b.ls.mayLock(); err != nil {
		return err
	}
	l, ok := lock.(*lfsLock)
	if !ok {
		return transfer.ErrNotFound
	}
	if l.l.UserID != b.ls.id.UserID {
		u, _ := b.ls.s.cfg.Auth.User(b.ls.id.UserID)
		if keystore.EffectiveLevel(u.IsAdmin, b.ls.s.cfg.Auth.AccessLevel(b.ls.id.UserID, b.ls.project.GroupID)) < keystore.Maintainer {
			return fmt.Errorf("%w: lock %d on %s is %s's: only its owner or a maintainer can remove it",
				transfer.ErrForbidden, l.l.ID, l.l.Path, l.l.Username)
		}
	}
	if _, err := b.ls.s.cfg.LFSLocks.DeleteLFSLock(b.ls.ctx, b.ls.actor(), b.ls.project.ID, l.l.ID); err != nil {
		if errors.Is(err, keystore.ErrNotFound) {
			return os.ErrNotExist
		}
		return err
	}
	return nil
}

func (b lfsLocks) FromPath(path string) (transfer.Lock, error) {
	if b.ls.s.cfg.LFSLocks == nil {
		return nil, transfer.ErrNotFound
	}
	l, err := b.ls.s.cfg.LFSLocks.LFSLockByPath(b.ls.ctx, b.ls.project.ID, path)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, transfer.ErrNotFound
	} else if err != nil {
		return nil, err
	}
	return &lfsLock{ls: b.ls, l: *l}, nil
}

func (b lfsLocks) FromID(id string) (transfer.Lock, error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || b.ls.s.cfg.LFSLocks == nil {
		return nil, transfer.ErrNotFound
	}
	l, err := b.ls.s.cfg.LFSLocks.LFSLock(b.ls.ctx, b.ls.project.ID, n)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, transfer.ErrNotFound
	} else if err != nil {
		return nil, err
	}
	return &lfsLock{ls: b.ls, l: *l}, nil
}

// Range is not used: serve answers list-lock itself.
func (b lfsLocks) Range(string, int, func(transfer.Lock) error) (string, error) {
	return "", fmt.Errorf("%w: list-lock is answered by keygate", transfer.ErrNotAllowed)
}

// lfsLock is a keystore lock as the protocol shows it.
type lfsLock struct {
	ls *lfsSession
	l  keystore.LFSLock
}

func (l *lfsLock) Unlock() error              { return lfsLocks{l.ls}.Unlock(l) }
func (l *lfsLock) ID() string                 { return strconv.FormatInt(l.l.ID, 10) }
func (l *lfsLock) Path() string               { return l.l.Path }
func (l *lfsLock) FormattedTimestamp() string { return l.l.CreatedAt.UTC().Format(time.RFC3339) }
func (l *lfsLock) OwnerName() string          { return l.l.Username }

func (l *lfsLock) AsArguments() []string {
	return []string{"id=" + l.ID(), "path=" + l.Path(), "locked-at=" + l.FormattedTimestamp(), "ownername=" + l.OwnerName()}
}

func (l *lfsLock) AsLockSpec(ownerID bool) ([]string, error) {
	id := l.ID()
	spec := []string{"lock " + id, "path " + id + " " + l.Path(), "locked-at " + id + " " + l.FormattedTimestamp(),
		"ownername " + id + " " + l.OwnerName()}
	if ownerID {
		who := "theirs"
		if !l.ls.id.IsDeployKey() && l.l.UserID == l.ls.id.UserID {
			who = "ours"
		}
		spec = append(spec, "owner "+id+" "+who)
	}
	return spec, nil
}
