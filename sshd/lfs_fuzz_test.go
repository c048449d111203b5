package sshd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/charmbracelet/git-lfs-transfer/transfer"

	"github.com/keygate/keygate/keystore"
)

func lfsPktLine(s string) string {
	if s == "0000" || s == "0001" {
		return s
	}
	return fmt.Sprintf("%04x%s", len(s)+4, s)
}

// runLFSScript serves one LFS session over in-memory streams: the client
// sends script, then end of file.
func runLFSScript(op string, limit int64, store keystore.LFSStorage, script []byte) (string, error) {
	s := &Server{cfg: Config{LFSMaxObjectSize: limit}, log: slog.New(slog.DiscardHandler)}
	var out bytes.Buffer
	ls := &lfsSession{
		s: s, ctx: context.Background(), id: &Identity{UserID: 1}, project: &keystore.Project{ID: 1, GroupID: 1, FullPath: "eng/media"},
		op: op, store: store, in: &lfsInput{r: bytes.NewReader(script)},
	}
	ls.pl = transfer.NewPktline(ls.in, &out, nil)
	err := ls.serve()
	return out.String(), err
}

func TestLFSSessionScript(t *testing.T) {
	t.Parallel()
	content := "hello\n"
	sum := sha256.Sum256([]byte(content))
	oid := hex.EncodeToString(sum[:])
	var in strings.Builder
	for _, l := range []string{
		"version 1\n", "0000",
		"batch\n", "transfer=basic\n", "0001", oid + " 6\n", "0000",
		"put-object " + oid + "\n", "size=6\n", "0001", content, "0000",
		"verify-object " + oid + "\n", "size=6\n", "0000",
		"batch\n", "0001", strings.Repeat("a", 64) + " 999\n", "0000", // over the limit of 100
		"list-lock\n", "0000",
		"lock\n", "path=x\n", "0000", // no lock store: not allowed
		"quit\n",
	} {
		in.WriteString(lfsPktLine(l))
	}
	store := keystore.Repos{Root: t.TempDir()}.LFS("eng/media")
	out, err := runLFSScript(transfer.UploadOperation, 100, store, []byte(in.String()))
	if err != nil {
		t.Fatalf("serve: %v\n%q", err, out)
	}
	for _, want := range []string{oid + " 6 upload", "status 405", "larger than this server's limit of 100 bytes", "locking is not available"} {
		if !strings.Contains(out, want) {
			t.Errorf("answer lacks %q:\n%q", want, out)
		}
	}
	if n, err := store.Size(oid); err != nil || n != 6 {
		t.Fatalf("stored: %d, %v", n, err)
	}
}

// FuzzLFSSession: whatever a client sends, in either operation, the session
// ends without a panic, and nothing is written outside its LFS directory but
// objects whose content matches their name.
func FuzzLFSSession(f *testing.F) {
	content := "hello\n"
	sum := sha256.Sum256([]byte(content))
	oid := hex.EncodeToString(sum[:])
	seed := func(lines ...string) []byte {
		var b strings.Builder
		for _, l := range lines {
			b.WriteString(lfsPktLine(l))
		}
		return []byte(b.String())
	}
	f.Add(seed("version 1\n", "0000", "put-object "+oid+"\n", "size=6\n", "0001", content, "0000", "quit\n"), true)
	f.Add(seed("version\n", "get-object ../../x\n", "0000"), false)
	f.Add(seed("batch\n", "hash-algo=sha512\n", "0001", oid+" 6 a=b c\n", "0000"), false)
	f.Add(seed("list-lock\n", "cursor=5\n", "path=a\n", "0000", "unlock 1\n", "0000"), true)
	f.Add([]byte("ffff0000zzzz"), true)
	root := f.TempDir()
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, script []byte, upload bool) {
		op := transfer.DownloadOperation
		if upload {
			op = transfer.UploadOperation
		}
		repos := keystore.Repos{Root: root}
		path := fmt.Sprintf("g/p%d", n.Add(1))
		defer os.RemoveAll(repos.Path(path))
		store := repos.LFS(path)
		_, _ = runLFSScript(op, 1<<16, store, script)
		_ = filepath.WalkDir(filepath.Join(store.Dir, "objects"), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			b, rerr := os.ReadFile(p)
			if rerr != nil {
				t.Fatal(rerr)
			}
			s := sha256.Sum256(b)
			if hex.EncodeToString(s[:]) != filepath.Base(p) {
				t.Fatalf("object %s does not hash to its name", p)
			}
			return nil
		})
	})
}
