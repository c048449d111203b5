package keystore

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// ExportFormat names keygate's export document.
const ExportFormat = "keygate-export"

// exportTables are the keystore's tables, parents before children, each
// with the order its rows are written in (the same on every backend).
var exportTables = func() []struct{ name, order string } {
	var out []struct{ name, order string }
	for _, e := range Entities {
		order := "id"
		if e.Entity == EntityMember {
			order = "group_id, user_id"
		}
		out = append(out, struct{ name, order string }{e.Table, order})
		if e.Entity == EntityKey {
			out = append(out, struct{ name, order string }{"deleted_keys", "id"},
				struct{ name, order string }{"revoked_keys", "id"})
		}
		if e.Entity == EntityDeployKey {
			out = append(out, struct{ name, order string }{"deploy_key_projects", "deploy_key_id, project_id"},
				struct{ name, order string }{"deploy_key_groups", "deploy_key_id, group_id"})
		}
	}
	out = append(out, struct{ name, order string }{"lfs_locks", "id"})
	// Issuance (no entity of the auth index): trusted issuers, trust
	// rules, issued certificates.
	out = append(out, struct{ name, order string }{"oidc_issuers", "id"},
		struct{ name, order string }{"ssh_certificate_trust_rules", "id"},
		struct{ name, order string }{"issued_certificates", "id"})
	// Managed host CAs and their certificates, and the host KRL's version.
	out = append(out, struct{ name, order string }{"host_cas", "id"},
		struct{ name, order string }{"host_certificates", "id"},
		struct{ name, order string }{"host_krl", "singleton"})
	return append(out, struct{ name, order string }{"audit_events", "id"}, struct{ name, order string }{"changes", "seq"},
		struct{ name, order string }{"audit_stream_destinations", "id"}, struct{ name, order string }{"audit_stream_sinks", "name"},
		struct{ name, order string }{"audit_outbox", "id"})
}()

// SealedKeysNote is the export's word on managed CAs' private keys: they
// are in it only sealed, and open only with the CA encryption key.
const SealedKeysNote = "managed SSH certificate authorities' private keys are in this export only sealed " +
	"(AES-256-GCM, group_cas.sealed_private_key and host_cas.sealed_private_key) under keygate's CA encryption key (--ca-key-file, by default " +
	"DATA_DIR/ca-encryption.key), which is never in the database or an export: keep a copy of that file apart " +
	"from the exports (a password manager, a sealed secret); without it a restored keygate cannot sign with them"

// Export is one keystore as a JSON document: every row of every table, with
// ids and millisecond times as stored.
type Export struct {
	Format        string        `json:"format"`
	SchemaVersion int64         `json:"schema_version"`
	Backend       string        `json:"backend"`
	ExportedAt    time.Time     `json:"exported_at"`
	Tables        []ExportTable `json:"tables"`
}

// ExportTable is one table: column names and rows of values (JSON numbers,
// strings or null) in column order.
type ExportTable struct {
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
}

