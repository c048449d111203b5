package sshd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/charmbracelet/git-lfs-transfer/transfer"
	"github.com/gliderlabs/ssh"

	"github.com/keygate/keygate/keystore"
)

// Git LFS over SSH: git-lfs ≥ 3.0 runs `git-lfs-transfer <repo>
// upload|download` (the pure SSH protocol) before it would ask
// git-lfs-authenticate for an HTTPS endpoint. keygate serves the former
// with charmbracelet/git-lfs-transfer's protocol code (as Soft Serve and
// Gitea do) under a command loop of its own, and refuses the latter with a
// message saying so.
//
// Who may do what is decideGit's: a download session needs read (reporter,
// or a deploy key enabled on the project), an upload session write
// (developer, or a deploy key with can_push); locking and unlocking happen
// in upload sessions, listing locks in either. The session registers a
// grant like a git command, so a change that takes the right away ends it
// within two ticks.

const (
	lfsCommand = "git-lfs-transfer"

	msgLFSOff          = "keygate: ERROR: Git LFS is not enabled on this server.\n"
	msgLFSAuthenticate = "keygate: ERROR: git-lfs-authenticate (Git LFS over HTTPS) is not served: keygate serves Git LFS over SSH (git-lfs-transfer). " +
		"Use git-lfs 3.0 or newer, and leave lfs.sshtransfer unset or set it to \"always\".\n"
	msgLFSUsage = "keygate: ERROR: usage: git-lfs-transfer <repository> upload|download\n"

	// lfsControlBudget bounds what a client may send for one command
	// besides an object's content (a batch of objects, arguments): git-lfs
	// sends batches of 100 objects, a few kilobytes.
	lfsControlBudget = 1 << 20
	// lfsMaxEventOIDs bounds the object ids an upload's audit event lists.
	lfsMaxEventOIDs = 100
	// lfsListLimit is the most locks one list-lock answer holds.
	lfsListLimit = 100
)

var (
	errLFSRequestTooLarge = errors.New("a Git LFS request larger than 1 MiB")
	errLFSProtocol        = errors.New("a Git LFS protocol violation")
	errLFSEnded           = errors.New("session ended")
)

