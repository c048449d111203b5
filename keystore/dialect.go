package keystore

import (
	"errors"
	"regexp"
	"strings"

	"github.com/pressly/goose/v3"
)

// dialect hides the differences between SQL backends: placeholders,
// migration set, and the mapping of driver errors to keystore sentinels
// (the one place that knows driver error shapes).
type dialect interface {
	name() string
	gooseDialect() goose.Dialect
	rebind(query string) string
	mapErr(err error) error
	// contains is a SQL condition: needle occurs in haystack (both
	// expressions), compared byte for byte.
	contains(haystack, needle string) string
}

// keystoreError reports whether err is already one of the store's own
// errors, which mapErr passes through unchanged.
func keystoreError(err error) bool {
	var ve *ValidationError
	var nf *NotFoundError
	var ce *ConflictError
	return errors.As(err, &ve) || errors.As(err, &nf) || errors.As(err, &ce)
}

// asciiLower folds A-Z only, as the lower() of SQLite (and of PostgreSQL on
// the "C"-collated columns of our schema) does. The store folds parameters
// in Go rather than with lower(?), whose result on PostgreSQL would follow
// the database's locale.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// uniqueFields maps unique index names to the API field they protect.
var uniqueFields = map[string]string{
	"users_username_unique":                "username",
	"users_email_unique":                   "email",
	"groups_full_path_unique":              "path",
	"keys_fingerprint_sha256_unique":       "fingerprint_sha256",
	"group_cas_fingerprint_sha256_unique":  "fingerprint_sha256",
	"gpg_keys_fingerprint_unique":          "fingerprint",
	"cert_revocations_unique":              "value",
	"personal_access_tokens_digest_unique": "token",
	"projects_group_path_unique":           "path",
}

var uniqueColumnRE = regexp.MustCompile(`([a-z_]+)\.([a-z_0-9]+)`)

type sqliteDialect struct{}

func (sqliteDialect) name() string                { return "sqlite" }
func (sqliteDialect) gooseDialect() goose.Dialect { return goose.DialectSQLite3 }
func (sqliteDialect) rebind(q string) string      { return q }

func (sqliteDialect) contains(h, n string) string { return "instr(" + h + ", " + n + ") > 0" }

func (sqliteDialect) mapErr(err error) error {
	if err == nil || keystoreError(err) {
		return err
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "UNIQUE constraint failed"):
		for idx, field := range uniqueFields {
			if strings.Contains(msg, idx) {
				return invalid(field, "has already been taken")
			}
		}
		// Column form: "UNIQUE constraint failed: keys.fingerprint_sha256 (2067)".
		// For a multi-column index the last column names the field.
		_, cols, _ := strings.Cut(msg, "UNIQUE constraint failed:")
		if all := uniqueColumnRE.FindAllStringSubmatch(cols, -1); all != nil {
			m := all[len(all)-1]
			field := m[2]
			if m[1] == "personal_access_tokens" && field == "digest" {
				field = "token"
			}
			return invalid(field, "has already been taken")
		}
		return &ConflictError{Msg: "already exists"}
	case strings.Contains(msg, "FOREIGN KEY constraint failed"):
		return notFound("Record")
	case strings.Contains(msg, "readonly database"),
		strings.Contains(msg, "database or disk is full"),
		strings.Contains(msg, "disk I/O error"),
		// A file system that fails every read makes SQLite report its pages
		// as malformed: the storage is unusable, not the request wrong.
		strings.Contains(msg, "database disk image is malformed"),
		strings.Contains(msg, "database is locked"),
		strings.Contains(msg, "SQLITE_BUSY"),
		strings.Contains(msg, "unable to open database"):
		return errors.Join(ErrUnavailable, err)
	}
	return err
}
