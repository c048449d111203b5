package keystore_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// TestLFSStoragePut: an object is stored only when its content matches its
// id and size; longer content is reported (the caller stops reading) and
// nothing of a refused upload stays on disk.
func TestLFSStoragePut(t *testing.T) {
	t.Parallel()
	repos := keystore.Repos{Root: t.TempDir()}
	st := repos.LFS("eng/media")
	content := []byte("hello, large file\n")
	sum := sha256.Sum256(content)
	oid := hex.EncodeToString(sum[:])
	n := int64(len(content))
	for _, tc := range []struct {
		name    string
		oid     string
		size    int64
		body    string
		wantErr error
	}{
		{"other-content", oid, n, strings.Repeat("x", len(content)), keystore.ErrLFSCorrupt},
		{"short", oid, n, string(content[:5]), keystore.ErrLFSCorrupt},
		{"size-lies-low", oid, n - 1, string(content), keystore.ErrLFSOverlong},
		{"negative-size", oid, -1, "", keystore.ErrLFSCorrupt},
		{"not-an-id", "../../../etc/passwd", n, string(content), nil},
		{"upper-case-id", strings.ToUpper(oid), n, string(content), nil},
	} {
		err := st.Put(tc.oid, tc.size, strings.NewReader(tc.body))
		if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
			t.Errorf("%s: Put = %v, want %v", tc.name, err, tc.wantErr)
		}
		if _, err := st.Size(oid); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s: object stored after a refused upload (%v)", tc.name, err)
		}
	}
	if err := st.Put(oid, n, bytes.NewReader(content)); err != nil {
		t.Fatalf("Put: %v", err)
	}
	// Again: kept, no error.
	if err := st.Put(oid, n, bytes.NewReader(content)); err != nil {
		t.Fatalf("Put again: %v", err)
	}
	f, size, err := st.Open(oid)
	if err != nil || size != n {
		t.Fatalf("Open = %v, %d", err, size)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, content) {
		t.Fatalf("content = %q", got)
	}
	if want := filepath.Join(repos.Path("eng/media"), "lfs", "objects", oid[:2], oid[2:4], oid); !fileExists(want) {
		t.Fatalf("object not at %s", want)
	}
	tmp, _ := os.ReadDir(filepath.Join(st.Dir, "tmp"))
	if len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestLFSLocks: one lock per path per project, with its holder; deleting
// the project or the user deletes its locks; each change is an audit event.
func TestLFSLocks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice, bob := e.user(t, "alice"), e.user(t, "bob")
	g := e.group(t, "eng", nil, alice.ID)
	p1, err := e.s.CreateProject(e.ctx, sys, keystore.ProjectInput{GroupID: g.ID, Path: "media"})
	mustOK(t, err)
	p2, err := e.s.CreateProject(e.ctx, sys, keystore.ProjectInput{GroupID: g.ID, Path: "other"})
	mustOK(t, err)
	as := keystore.Actor{UserID: alice.ID}

	l, err := e.s.CreateLFSLock(e.ctx, as, p1.ID, alice.ID, "art/logo.psd", "refs/heads/main")
	mustOK(t, err)
	if l.Username != "alice" || l.Path != "art/logo.psd" || l.RefName != "refs/heads/main" || !l.CreatedAt.Equal(t0ms) {
		t.Fatalf("lock = %+v", l)
	}
	_, err = e.s.CreateLFSLock(e.ctx, keystore.Actor{UserID: bob.ID}, p1.ID, bob.ID, "art/logo.psd", "")
	var c *keystore.LFSLockConflict
	if !errors.As(err, &c) || c.Lock.ID != l.ID || c.Lock.Username != "alice" || !errors.Is(err, keystore.ErrConflict) {
		t.Fatalf("second lock on the path = %v, want a conflict naming alice's lock", err)
	}
	// The same path in another project is another lock.
	_, err = e.s.CreateLFSLock(e.ctx, as, p2.ID, alice.ID, "art/logo.psd", "")
	mustOK(t, err)
	for _, bad := range []string{"", "a\nb", strings.Repeat("x", keystore.MaxLFSLockPath+1)} {
		_, err := e.s.CreateLFSLock(e.ctx, as, p1.ID, alice.ID, bad, "")
		wantField(t, err, "path", "must be 1 to 4096 bytes without control characters")
	}
	_, err = e.s.CreateLFSLock(e.ctx, keystore.Actor{UserID: bob.ID}, p1.ID, bob.ID, "b.bin", "")
	mustOK(t, err)
	list, err := e.s.LFSLocks(e.ctx, p1.ID, 0, 10)
	mustOK(t, err)
	if len(list) != 2 || list[0].ID != l.ID || list[1].Username != "bob" {
		t.Fatalf("LFSLocks = %+v", list)
	}
	if rest, _ := e.s.LFSLocks(e.ctx, p1.ID, list[0].ID, 10); len(rest) != 1 || rest[0].ID != list[1].ID {
		t.Fatalf("LFSLocks after the first = %+v", rest)
	}
	if got, err := e.s.LFSLockByPath(e.ctx, p1.ID, "b.bin"); err != nil || got.Username != "bob" {
		t.Fatalf("LFSLockByPath = %+v, %v", got, err)
	}
	if _, err := e.s.LFSLock(e.ctx, p2.ID, l.ID); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("another project's lock by id = %v, want not found", err)
	}
	// Alice removes bob's lock: a forced removal in the audit log.
	if _, err := e.s.DeleteLFSLock(e.ctx, as, p1.ID, list[1].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.DeleteLFSLock(e.ctx, as, p1.ID, list[1].ID); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("deleting twice = %v", err)
	}
	evs, _, err := e.s.ListAuditEvents(e.ctx, keystore.AuditFilter{}, keystore.Page{PerPage: 100})
	mustOK(t, err)
	var created, forced int
	for _, ev := range evs {
		switch {
		case ev.Action == "lfs_lock_created":
			created++
		case ev.Action == "lfs_lock_deleted" && strings.Contains(ev.Details, `"forced":true`):
			forced++
		}
	}
	if created != 3 || forced != 1 {
		t.Fatalf("audit: %d created, %d forced deletions; want 3 and 1", created, forced)
	}
	// Deleting the project deletes its locks; deleting a user deletes theirs.
	mustOK(t, e.s.DeleteProject(e.ctx, sys, p1.ID))
	if list, err := e.s.LFSLocks(e.ctx, p1.ID, 0, 10); err != nil || len(list) != 0 {
		t.Fatalf("locks of a deleted project: %v, %v", list, err)
	}
	mustOK(t, e.s.DeleteUser(e.ctx, sys, alice.ID))
	if list, err := e.s.LFSLocks(e.ctx, p2.ID, 0, 10); err != nil || len(list) != 0 {
		t.Fatalf("locks of a deleted user: %v, %v", list, err)
	}
}