// runLFS serves git-lfs-transfer for the session and returns its exit
// status.
func (s *Server) runLFS(sess ssh.Session, id *Identity, args []string) int {
	if len(args) != 3 || (args[2] != transfer.UploadOperation && args[2] != transfer.DownloadOperation) {
		fmt.Fprint(sess.Stderr(), msgLFSUsage)
		return 1
	}
	if s.cfg.LFSMaxObjectSize < 0 {
		s.metrics.gitOps.WithLabelValues(lfsCommand, "denied").Inc()
		fmt.Fprint(sess.Stderr(), msgLFSOff)
		return 1
	}
	op := args[2]
	write := op == transfer.UploadOperation
	p, d := s.authorizeRepo(sess.Context(), id, args[1], write)
	if p == nil {
		s.metrics.gitOps.WithLabelValues(lfsCommand, "denied").Inc()
		s.log.Info("git command denied", "user_id", id.UserID, "deploy_key_id", id.DeployKeyID, "command", lfsCommand,
			"operation", op, "path", args[1], "reason", d.reason)
		fmt.Fprint(sess.Stderr(), d.msg)
		return 1
	}
	// An LFS session counts as a git command against the per-principal
	// cap (principal.go): git-lfs runs up to lfs.concurrenttransfers (8).
	release, capMsg := s.gitSlot(id)
	if release == nil {
		fmt.Fprint(sess.Stderr(), capMsg)
		return 1
	}
	defer release()
	repo := keystore.Repos{Root: s.cfg.ReposDir}
	if fi, err := os.Stat(repo.Path(p.FullPath)); err != nil || !fi.IsDir() {
		s.log.Error("repository missing on disk", "project", p.FullPath)
		s.metrics.gitOps.WithLabelValues(lfsCommand, "error").Inc()
		fmt.Fprint(sess.Stderr(), msgNotFound)
		return 1
	}

	// The client's bytes go through a pipe, so that an ending can stop a
	// read that waits for the client.
	pr, pw := io.Pipe()
	prog := newProgress(time.Now)
	go func() {
		_, err := io.Copy(pw, progressReader{sess, prog})
		pw.CloseWithError(err)
	}()
	ctx, cancel := context.WithCancel(sess.Context())
	defer cancel()
	var endedBy atomic.Pointer[gitDecision]
	unregister := connFromContext(sess.Context()).register(&grant{
		check: func(now time.Time) string { return s.decideGit(id, p.ID, p.GroupID, write, now).reason },
		end: func(reason string) {
			d := s.decideGit(id, p.ID, p.GroupID, write, s.cfg.Now())
			if d.allowed() {
				d = gitDecision{msgDenied, reason}
			}
			d.reason = reason
			endedBy.Store(&d)
			s.metrics.revoked.WithLabelValues("git").Inc()
			cancel()
			pr.CloseWithError(errLFSEnded)
		},
	})
	defer unregister()

	ls := &lfsSession{
		s: s, ctx: ctx, id: id, project: p, op: op, login: sess.User(), remote: sess.RemoteAddr().String(),
		store: repo.LFS(p.FullPath), in: &lfsInput{r: pr},
	}
	out := &lfsOutput{w: progressWriter{sess, prog}}
	ls.pl = transfer.NewPktline(ls.in, out, nil)
	stopFresh := out.keepFresh(prog)
	stopWatch := s.watchStall(sess, prog, lfsCommand, p.FullPath)
	done := make(chan error, 1)
	go func() {
		err := errLFSProtocol // what a panic (recovered, its connection closed) leaves
		defer func() { done <- err }()
		defer s.recoverConn("git-lfs-transfer", sess)
		err = ls.serve()
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		// Ended or disconnected: a loop blocked writing to a client that
		// does not read is released by closing the channel.
		select {
		case err = <-done:
		case <-time.After(2 * time.Second):
			_ = sess.Close()
			err = <-done
		}
	}
	stopWatch()
	stopFresh()

	code, result := 0, "ok"
	if err != nil {
		code, result = 1, "failed"
	}
	ended := endedBy.Load()
	switch {
	case ended != nil:
		code, result = 1, "revoked"
		fmt.Fprintf(sess.Stderr(), "\n%skeygate: this session was ended: %s\n", ended.msg, ended.reason)
		s.log.Info("git session ended: access revoked", "user_id", id.UserID, "deploy_key_id", id.DeployKeyID,
			"command", lfsCommand, "project", p.FullPath, "reason", ended.reason, "remote", ls.remote)
	case errors.Is(err, errLFSRequestTooLarge) || errors.Is(err, errLFSProtocol):
		fmt.Fprintf(sess.Stderr(), "keygate: ERROR: %v: the session was closed\n", err)
	}
	s.metrics.gitOps.WithLabelValues(lfsCommand, result).Inc()
	if ls.commands == 0 && code == 0 {
		// git-lfs opens a pool of sessions (lfs.concurrenttransfers) and
		// may leave some unused: nothing to audit.
		s.log.Debug("git-lfs-transfer session unused", "user_id", id.UserID, "project", p.FullPath, "operation", op)
		return 0
	}
	s.log.Info("git command", "user_id", id.UserID, "command", lfsCommand, "operation", op, "project", p.FullPath, "exit", code,
		"objects", ls.objects, "bytes", ls.bytes, "refused", ls.refused, "cert_key_id", id.CertKeyID, "ca_id", id.CAID, "err", err)
	details := gitEventDetails(id, lfsCommand, p.FullPath, ls.login, code, ended)
	details["operation"] = op
	details["objects"] = ls.objects
	details["bytes"] = ls.bytes
	if ls.refused > 0 {
		details["objects_refused"] = ls.refused
	}
	if len(ls.oids) > 0 {
		details["oids"] = ls.oids
	}
	action := "git_lfs_download"
	if write {
		action = "git_lfs_upload"
	}
	s.recordEventAsync(keystore.Actor{UserID: id.UserID, RemoteIP: hostOnly(ls.remote)}, action, "project", p.ID, details)
	return code
}

// refuseLFSAuthenticate answers git-lfs-authenticate: keygate serves no
// HTTPS endpoint. A client that may not do what it asked hears why (the
// same decision as git-lfs-transfer's); any other hears that LFS is
// served over SSH.
func (s *Server) refuseLFSAuthenticate(sess ssh.Session, id *Identity, args []string) {
	msg := msgLFSAuthenticate
	if len(args) == 3 && (args[2] == transfer.UploadOperation || args[2] == transfer.DownloadOperation) {
		if p, d := s.authorizeRepo(sess.Context(), id, args[1], args[2] == transfer.UploadOperation); p == nil {
			msg = d.msg
		}
	}
	s.log.Info("git-lfs-authenticate refused", "user_id", id.UserID, "deploy_key_id", id.DeployKeyID, "remote", sess.RemoteAddr().String())
	fmt.Fprint(sess.Stderr(), msg)
}

// lfsOutput is what the session writes to the client. git-lfs keeps a
// pool of sessions open, mostly waiting between commands: waiting for the
// client is no stall, only a write the client does not take is, so
// keepFresh counts every second without a write in flight as progress.
type lfsOutput struct {
	w       io.Writer
	writing atomic.Bool
}

func (o *lfsOutput) Write(b []byte) (int, error) {
	o.writing.Store(true)
	defer o.writing.Store(false)
	return o.w.Write(b)
}

