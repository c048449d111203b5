package keystore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testutil"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/pgtest"
)

// seedAll puts at least one row in every table through the store's API,
// with a deleted row here and there so that ids have holes.
func seedAll(t *testing.T, e *env) {
	t.Helper()
	root, err := e.s.EnsureAdmin(e.ctx, "")
	mustOK(t, err)
	if root == "" {
		t.Fatal("EnsureAdmin created no token")
	}
	alice := e.user(t, "alice")
	bob := e.user(t, "Bob")
	_, _, err = e.s.CreateToken(e.ctx, sys, alice.ID, keystore.TokenInput{Name: "ci", Scopes: []string{"api", "read_api"}, ExpiresAt: ptr(t0.Add(48 * time.Hour))})
	mustOK(t, err)
	_, l1 := newEd25519(t, "alice@laptop ünïcode")
	k1 := e.key(t, alice.ID, l1, keystore.UsageAuth)
	_, l2 := newEd25519(t, "")
	e.key(t, bob.ID, l2, keystore.UsageSigning)
	_, l3 := newEd25519(t, "gone")
	gone := e.key(t, alice.ID, l3, "")
	mustOK(t, e.s.DeleteKey(e.ctx, sys, alice.ID, gone.ID))
	_, l4 := newEd25519(t, "stolen")
	stolen := e.key(t, bob.ID, l4, "")
	mustOK(t, e.s.RevokeKey(e.ctx, sys, bob.ID, stolen.ID))
	e.clock.Advance(1234567 * time.Microsecond)
	_, err = e.s.CreateGPGKey(e.ctx, sys, alice.ID, armorEntity(t, newGPG(t, "Alice", "alice@example.com", false), false))
	mustOK(t, err)
	g := e.group(t, "platform", nil, alice.ID)
	sub := e.group(t, "infra", &g.ID, alice.ID)
	_, err = e.s.AddMember(e.ctx, sys, sub.ID, bob.ID, keystore.Developer)
	mustOK(t, err)
	_, caLine := newEd25519(t, "ca")
	ca, err := e.s.CreateCA(e.ctx, sys, g.ID, keystore.CAInput{Title: "CA", Key: caLine})
	mustOK(t, err)
	_, err = e.s.CreateRevocation(e.ctx, sys, ca, keystore.RevocationInput{Kind: "serial", Value: "42", Reason: "lost"})
	mustOK(t, err)
	proj, err := e.s.CreateProject(e.ctx, sys, keystore.ProjectInput{GroupID: sub.ID, Name: "Repo", Path: "repo"})
	mustOK(t, err)
	_, dl := newEd25519(t, "ci")
	dk, err := e.s.CreateDeployKey(e.ctx, sys, keystore.DeployScope{ProjectID: proj.ID}, keystore.DeployKeyInput{Title: "ci", Key: dl, CanPush: true})
	mustOK(t, err)
	_, err = e.s.EnableDeployKey(e.ctx, sys, dk.ID, keystore.DeployScope{GroupID: g.ID})
	mustOK(t, err)
	_, err = e.s.CreateLFSLock(e.ctx, sys, proj.ID, bob.ID, "assets/logo.psd", "refs/heads/main")
	mustOK(t, err)
	_, err = e.s.CreateBastionTarget(e.ctx, sys, g.ID, keystore.BastionTargetInput{Pattern: "*.internal:22", Description: "hosts"})
	mustOK(t, err)
	_, err = e.s.CreateBastionAllowance(e.ctx, sys, g.ID, keystore.BastionAllowanceInput{Pattern: "10.20.0.0/16:*", Description: "lab"})
	mustOK(t, err)
	_, err = e.s.UpdateUser(e.ctx, sys, bob.ID, keystore.UserInput{EnterpriseGroupID: &g.ID})
	mustOK(t, err)
	pol, err := keystore.ParseKeyPolicy(keystore.KeyPolicy{}, map[string]string{"rsa_key_restriction": "3072", "max_ssh_certificate_lifetime": "24"})
	mustOK(t, err)
	_, err = e.s.SetKeyPolicy(e.ctx, sys, 0, pol)
	mustOK(t, err)
	_, err = e.s.SetKeyPolicy(e.ctx, sys, g.ID, pol)
	mustOK(t, err)
	dest := "https://siem.example.com/keygate"
	_, err = e.s.CreateStreamDestination(e.ctx, sys, keystore.StreamDestinationInput{DestinationURL: &dest})
	mustOK(t, err)
	_, err = e.s.RegisterSink(e.ctx, "file:node1:/var/log/keygate-audit.jsonl")
	mustOK(t, err)
	mustOK(t, e.s.RecordEvent(e.ctx, keystore.Actor{UserID: alice.ID, RemoteIP: "192.0.2.1"}, "key_first_use", "key", k1.ID, map[string]any{"via": "ssh"}))
	// Issuance: a managed CA, a trusted issuer, a trust rule, a certificate.
	_, err = e.s.GenerateCA(e.ctx, sys, g.ID, "managed", "")
	mustOK(t, err)
	_, err = e.s.CreateOIDCIssuer(e.ctx, sys, keystore.OIDCIssuerInput{Issuer: "https://idp.example.com", ClientID: "keygate"})
	mustOK(t, err)
	_, err = e.s.CreateTrustRule(e.ctx, sys, proj.ID, keystore.TrustRuleInput{Issuer: "https://idp.example.com", Audience: "keygate-ci",
		Claims: map[string]string{"project_path": "platform/infra/repo"}, Access: keystore.AccessRead})
	mustOK(t, err)
	_, err = e.s.AddMember(e.ctx, sys, g.ID, bob.ID, keystore.Reporter)
	mustOK(t, err)
	_, err = e.s.IssueUserCertificate(e.ctx, sys, keystore.UserCertRequest{UserID: bob.ID, PublicKey: l2, GitUser: "git", Source: keystore.CertSourceToken})
	mustOK(t, err)
	// A host CA, a fleet server's host certificate, revoked.
	_, err = e.s.GenerateHostCA(e.ctx, sys, "fleet hosts", "")
	mustOK(t, err)
	_, hl := newEd25519(t, "root@web1")
	hc, err := e.s.IssueHostCertificate(e.ctx, sys, keystore.HostCertRequest{PublicKey: hl, Principals: []string{"web1.internal"}})
	mustOK(t, err)
	_, err = e.s.RevokeHostCertificate(e.ctx, sys, hc.ID, "decommissioned")
	mustOK(t, err)
}

