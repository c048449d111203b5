package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/keygate/keygate/keystore"
)

// The mistakes everybody makes once, refused with what to do instead,
// before anything is created (issue 21 §1).

// checkListenAddr refuses a listen address net.Listen would refuse, saying
// what was probably meant ("2222" → ":2222").
func checkListenAddr(flag, addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		if _, perr := strconv.ParseUint(addr, 10, 16); perr == nil {
			return fmt.Errorf("--%s %s: a listen address is HOST:PORT; for port %s on every interface write :%s (or 127.0.0.1:%s for this host only)", flag, addr, addr, addr, addr)
		}
		if ip, perr := netip.ParseAddr(addr); perr == nil {
			return fmt.Errorf("--%s %s: the port is missing: write %s", flag, addr, net.JoinHostPort(ip.String(), "PORT"))
		}
		return fmt.Errorf("--%s %s: not a HOST:PORT listen address (e.g. :2222 or 127.0.0.1:8080): %v", flag, addr, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil {
		if _, err := net.LookupPort("tcp", port); err != nil {
			return fmt.Errorf("--%s %s: %q is not a port number (0–65535)", flag, addr, port)
		}
	} else if n > 65535 {
		return fmt.Errorf("--%s %s: %q is not a port number (0–65535)", flag, addr, port)
	}
	return nil
}

// checkHostname refuses a host name that cannot appear in a clone URL or
// a login@NAME certificate extension: a DNS name (letters, digits, hyphens,
// dots; labels of at most 63 characters) or an IP address.
func checkHostname(h string) error {
	if h == "" {
		return errors.New("--hostname must not be empty (it names this host in clone URLs and certificate extensions)")
	}
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return nil
	}
	bad := func(why string) error {
		return fmt.Errorf("--hostname %q: %s; use the name clients reach keygate by, e.g. git.example.com", h, why)
	}
	if len(h) > 253 {
		return bad("longer than 253 characters")
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		switch {
		case label == "":
			return bad("has an empty label")
		case len(label) > 63:
			return bad("has a label longer than 63 characters")
		case label[0] == '-' || label[len(label)-1] == '-':
			return bad("has a label that starts or ends with a hyphen")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return bad(fmt.Sprintf("contains %q, which is not allowed in a host name", r))
			}
		}
	}
	return nil
}

// sqlitePath is the file of a SQLite DSN ("" for PostgreSQL).
func sqlitePath(dsn string) string {
	if keystore.IsPostgresDSN(dsn) {
		return ""
	}
	file := strings.TrimPrefix(dsn, "file:")
	if i := strings.IndexByte(file, '?'); i >= 0 {
		file = file[:i]
	}
	return file
}

// checkExplicitDB refuses an explicit --db naming a SQLite file that does
// not exist: a typo must not start a new, empty keystore with a new admin
// token. Creating one is a deliberate step (keygate migrate --create).
func checkExplicitDB(db, dsn string) error {
	file := sqlitePath(dsn)
	if db == "" || file == "" {
		return nil
	}
	_, err := os.Stat(file)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return nil // there (or unreadable: the open says why)
	}
	abs, _ := filepath.Abs(file)
	dirNote := ""
	if _, err := os.Stat(filepath.Dir(abs)); errors.Is(err, fs.ErrNotExist) {
		dirNote = fmt.Sprintf(" (create its directory %s first: keygate never creates one)", filepath.Dir(abs))
	}
	return fmt.Errorf("--db %s: no database at %s; keygate opens an explicit --db only if it exists, so that a typo never starts an empty keystore.\n"+
		"To create a new keystore there on purpose, run: keygate migrate --create --db %s%s\n"+
		"(or leave --db empty to use DATA_DIR/keygate.db, created on the first start)", db, abs, db, dirNote)
}

// checkDataDirReadable refuses a data dir that exists but that keygate
// cannot read or enter, naming its owner and mode, before the database
// open would report it as a --db error.
func checkDataDirReadable(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // the first start creates it
	}
	if err == nil && !fi.IsDir() {
		return fmt.Errorf("--data-dir %s is a file, not a directory", dir)
	}
	if err == nil {
		var f *os.File
		if f, err = os.Open(dir); err == nil {
			_, err = f.Readdirnames(1)
			f.Close()
			if errors.Is(err, io.EOF) {
				err = nil
			}
		}
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("--data-dir %s cannot be read by keygate, which runs as %s: %s; give it to that user (chown -R) or run keygate as its owner",
			dir, describeUID(os.Geteuid()), describeOwner(dir))
	}
	return fmt.Errorf("--data-dir %s: %w", dir, err)
}

// describeOwner is "owner root (uid 0), mode 0700" for a path.
func describeOwner(path string) string {
	fi, err := os.Lstat(path)
	if err != nil {
		// The path itself may be unreachable: a parent is not searchable.
		return fmt.Sprintf("it cannot be reached (%v)", errors.Unwrap(err))
	}
	owner := "?"
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		owner = describeUID(int(st.Uid))
	}
	return fmt.Sprintf("owner %s, mode %04o", owner, fi.Mode().Perm())
}

// describeUID is "keygate (uid 998)".
func describeUID(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("%s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}

// dbError is the start-up error of a database that did not open: a schema
// this build cannot serve names both versions and this keygate's release.
func dbError(where string, err error) error {
	var se *keystore.SchemaError
	if errors.As(err, &se) {
		return fmt.Errorf("--db %s: keygate %s: %w", where, version, err)
	}
	return fmt.Errorf("--db: %w", err)
}