func (o *lfsOutput) keepFresh(prog *progress) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if !o.writing.Load() {
					prog.touch()
				}
			}
		}
	}()
	return func() { close(done) }
}

// lfsInput is the client's stream as the protocol code reads it: at most
// lfsControlBudget bytes per command outside an object's content, and
// nothing at all once the session has failed.
type lfsInput struct {
	r      io.Reader
	budget int64
	data   bool // reading an object's content (Put bounds it)
	err    error
}

func (in *lfsInput) Read(b []byte) (int, error) {
	if in.err != nil {
		return 0, in.err
	}
	if !in.data {
		if in.budget <= 0 {
			in.err = errLFSRequestTooLarge
			return 0, in.err
		}
		if int64(len(b)) > in.budget {
			b = b[:in.budget]
		}
	}
	n, err := in.r.Read(b)
	if !in.data {
		in.budget -= int64(n)
	}
	return n, err
}

// lfsSession is one git-lfs-transfer session: transfer.Backend for its
// project.
type lfsSession struct {
	s                 *Server
	ctx               context.Context
	id                *Identity
	project           *keystore.Project
	op, login, remote string
	store             keystore.LFSStorage
	in                *lfsInput
	pl                *transfer.Pktline
	commands          int // besides version and quit
	objects, refused  int
	bytes             int64
	oids              []string
}

var _ transfer.Backend = (*lfsSession)(nil)

// serve advertises the capabilities and answers commands until the client
// quits or goes. It is transfer.Processor.ProcessCommands with the
// session's rules: bounded requests, no panic on a bare "version", lock
// listing that answers an empty list, and an end to a session whose
// stream cannot be trusted any more.
func (ls *lfsSession) serve() error {
	for _, c := range transfer.Capabilities {
		if err := ls.pl.WritePacketText(c); err != nil {
			return err
		}
	}
	if err := ls.pl.WriteFlush(); err != nil {
		return err
	}
	proc := transfer.NewProcessor(ls.pl, ls, nil)
	for {
		if ls.in.err != nil {
			return ls.in.err
		}
		ls.in.budget = lfsControlBudget
		pkt, err := ls.pl.ReadPacketText()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		cmd, arg, _ := strings.Cut(pkt, " ")
		if cmd != "version" && cmd != "quit" {
			ls.commands++
		}
		var st transfer.Status
		switch cmd {
		case "version":
			if arg == transfer.Version {
				st, err = proc.Version()
			} else {
				err = ls.pl.SendError(transfer.StatusBadRequest, "unknown version")
			}
		case "batch":
			if ls.op == transfer.UploadOperation {
				st, err = proc.UploadBatch()
			} else {
				st, err = proc.DownloadBatch()
			}
		case "put-object":
			st, err = proc.PutObject(arg)
		case "verify-object":
			st, err = proc.VerifyObject(arg)
		case "get-object":
			st, err = proc.GetObject(arg)
		case "lock":
			st, err = ls.lock()
		case "list-lock", "list-locks":
			st, err = ls.listLocks()
		case "unlock":
			st, err = proc.Unlock(arg)
		case "quit":
			return ls.pl.SendStatus(transfer.SuccessStatus())
		default:
			// Its arguments cannot be told from the next command.
			ls.in.err = fmt.Errorf("%w: unknown command %.40q", errLFSProtocol, cmd)
			err = ls.pl.SendError(transfer.StatusBadRequest, "unknown command")
		}
		if err != nil {
			if werr := ls.pl.SendError(lfsStatus(err), lfsMessage(err)); werr != nil {
				return werr
			}
			if lfsStatus(err) == transfer.StatusInternalServerError {
				ls.s.log.Error("git-lfs-transfer failed", "project", ls.project.FullPath, "command", cmd, "err", err)
			}
		}
		if st != nil {
			if err := ls.pl.SendStatus(st); err != nil {
				return err
			}
		}
	}
}

// lfsStatus is the protocol status for a command's error.
func lfsStatus(err error) uint32 {
	switch {
	case errors.Is(err, transfer.ErrExtraData), errors.Is(err, transfer.ErrParseError),
		errors.Is(err, transfer.ErrInvalidPacket), errors.Is(err, transfer.ErrCorruptData), errors.Is(err, transfer.ErrMissingData):
		return transfer.StatusBadRequest
	case errors.Is(err, transfer.ErrNotAllowed):
		return transfer.StatusMethodNotAllowed
	case errors.Is(err, transfer.ErrNotFound):
		return transfer.StatusNotFound
	case errors.Is(err, transfer.ErrUnauthorized):
		return transfer.StatusUnauthorized
	case errors.Is(err, transfer.ErrForbidden):
		return transfer.StatusForbidden
	case errors.Is(err, transfer.ErrConflict):
		return transfer.StatusConflict
	}
	return transfer.StatusInternalServerError
}