func exportDoc(t *testing.T, s *keystore.Store) (*keystore.Export, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mustOK(t, s.Export(context.Background(), &buf))
	var doc keystore.Export
	dec := json.NewDecoder(bytes.NewReader(buf.Bytes()))
	dec.UseNumber()
	mustOK(t, dec.Decode(&doc))
	return &doc, buf.Bytes()
}

// emptyEnv is a fresh store on the given backend.
func emptyEnv(t *testing.T, backend string) *env {
	t.Helper()
	e := &env{ctx: context.Background(), dir: t.TempDir(), clock: testutil.NewClock(t0.Add(24 * time.Hour))}
	e.dsn = e.dir + "/keygate.db"
	if backend == "postgres" {
		e.dsn = pgtest.NewDatabase(t)
	}
	e.s = e.open(t)
	return e
}

// TestExportImportRoundTrip: every row of every table survives an export
// and an import into each backend, ids and milliseconds included, and the
// imported keystore keeps working (new ids after the imported ones).
func TestExportImportRoundTrip(t *testing.T) {
	t.Parallel()
	src := newEnv(t)
	seedAll(t, src)
	doc, raw := exportDoc(t, src.s)
	if doc.Format != keystore.ExportFormat || doc.SchemaVersion < 3 || doc.Backend != src.s.Backend() {
		t.Fatalf("header: %+v", doc)
	}
	if len(doc.Tables) != 29 {
		t.Fatalf("%d tables exported", len(doc.Tables))
	}
	for _, tbl := range doc.Tables {
		if len(tbl.Rows) == 0 {
			t.Errorf("table %s exported empty: the seed misses it", tbl.Name)
		}
	}
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run("into-"+backend, func(t *testing.T) {
			if backend == "postgres" {
				pgtest.Require(t)
			}
			dst := emptyEnv(t, backend)
			mustOK(t, dst.s.Import(dst.ctx, bytes.NewReader(raw)))
			again, _ := exportDoc(t, dst.s)
			if !reflect.DeepEqual(again.Tables, doc.Tables) {
				for i := range doc.Tables {
					if !reflect.DeepEqual(again.Tables[i], doc.Tables[i]) {
						t.Errorf("table %s differs:\n got %v\nwant %v", doc.Tables[i].Name, again.Tables[i], doc.Tables[i])
					}
				}
				t.FailNow()
			}
			// Reads see the imported rows; writes continue after them.
			alice, err := dst.s.UserByUsername(dst.ctx, "alice")
			mustOK(t, err)
			if !alice.CreatedAt.Equal(t0ms) {
				t.Fatalf("alice.CreatedAt = %v, want %v", alice.CreatedAt, t0ms)
			}
			carol := dst.user(t, "carol")
			if carol.ID <= alice.ID+1 {
				t.Fatalf("new user id %d, want one after the imported ids", carol.ID)
			}
			last, err := src.s.LastChange(src.ctx)
			mustOK(t, err)
			now, err := dst.s.LastChange(dst.ctx)
			mustOK(t, err)
			if now <= last {
				t.Fatalf("change log at %d after a write, was %d at import", now, last)
			}
			// A second import is refused: the target is not empty.
			err = dst.s.Import(dst.ctx, bytes.NewReader(raw))
			if !errors.Is(err, keystore.ErrNotEmpty) {
				t.Fatalf("second import: %v, want ErrNotEmpty", err)
			}
		})
	}
}

