package keystore_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// TestWritesAreAuditedAndLogged drives one write of every kind, in order,
// and checks for each: the audit events it added, the change-log rows it
// appended (seq strictly increasing), and what subscribers were told, after
// the commit.
func TestWritesAreAuditedAndLogged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin := e.user(t, "admin")
	actor := keystore.Actor{UserID: admin.ID, RemoteIP: "203.0.113.5"}

	type seen struct {
		c         keystore.Change
		committed int64 // LastChange as read from inside the callback
	}
	var mu sync.Mutex
	var got []seen
	e.s.Subscribe(func(c keystore.Change) {
		last, err := e.s.LastChange(e.ctx)
		if err != nil {
			t.Errorf("LastChange inside subscriber: %v", err)
		}
		mu.Lock()
		got = append(got, seen{c, last})
		mu.Unlock()
	})

	// State threaded through the steps.
	var (
		u                    *keystore.User
		k, k2                *keystore.Key
		tok                  *keystore.Token
		grp                  *keystore.Group
		ca                   *keystore.GroupCA
		rev                  *keystore.Revocation
		gk                   *keystore.GPGKey
		member               = e.user(t, "member")
		_, keyLine           = newEd25519(t, "k")
		_, key2Line          = newEd25519(t, "k2")
		_, caLine            = newEd25519(t, "ca")
		gpgArmored           = armorEntity(t, newGPG(t, "U", "u@example.com", false), false)
		must                 = func(err error) { t.Helper(); mustOK(t, err) }
		id                   = func(v int64) string { return fmt.Sprint(v) }
		lastSeq, err0        = e.s.LastChange(e.ctx)
		auditTotal, _, errA0 = countAudit(e)
	)
	must(err0)
	must(errA0)

	steps := []struct {
		name string
		do   func()
	}{
		{"create-user", func() {
			var err error
			u, err = e.s.CreateUser(e.ctx, actor, keystore.UserInput{Username: ptr("u"), Email: ptr("u@example.com")})
			must(err)
		}},
		{"update-user", func() {
			_, err := e.s.UpdateUser(e.ctx, actor, u.ID, keystore.UserInput{Name: ptr("U")})
			must(err)
		}},
		{"block-user", func() { _, err := e.s.SetUserState(e.ctx, actor, u.ID, keystore.StateBlocked); must(err) }},
		{"unblock-user", func() { _, err := e.s.SetUserState(e.ctx, actor, u.ID, keystore.StateActive); must(err) }},
		{"create-key", func() {
			var err error
			k, err = e.s.CreateKey(e.ctx, actor, u.ID, keystore.KeyInput{Title: "k", Key: keyLine, UsageType: keystore.UsageAuth})
			must(err)
		}},
		{"merge-key-usage", func() {
			_, created, err := e.s.MergeKeyUsage(e.ctx, actor, u.ID, keystore.KeyInput{Title: "k", Key: keyLine, UsageType: keystore.UsageSigning})
			must(err)
			if created {
				t.Fatal("merge created a key")
			}
		}},
		{"drop-key-usage", func() { must(e.s.DropKeyUsage(e.ctx, actor, u.ID, k.ID, keystore.UsageSigning)) }},
		{"delete-key", func() { must(e.s.DeleteKey(e.ctx, actor, u.ID, k.ID)) }},
		{"create-token", func() {
			var err error
			tok, _, err = e.s.CreateToken(e.ctx, actor, u.ID, keystore.TokenInput{Name: "t", Scopes: []string{"api"}})
			must(err)
		}},
		{"revoke-token", func() { must(e.s.RevokeToken(e.ctx, actor, tok.ID)) }},
		{"create-group-with-owner", func() {
			var err error
			grp, err = e.s.CreateGroup(e.ctx, actor, keystore.GroupInput{Path: ptr("grp")}, u.ID)
			must(err)
		}},
		{"update-group", func() {
			_, err := e.s.UpdateGroup(e.ctx, actor, grp.ID, keystore.GroupInput{Description: ptr("d")})
			must(err)
		}},
		{"add-member", func() { _, err := e.s.AddMember(e.ctx, actor, grp.ID, member.ID, keystore.Guest); must(err) }},
		{"update-member", func() { _, err := e.s.UpdateMember(e.ctx, actor, grp.ID, member.ID, keystore.Reporter); must(err) }},
		{"remove-member", func() { must(e.s.RemoveMember(e.ctx, actor, grp.ID, member.ID)) }},
		{"create-ca", func() {
			var err error
			ca, err = e.s.CreateCA(e.ctx, actor, grp.ID, keystore.CAInput{Title: "ca", Key: caLine})
			must(err)
		}},
		{"create-revocation", func() {
			var err error
			rev, err = e.s.CreateRevocation(e.ctx, actor, ca, keystore.RevocationInput{Kind: keystore.RevokeSerial, Value: "5"})
			must(err)
		}},
		{"delete-revocation", func() { must(e.s.DeleteRevocation(e.ctx, actor, ca, rev.ID)) }},
		{"delete-ca", func() { must(e.s.DeleteCA(e.ctx, actor, grp.ID, ca.ID)) }},
		{"create-gpg-key", func() {
			var err error
			gk, err = e.s.CreateGPGKey(e.ctx, actor, u.ID, gpgArmored)
			must(err)
		}},
		{"revoke-gpg-key", func() { must(e.s.RevokeGPGKey(e.ctx, actor, u.ID, gk.ID)) }},
		{"delete-gpg-key", func() { must(e.s.DeleteGPGKey(e.ctx, actor, u.ID, gk.ID)) }},
		{"record-event", func() {
			must(e.s.RecordEvent(e.ctx, actor, "ssh_key_first_use", "key", 77, map[string]any{"fingerprint": "SHA256:x"}))
		}},
		{"delete-group", func() { must(e.s.DeleteGroup(e.ctx, actor, grp.ID)) }},
		{"delete-user-with-a-key", func() {
			var err error
			k2, err = e.s.CreateKey(e.ctx, actor, u.ID, keystore.KeyInput{Title: "k2", Key: key2Line})
			must(err)
			must(e.s.DeleteUser(e.ctx, actor, u.ID))
		}},
	}
	// Expected audit actions and change rows per step. Written as
	// functions of the ids the steps produce.
	want := map[string]func() ([]string, []string){
		"create-user": func() ([]string, []string) {
			return []string{"user_created user/" + id(u.ID)}, []string{"user/" + id(u.ID) + "/create"}
		},
		"update-user": func() ([]string, []string) {
			return []string{"user_updated user/" + id(u.ID)}, []string{"user/" + id(u.ID) + "/update"}
		},
		"block-user": func() ([]string, []string) {
			return []string{"user_blocked user/" + id(u.ID)}, []string{"user/" + id(u.ID) + "/update"}
		},
		"unblock-user": func() ([]string, []string) {
			return []string{"user_unblocked user/" + id(u.ID)}, []string{"user/" + id(u.ID) + "/update"}
		},
		"create-key": func() ([]string, []string) {
			return []string{"key_created key/" + id(k.ID)}, []string{"key/" + id(k.ID) + "/create"}
		},
		"merge-key-usage": func() ([]string, []string) {
			return []string{"key_updated key/" + id(k.ID)}, []string{"key/" + id(k.ID) + "/update"}
		},
		"drop-key-usage": func() ([]string, []string) {
			return []string{"key_updated key/" + id(k.ID)}, []string{"key/" + id(k.ID) + "/update"}
		},
		"delete-key": func() ([]string, []string) {
			return []string{"key_deleted key/" + id(k.ID)}, []string{"key/" + id(k.ID) + "/delete"}
		},
		"create-token": func() ([]string, []string) {
			return []string{"personal_access_token_created token/" + id(tok.ID)}, []string{"token/" + id(tok.ID) + "/create"}
		},
		"revoke-token": func() ([]string, []string) {
			return []string{"personal_access_token_revoked token/" + id(tok.ID)}, []string{"token/" + id(tok.ID) + "/update"}
		},
		"create-group-with-owner": func() ([]string, []string) {
			return []string{"group_created group/" + id(grp.ID), "member_added group/" + id(grp.ID)},
				[]string{"group/" + id(grp.ID) + "/create", "member/" + id(grp.ID) + "/update"}
		},
		"update-group": func() ([]string, []string) {
			return []string{"group_updated group/" + id(grp.ID)}, []string{"group/" + id(grp.ID) + "/update"}
		},
		"add-member": func() ([]string, []string) {
			return []string{"member_added group/" + id(grp.ID)}, []string{"member/" + id(grp.ID) + "/update"}
		},
		"update-member": func() ([]string, []string) {
			return []string{"member_updated group/" + id(grp.ID)}, []string{"member/" + id(grp.ID) + "/update"}
		},
		"remove-member": func() ([]string, []string) {
			return []string{"member_removed group/" + id(grp.ID)}, []string{"member/" + id(grp.ID) + "/delete"}
		},
		"create-ca": func() ([]string, []string) {
			return []string{"ssh_certificate_authority_created ca/" + id(ca.ID)}, []string{"ca/" + id(ca.ID) + "/create"}
		},
		"create-revocation": func() ([]string, []string) {
			return []string{"ssh_certificate_revoked revocation/" + id(rev.ID)}, []string{"revocation/" + id(rev.ID) + "/create"}
		},
		"delete-revocation": func() ([]string, []string) {
			return []string{"ssh_certificate_revocation_deleted revocation/" + id(rev.ID)}, []string{"revocation/" + id(rev.ID) + "/delete"}
		},
		"delete-ca": func() ([]string, []string) {
			return []string{"ssh_certificate_authority_deleted ca/" + id(ca.ID)}, []string{"ca/" + id(ca.ID) + "/delete"}
		},
		"create-gpg-key": func() ([]string, []string) {
			return []string{"gpg_key_created gpg_key/" + id(gk.ID)}, []string{"gpg_key/" + id(gk.ID) + "/create"}
		},
		"revoke-gpg-key": func() ([]string, []string) {
			return []string{"gpg_key_revoked gpg_key/" + id(gk.ID)}, []string{"gpg_key/" + id(gk.ID) + "/update"}
		},
		"delete-gpg-key": func() ([]string, []string) {
			return []string{"gpg_key_deleted gpg_key/" + id(gk.ID)}, []string{"gpg_key/" + id(gk.ID) + "/delete"}
		},
		"record-event": func() ([]string, []string) { return []string{"ssh_key_first_use key/77"}, nil },
		"delete-group": func() ([]string, []string) {
			return []string{"group_deleted group/" + id(grp.ID)}, []string{"group/" + id(grp.ID) + "/delete"}
		},
		"delete-user-with-a-key": func() ([]string, []string) {
			return []string{"key_created key/" + id(k2.ID), "user_deleted user/" + id(u.ID)},
				[]string{"key/" + id(k2.ID) + "/create", "key/" + id(k2.ID) + "/delete", "user/" + id(u.ID) + "/delete"}
		},
	}

	for _, st := range steps {
		mu.Lock()
		got = got[:0]
		mu.Unlock()
		st.do()
		wantAudit, wantChanges := want[st.name]()

		// Audit events, oldest first.
		n, evs, err := countAudit(e)
		must(err)
		if n-auditTotal != len(wantAudit) {
			t.Fatalf("%s: %d audit events, want %d (%v)", st.name, n-auditTotal, len(wantAudit), wantAudit)
		}
		for i, ev := range evs[:len(wantAudit)] {
			w := wantAudit[len(wantAudit)-1-i]
			if g := fmt.Sprintf("%s %s/%d", ev.Action, ev.TargetType, ev.TargetID); g != w {
				t.Errorf("%s: audit event = %q, want %q", st.name, g, w)
			}
			if ev.ActorID == nil || *ev.ActorID != admin.ID || ev.RemoteIP != actor.RemoteIP || !ev.At.Equal(t0ms) {
				t.Errorf("%s: audit event %+v lacks actor/ip/time", st.name, ev)
			}
			var details map[string]any
			if err := json.Unmarshal([]byte(ev.Details), &details); err != nil {
				t.Errorf("%s: details %q: %v", st.name, ev.Details, err)
			}
		}
		auditTotal = n

		// Change log rows.
		chs, err := e.s.ChangesSince(e.ctx, lastSeq, 1000)
		must(err)
		var gotChanges []string
		for _, c := range chs {
			if c.Seq <= lastSeq {
				t.Fatalf("%s: seq %d after %d", st.name, c.Seq, lastSeq)
			}
			lastSeq = c.Seq
			gotChanges = append(gotChanges, fmt.Sprintf("%s/%d/%s", c.Entity, c.EntityID, c.Op))
			if !c.At.Equal(t0ms) {
				t.Errorf("%s: change at %v", st.name, c.At)
			}
		}
		if strings.Join(gotChanges, " ") != strings.Join(wantChanges, " ") {
			t.Fatalf("%s: changes = %v, want %v", st.name, gotChanges, wantChanges)
		}
		if last, _ := e.s.LastChange(e.ctx); len(chs) > 0 && last != chs[len(chs)-1].Seq {
			t.Fatalf("%s: LastChange = %d, want %d", st.name, last, chs[len(chs)-1].Seq)
		}

		// Subscribers: the same changes, in the same order, each one
		// already committed when delivered.
		mu.Lock()
		delivered := append([]seen(nil), got...)
		mu.Unlock()
		if len(delivered) != len(chs) {
			t.Fatalf("%s: %d callbacks, want %d", st.name, len(delivered), len(chs))
		}
		for i, d := range delivered {
			c := chs[i]
			if d.c.Entity != c.Entity || d.c.EntityID != c.EntityID || d.c.Op != c.Op || !d.c.At.Equal(c.At) {
				t.Errorf("%s: callback %d = %+v, want %+v", st.name, i, d.c, c)
			}
			if d.committed < c.Seq {
				t.Errorf("%s: callback for seq %d ran before it was committed (LastChange %d)", st.name, c.Seq, d.committed)
			}
		}
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// countAudit returns the total and the events, newest first.
func countAudit(e *env) (int, []*keystore.AuditEvent, error) {
	evs, n, err := e.s.ListAuditEvents(e.ctx, keystore.AuditFilter{}, keystore.Page{PerPage: 100})
	return n, evs, err
}

// TestSubscriberSeq: a subscriber can only resume from the change log if
// it is told each change's sequence number.
func TestSubscriberSeq(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var got []keystore.Change
	e.s.Subscribe(func(c keystore.Change) { got = append(got, c) })
	e.user(t, "a")
	e.user(t, "b")
	chs, err := e.s.ChangesSince(e.ctx, 0, 10)
	if err != nil || len(chs) != 2 || len(got) != 2 {
		t.Fatalf("log %v (%v), callbacks %v", chs, err, got)
	}
	for i := range chs {
		if got[i].Seq != chs[i].Seq {
			t.Errorf("callback %d Seq = %d, want %d", i, got[i].Seq, chs[i].Seq)
		}
	}
}

// TestFailedWriteLeavesNoTrace: a refused write adds no audit event, no
// change row and calls no subscriber.
func TestFailedWriteLeavesNoTrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.user(t, "alice")
	top := e.group(t, "top", nil, alice.ID)
	_, line := newEd25519(t, "")
	e.key(t, alice.ID, line, "")
	calls := 0
	e.s.Subscribe(func(keystore.Change) { calls++ })
	last, _ := e.s.LastChange(e.ctx)
	n0, _, _ := countAudit(e)

	failures := map[string]error{}
	_, failures["duplicate-user"] = e.s.CreateUser(e.ctx, sys, keystore.UserInput{Username: ptr("ALICE"), Email: ptr("x@example.com")})
	_, failures["duplicate-key"] = e.s.CreateKey(e.ctx, sys, alice.ID, keystore.KeyInput{Title: "dup", Key: line})
	failures["last-owner"] = e.s.RemoveMember(e.ctx, sys, top.ID, alice.ID)
	_, failures["group-path-taken"] = e.s.CreateGroup(e.ctx, sys, keystore.GroupInput{Path: ptr("TOP")}, alice.ID)
	_, failures["ca-on-missing-group"] = e.s.CreateCA(e.ctx, sys, 999, keystore.CAInput{Title: "x", Key: line})
	failures["delete-missing-key"] = e.s.DeleteKey(e.ctx, sys, alice.ID, 999)
	for name, err := range failures {
		if err == nil {
			t.Errorf("%s: succeeded", name)
		}
	}
	if now, _ := e.s.LastChange(e.ctx); now != last {
		t.Errorf("change log moved from %d to %d", last, now)
	}
	if n, _, _ := countAudit(e); n != n0 {
		t.Errorf("audit events %d -> %d", n0, n)
	}
	if calls != 0 {
		t.Errorf("%d subscriber calls", calls)
	}
	// The half-done group (created before its owner membership failed) is
	// not left behind either.
	if _, n, _ := e.s.ListGroups(e.ctx, keystore.GroupFilter{}, keystore.Page{}); n != 1 {
		t.Errorf("%d groups, want 1", n)
	}
}

func TestListAuditEventsFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.user(t, "u")
	g := e.group(t, "g", nil, u.ID)
	other := e.group(t, "other", nil, u.ID)
	_, line := newEd25519(t, "")
	e.clock.Advance(time.Hour)
	ca, err := e.s.CreateCA(e.ctx, sys, g.ID, keystore.CAInput{Title: "ca", Key: line})
	mustOK(t, err)
	r, err := e.s.CreateRevocation(e.ctx, sys, ca, keystore.RevocationInput{Kind: keystore.RevokeKeyID, Value: "x"})
	mustOK(t, err)
	_, line2 := newEd25519(t, "")
	_, err = e.s.CreateCA(e.ctx, sys, other.ID, keystore.CAInput{Title: "ca", Key: line2})
	mustOK(t, err)

	cases := []struct {
		name string
		f    keystore.AuditFilter
		want []string // newest first
	}{
		{"group-and-what-belongs-to-it", keystore.AuditFilter{GroupID: g.ID}, []string{
			"ssh_certificate_revoked revocation/" + fmt.Sprint(r.ID),
			"ssh_certificate_authority_created ca/" + fmt.Sprint(ca.ID),
			"member_added group/" + fmt.Sprint(g.ID),
			"group_created group/" + fmt.Sprint(g.ID),
		}},
		{"target", keystore.AuditFilter{TargetType: "user", TargetID: u.ID}, []string{"user_created user/" + fmt.Sprint(u.ID)}},
		{"after", keystore.AuditFilter{After: ptr(t0.Add(time.Hour)), TargetType: "ca"}, []string{
			"ssh_certificate_authority_created ca/" + fmt.Sprint(ca.ID+1),
			"ssh_certificate_authority_created ca/" + fmt.Sprint(ca.ID),
		}},
		{"before", keystore.AuditFilter{Before: ptr(t0.Add(time.Hour)), TargetType: "ca"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			evs, n, err := e.s.ListAuditEvents(e.ctx, c.f, keystore.Page{})
			mustOK(t, err)
			var got []string
			for _, ev := range evs {
				got = append(got, fmt.Sprintf("%s %s/%d", ev.Action, ev.TargetType, ev.TargetID))
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") || n != len(c.want) {
				t.Fatalf("got %v (total %d), want %v", got, n, c.want)
			}
			for _, ev := range evs {
				if ev.ActorID != nil {
					t.Fatalf("system write recorded actor %d", *ev.ActorID)
				}
			}
		})
	}
}