// lfsMessage is what the client reads for a command's error; internal
// errors stay in the log.
func lfsMessage(err error) string {
	if lfsStatus(err) == transfer.StatusInternalServerError {
		return "internal error"
	}
	return "error: " + err.Error()
}

// lfsFail ends the session after this command: the client's stream holds
// bytes that cannot be told from commands (an object not read).
func (ls *lfsSession) lfsFail(err error) { ls.in.err = fmt.Errorf("%w: %v", errLFSProtocol, err) }

// Batch says, for each object, whether the server has it.
func (ls *lfsSession) Batch(op string, items []transfer.BatchItem, _ transfer.Args) ([]transfer.BatchItem, error) {
	for i := range items {
		it := &items[i]
		if !keystore.ValidLFSOID(it.Oid) || it.Size < 0 {
			return nil, fmt.Errorf("%w: invalid object %.70q", transfer.ErrParseError, it.Oid)
		}
		if op == transfer.UploadOperation && it.Size > ls.s.cfg.LFSMaxObjectSize {
			return nil, ls.tooLarge(it.Oid, it.Size)
		}
		size, err := ls.store.Size(it.Oid)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		it.Present = err == nil && size == it.Size
	}
	return items, nil
}

func (ls *lfsSession) tooLarge(oid string, size int64) error {
	return fmt.Errorf("%w: object %s is %d bytes, larger than this server's limit of %d bytes",
		transfer.ErrNotAllowed, oid, size, ls.s.cfg.LFSMaxObjectSize)
}

// Upload stores an object, verified by its SHA-256 and size.
func (ls *lfsSession) Upload(oid string, size int64, r io.Reader, _ transfer.Args) error {
	switch {
	case ls.op != transfer.UploadOperation:
		ls.lfsFail(errors.New("put-object in a download session"))
		return fmt.Errorf("%w: uploading needs an upload session", transfer.ErrForbidden)
	case !keystore.ValidLFSOID(oid):
		ls.lfsFail(errors.New("invalid object id"))
		return fmt.Errorf("%w: invalid object id %.70q", transfer.ErrParseError, oid)
	case size > ls.s.cfg.LFSMaxObjectSize:
		ls.lfsFail(errors.New("object over the size limit"))
		ls.refused++
		return ls.tooLarge(oid, size)
	}
	ls.in.data = true
	err := ls.store.Put(oid, size, r)
	ls.in.data = false
	switch {
	case err == nil:
		ls.objects++
		ls.bytes += size
		if len(ls.oids) < lfsMaxEventOIDs {
			ls.oids = append(ls.oids, oid)
		}
		return nil
	case errors.Is(err, keystore.ErrLFSOverlong):
		ls.lfsFail(err)
		ls.refused++
		return fmt.Errorf("%w: object %s is longer than its size %d; not stored", transfer.ErrCorruptData, oid, size)
	case errors.Is(err, keystore.ErrLFSCorrupt), errors.Is(err, transfer.ErrCorruptData):
		ls.refused++
		ls.s.log.Info("git-lfs-transfer: corrupt upload refused", "project", ls.project.FullPath, "oid", oid, "user_id", ls.id.UserID)
		return fmt.Errorf("%w: object %s does not match its id and size; not stored", transfer.ErrCorruptData, oid)
	}
	if ls.in.err == nil && ls.ctx.Err() == nil {
		ls.lfsFail(err) // the object's remaining bytes were not read
	}
	return err
}

// Verify confirms that an uploaded object is stored with its size.
func (ls *lfsSession) Verify(oid string, size int64, _ transfer.Args) (transfer.Status, error) {
	if !keystore.ValidLFSOID(oid) {
		return transfer.NewStatus(transfer.StatusBadRequest, "invalid object id"), nil
	}
	got, err := ls.store.Size(oid)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return transfer.NewStatus(transfer.StatusNotFound, "object not found"), nil
	case err != nil:
		return nil, err
	case got != size:
		return transfer.NewStatus(transfer.StatusConflict, "size mismatch"), nil
	}
	return transfer.SuccessStatus(), nil
}

// Download opens a stored object.
func (ls *lfsSession) Download(oid string, _ transfer.Args) (io.ReadCloser, int64, error) {
	if !keystore.ValidLFSOID(oid) {
		return nil, 0, fmt.Errorf("%w: invalid object id %.70q", transfer.ErrParseError, oid)
	}
	f, size, err := ls.store.Open(oid)
	if err != nil {
		return nil, 0, err
	}
	ls.objects++
	ls.bytes += size
	return f, size, nil
}

// LockBackend returns the session's locks.
func (ls *lfsSession) LockBackend(transfer.Args) transfer.LockBackend { return lfsLocks{ls} }