// TestImportRefusals: malformed or mismatched documents are refused with a
// clear error, and a failed import leaves nothing behind.
func TestImportRefusals(t *testing.T) {
	t.Parallel()
	src := newEnv(t)
	seedAll(t, src)
	_, raw := exportDoc(t, src.s)
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		mustOK(t, dec.Decode(&m))
		f(m)
		b, err := json.Marshal(m)
		mustOK(t, err)
		return b
	}
	table := func(m map[string]any, name string) map[string]any {
		for _, x := range m["tables"].([]any) {
			if tm := x.(map[string]any); tm["name"] == name {
				return tm
			}
		}
		t.Fatalf("no table %s", name)
		return nil
	}
	cases := []struct {
		name, want string
		doc        []byte
	}{
		{"not-json", "not a keygate export", []byte("hello")},
		{"other-format", "not a keygate export", edit(func(m map[string]any) { m["format"] = "something" })},
		{"newer-schema", "schema version", edit(func(m map[string]any) { m["schema_version"] = 999 })},
		{"missing-table", "no table keys", edit(func(m map[string]any) {
			ts := m["tables"].([]any)
			var keep []any
			for _, x := range ts {
				if x.(map[string]any)["name"] != "keys" {
					keep = append(keep, x)
				}
			}
			m["tables"] = keep
		})},
		{"bad-column", "bad column name", edit(func(m map[string]any) {
			table(m, "users")["columns"].([]any)[1] = "username; DROP TABLE users"
		})},
		{"short-row", "has 1 values", edit(func(m map[string]any) {
			table(m, "changes")["rows"].([]any)[0] = []any{1}
		})},
		// Cut off in the middle: the tables read so far must not remain.
		{"truncated", "not a keygate export", raw[:len(raw)*2/3]},
		{"trailing-garbage-in-rows", "not a keygate export", bytes.Replace(raw, []byte(`"rows":[`), []byte(`"rows":[{},`), 1)},
		// The last table fails: nothing of the earlier ones may remain.
		{"late-failure", "changes", edit(func(m map[string]any) {
			rows := table(m, "changes")["rows"].([]any)
			rows[1] = rows[0] // duplicate seq
		})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dst := emptyEnv(t, src.s.Backend())
			err := dst.s.Import(dst.ctx, bytes.NewReader(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Import = %v, want an error mentioning %q", err, c.want)
			}
			_, total, err := dst.s.ListUsers(dst.ctx, keystore.UserFilter{}, keystore.Page{})
			mustOK(t, err)
			if total != 0 {
				t.Fatalf("%d users after a failed import", total)
			}
			// And the right document still imports.
			mustOK(t, dst.s.Import(dst.ctx, bytes.NewReader(raw)))
		})
	}
}

// TestExportCoversEveryEntity: export writes a table for every entity,
// from the same list as the change log.
func TestExportCoversEveryEntity(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	doc, _ := exportDoc(t, e.s)
	tables := map[string]bool{}
	for _, tbl := range doc.Tables {
		tables[tbl.Name] = true
	}
	for _, ent := range keystore.Entities {
		if !tables[ent.Table] {
			t.Errorf("entity %s: table %s not exported", ent.Entity, ent.Table)
		}
	}
}