// Export writes the whole keystore to w as one JSON document (see Export),
// read in one transaction so that it is a consistent snapshot.
func (s *Store) Export(ctx context.Context, w io.Writer) error {
	current, _, err := s.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if current == 0 {
		return errors.New("keystore: export: the database has no keygate schema")
	}
	if err := s.checkTables(ctx); err != nil {
		return err
	}
	// A read-only snapshot: deferred BEGIN on SQLite (WAL: writers go on),
	// REPEATABLE READ on PostgreSQL.
	opts := &sql.TxOptions{ReadOnly: true, Isolation: s.dialect.snapshotIsolation()}
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return s.dialect.mapErr(err)
	}
	defer tx.Rollback()

	bw := bufio.NewWriterSize(w, 64<<10)
	var managed int
	if err := tx.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM group_cas WHERE managed = 1) +
		(SELECT COUNT(*) FROM host_cas WHERE sealed_private_key IS NOT NULL)`).Scan(&managed); err != nil {
		return err
	}
	var notes []string
	if managed > 0 {
		notes = append(notes, SealedKeysNote)
	}
	head, err := json.Marshal(struct {
		Format        string    `json:"format"`
		SchemaVersion int64     `json:"schema_version"`
		Backend       string    `json:"backend"`
		ExportedAt    time.Time `json:"exported_at"`
		Notes         []string  `json:"notes,omitempty"`
	}{ExportFormat, current, s.Backend(), s.now().UTC().Truncate(time.Millisecond), notes})
	if err != nil {
		return err
	}
	// The header's fields, then the tables streamed row by row.
	bw.Write(head[:len(head)-1])
	bw.WriteString(",\n\"tables\":[")
	for i, tbl := range exportTables {
		if i > 0 {
			bw.WriteString(",")
		}
		if err := exportTable(ctx, tx, tbl.name, tbl.order, bw); err != nil {
			return fmt.Errorf("keystore: export %s: %w", tbl.name, err)
		}
	}
	bw.WriteString("\n]}\n")
	return bw.Flush()
}

func exportTable(ctx context.Context, tx *sql.Tx, name, order string, w *bufio.Writer) error {
	rows, err := tx.QueryContext(ctx, `SELECT * FROM `+name+` ORDER BY `+order)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	b, err := json.Marshal(cols)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\n{\"name\":%q,\"columns\":%s,\"rows\":[", name, b)
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for i, v := range vals {
			switch x := v.(type) {
			case []byte:
				vals[i] = string(x)
			case int32:
				vals[i] = int64(x)
			case nil, int64, string:
			default:
				return fmt.Errorf("column %s: unexpected %T", cols[i], v)
			}
		}
		b, err := json.Marshal(vals)
		if err != nil {
			return err
		}
		if n > 0 {
			w.WriteString(",")
		}
		w.WriteString("\n")
		w.Write(b)
		n++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	w.WriteString("]}")
	return nil
}

// checkTables makes sure the export covers every table the schema has.
func (s *Store) checkTables(ctx context.Context) error {
	rows, err := s.query(ctx, s.dialect.tablesQuery())
	if err != nil {
		return err
	}
	defer rows.Close()
	known := map[string]bool{"goose_db_version": true}
	for _, t := range exportTables {
		known[t.name] = true
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return err
		}
		if !known[name] {
			return fmt.Errorf("keystore: export: table %s is not covered by this build", name)
		}
	}
	return rows.Err()
}

// ErrNotEmpty: Import refuses a keystore that already holds data.
var ErrNotEmpty = errors.New("keystore: the target keystore is not empty")

// Import loads a document written by Export into this keystore, which
// must be empty and at the same schema version as the export. Ids and
// times are kept as they are; on PostgreSQL the id sequences are moved past
// the imported ids. Everything happens in one transaction: a failed import
// leaves the keystore empty. Subscribers are not told (load the index
// afterwards). The document is streamed, one row at a time, so a large
// keystore does not have to fit in memory twice; "format" and
// "schema_version" must come before "tables", as Export writes them.
func (s *Store) Import(ctx context.Context, r io.Reader) error {
	current, _, err := s.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	dec.UseNumber()
	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	var format string
	var version json.Number
	imported := false
	for dec.More() {
		key, err := objectKey(dec)
		if err != nil {
			return err
		}
		switch key {
		case "format":
			if err := dec.Decode(&format); err != nil {
				return notAnExport(err)
			}
		case "schema_version":
			if err := dec.Decode(&version); err != nil {
				return notAnExport(err)
			}
		case "tables":
			if format != ExportFormat {
				return fmt.Errorf("keystore: import: not a keygate export (format %q)", format)
			}
			if v, err := version.Int64(); err != nil || v != current {
				return fmt.Errorf("keystore: import: the export is at schema version %s, the target at %d; run `keygate migrate` on the older one and export again",
					version, current)
			}
			if imported {
				return notAnExport(errors.New(`"tables" appears twice`))
			}
			if err := s.importTables(ctx, dec); err != nil {
				if s.dialect.unavailable(err) {
					return errors.Join(ErrUnavailable, err)
				}
				return err
			}
			imported = true
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return notAnExport(err)
			}
		}
	}
	if !imported {
		if format != ExportFormat {
			return fmt.Errorf("keystore: import: not a keygate export (format %q)", format)
		}
		return notAnExport(errors.New(`no "tables"`))
	}
	return nil
}

func notAnExport(err error) error {
	return fmt.Errorf("keystore: import: not a keygate export: %w", err)
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return notAnExport(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return notAnExport(fmt.Errorf("expected %q, found %v", want, tok))
	}
	return nil
}

func objectKey(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", notAnExport(err)
	}
	key, ok := tok.(string)
	if !ok {
		return "", notAnExport(fmt.Errorf("expected a key, found %v", tok))
	}
	return key, nil
}

// importTables reads the "tables" array into the keystore in one
// transaction, committed only when the whole array has been read.
func (s *Store) importTables(ctx context.Context, dec *json.Decoder) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if !s.dialect.serialisesWrites() {
		if err := s.dialect.lockWrites(ctx, tx); err != nil {
			return err
		}
	}
	known := map[string]bool{}
	for _, tbl := range exportTables {
		known[tbl.name] = true
		var n int64
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+tbl.name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w: table %s has %d rows (import only into a new, empty keystore)", ErrNotEmpty, tbl.name, n)
		}
	}
	if err := expectDelim(dec, '['); err != nil {
		return err
	}
	seen := map[string]bool{}
	for dec.More() {
		name, err := s.importTable(ctx, tx, dec, known, seen)
		if err != nil {
			return err
		}
		seen[name] = true
	}
	if err := expectDelim(dec, ']'); err != nil {
		return err
	}
	for _, tbl := range exportTables {
		if !seen[tbl.name] {
			return fmt.Errorf("keystore: import: the export has no table %s", tbl.name)
		}
	}
	var serials []string
	for _, tbl := range exportTables {
		if tbl.order == "id" {
			serials = append(serials, tbl.name)
		}
	}
	if err := s.dialect.resetSequences(ctx, tx, serials); err != nil {
		return err
	}
	return tx.Commit()
}

// importTable reads one {"name", "columns", "rows"} object and inserts its
// rows; name and columns must come before rows.
func (s *Store) importTable(ctx context.Context, tx *sql.Tx, dec *json.Decoder, known, seen map[string]bool) (string, error) {
	if err := expectDelim(dec, '{'); err != nil {
		return "", err
	}
	var name string
	var cols []string
	for dec.More() {
		key, err := objectKey(dec)
		if err != nil {
			return "", err
		}
		switch key {
		case "name":
			if err := dec.Decode(&name); err != nil {
				return "", notAnExport(err)
			}
			if !known[name] {
				return "", fmt.Errorf("keystore: import: unknown table %q", name)
			}
			if seen[name] {
				return "", fmt.Errorf("keystore: import: table %s appears twice", name)
			}
		case "columns":
			if err := dec.Decode(&cols); err != nil {
				return "", notAnExport(err)
			}
		case "rows":
			if name == "" || len(cols) == 0 {
				return "", notAnExport(errors.New(`a table's "name" and "columns" must come before its "rows"`))
			}
			if err := s.importRows(ctx, tx, dec, name, cols); err != nil {
				return "", err
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return "", notAnExport(err)
			}
		}
	}
	if name == "" {
		return "", notAnExport(errors.New(`a table without "name"`))
	}
	return name, expectDelim(dec, '}')
}

func (s *Store) importRows(ctx context.Context, tx *sql.Tx, dec *json.Decoder, name string, cols []string) error {
	for _, c := range cols {
		if !identRE(c) {
			return fmt.Errorf("keystore: import: table %s: bad column name %q", name, c)
		}
	}
	if err := expectDelim(dec, '['); err != nil {
		return err
	}
	query := s.dialect.rebind(`INSERT INTO ` + name + ` (` + strings.Join(cols, ", ") + `) VALUES (?` +
		strings.Repeat(", ?", len(cols)-1) + `)`)
	stmt, err := tx.PrepareContext(ctx, query)
	if err != nil {
		return fmt.Errorf("keystore: import %s: %w", name, err)
	}
	defer stmt.Close()
	args := make([]any, len(cols))
	for i := 1; dec.More(); i++ {
		var row []any
		if err := dec.Decode(&row); err != nil {
			return notAnExport(fmt.Errorf("table %s, row %d: %w", name, i, err))
		}
		if len(row) != len(cols) {
			return fmt.Errorf("keystore: import %s: row %d has %d values for %d columns", name, i, len(row), len(cols))
		}
		for j, v := range row {
			switch x := v.(type) {
			case json.Number:
				n, err := strconv.ParseInt(string(x), 10, 64)
				if err != nil {
					return fmt.Errorf("keystore: import %s: row %d, %s: %q is not an integer", name, i, cols[j], x)
				}
				args[j] = n
			case string, nil:
				args[j] = x
			default:
				return fmt.Errorf("keystore: import %s: row %d, %s: unexpected %T", name, i, cols[j], v)
			}
		}
		if _, err := stmt.ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("keystore: import %s: row %d: %w", name, i, err)
		}
	}
	return expectDelim(dec, ']')
}

// identRE reports whether s is a plain lower-case SQL identifier.
func identRE(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
