package keystore_test

import (
	"crypto/sha256"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/internal/krl"
	"github.com/keygate/keygate/keystore"
)

// parseHostCert parses an issued host certificate line and checks that
// ca signed it (x/crypto's CertChecker as a client would: host
// certificate, the address's host among the principals, in its window).
func parseHostCert(t *testing.T, line string, ca *keystore.HostCA, host string, now time.Time) *gossh.Certificate {
	t.Helper()
	pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatalf("certificate %q: %v", line, err)
	}
	cert, ok := pub.(*gossh.Certificate)
	if !ok || cert.CertType != gossh.HostCert {
		t.Fatalf("not a host certificate: %q", line)
	}
	caPub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(ca.Key))
	if err != nil {
		t.Fatal(err)
	}
	checker := &gossh.CertChecker{
		IsHostAuthority: func(k gossh.PublicKey, _ string) bool { return string(k.Marshal()) == string(caPub.Marshal()) },
		Clock:           func() time.Time { return now },
	}
	if err := checker.CheckHostKey(net.JoinHostPort(host, "22"), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22}, cert); err != nil {
		t.Fatalf("CertChecker refuses the certificate for %s: %v", host, err)
	}
	return cert
}

// TestHostCALifecycle: admins generate host CAs of the three key types
// (ed25519 by default), sealed in the database, listed oldest first;
// deleting one destroys its private key and takes it out of the list;
// bad input is a field error, and no CA encryption key is a conflict.
func TestHostCALifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin := e.user(t, "root-admin")
	a := keystore.Actor{UserID: admin.ID}
	var cas []*keystore.HostCA
	for _, kt := range []struct{ in, want, algo string }{
		{"", keystore.CAKeyEd25519, gossh.KeyAlgoED25519},
		{"ecdsa", keystore.CAKeyECDSA, gossh.KeyAlgoECDSA256},
		{"rsa", keystore.CAKeyRSA, gossh.KeyAlgoRSA},
	} {
		c, err := e.s.GenerateHostCA(e.ctx, a, "  fleet "+kt.want+" ", kt.in)
		if err != nil {
			t.Fatalf("GenerateHostCA(%q): %v", kt.in, err)
		}
		if c.KeyType != kt.want || !strings.HasPrefix(c.Key, kt.algo+" ") || c.Title != "fleet "+kt.want ||
			c.CreatedBy == nil || *c.CreatedBy != admin.ID || !strings.HasPrefix(c.FingerprintSHA256, "SHA256:") {
			t.Errorf("GenerateHostCA(%q) = %+v", kt.in, c)
		}
		cas = append(cas, c)
	}
	list, total, err := e.s.ListHostCAs(e.ctx, keystore.Page{})
	if err != nil || total != 3 || list[0].ID != cas[0].ID || list[2].ID != cas[2].ID {
		t.Fatalf("ListHostCAs = %d %v, %v", total, list, err)
	}
	db := e.rawDB(t)
	var sealedKey string
	if err := db.QueryRow(`SELECT sealed_private_key FROM host_cas WHERE id = ` + strconv.FormatInt(cas[0].ID, 10)).Scan(&sealedKey); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sealedKey, "kgsealed1:"+testCAKey.ID()+":") || strings.Contains(sealedKey, "PRIVATE") {
		t.Errorf("the private key is not sealed: %.40q", sealedKey)
	}

	_, err = e.s.GenerateHostCA(e.ctx, a, "", "dsa")
	wantField(t, err, "title", "blank")
	wantField(t, err, "key_type", "ed25519, ecdsa, rsa")

	if err := e.s.DeleteHostCA(e.ctx, a, cas[0].ID); err != nil {
		t.Fatal(err)
	}
	wantIs(t, e.s.DeleteHostCA(e.ctx, a, cas[0].ID), keystore.ErrNotFound)
	_, err = e.s.HostCA(e.ctx, cas[0].ID)
	wantIs(t, err, keystore.ErrNotFound)
	if got, err := e.s.HostCA(e.ctx, cas[1].ID); err != nil || got.Key != cas[1].Key {
		t.Errorf("HostCA(%d) = %+v, %v", cas[1].ID, got, err)
	}
	if list, total, _ := e.s.ListHostCAs(e.ctx, keystore.Page{}); total != 2 || list[0].ID != cas[1].ID {
		t.Errorf("after deleting the oldest: %d %v", total, list)
	}
	var gone *string
	if err := db.QueryRow(`SELECT sealed_private_key FROM host_cas WHERE id = ` + strconv.FormatInt(cas[0].ID, 10)).Scan(&gone); err != nil || gone != nil {
		t.Errorf("a deleted host CA's private key is still stored (%v)", err)
	}

	// At start keygate names the host CAs sealed under another key.
	if other, err := e.s.ManagedCAsSealedElsewhere(e.ctx, testCAKey.ID()); err != nil || len(other) != 0 {
		t.Errorf("sealed elsewhere, under the key in use: %v, %v", other, err)
	}
	other, err := e.s.ManagedCAsSealedElsewhere(e.ctx, "00000000")
	if err != nil || len(other) != 2 || !other[0].Host || other[0].CAID != cas[1].ID || other[0].KeyID != testCAKey.ID() {
		t.Errorf("sealed elsewhere, under another key: %+v, %v", other, err)
	}

	// Without the CA encryption key nothing is generated.
	plain, err := keystore.Open(e.ctx, keystore.Config{DSN: e.dsn, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	_, err = plain.GenerateHostCA(e.ctx, a, "x", "")
	wantIs(t, err, keystore.ErrConflict)
}

// TestIssueHostCertificate: a fleet server's host key signed by the oldest
// host CA (or the one named): a host certificate a client accepts for each
// of its names (lower-cased, duplicates dropped), valid from a minute ago
// for the ttl (default 90 days), recorded with who asked; refusals for
// every bad part of a request.
func TestIssueHostCertificate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin := e.user(t, "root-admin")
	a := keystore.Actor{UserID: admin.ID}
	hostKey, hostLine := newEd25519(t, "root@web1")
	req := keystore.HostCertRequest{PublicKey: hostLine, Principals: []string{"Web1.Example.com", " 10.0.0.5", "web1.example.com", "web1"},
		RequestedBy: admin.ID}
	_, err := e.s.IssueHostCertificate(e.ctx, a, req)
	if wantIs(t, err, keystore.ErrConflict); !strings.Contains(err.Error(), "no SSH host certificate authority") {
		t.Errorf("without a host CA: %v", err)
	}
	ca1, err := e.s.GenerateHostCA(e.ctx, a, "one", "")
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := e.s.GenerateHostCA(e.ctx, a, "two", "ecdsa")
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now().UTC().Truncate(time.Second)
	c, err := e.s.IssueHostCertificate(e.ctx, a, req)
	if err != nil {
		t.Fatal(err)
	}
	wantNames := []string{"web1.example.com", "10.0.0.5", "web1"}
	if c.CAID != ca1.ID || c.KeyID != "web1.example.com" || strings.Join(c.Principals, ",") != strings.Join(wantNames, ",") ||
		c.Own || c.RequestedBy == nil || *c.RequestedBy != admin.ID || c.KeyFingerprint != gossh.FingerprintSHA256(hostKey) ||
		c.KeyType != gossh.KeyAlgoED25519 || c.RevokedAt != nil || c.Serial == 0 ||
		!c.ValidAfter.Equal(now.Add(-time.Minute)) || !c.ValidBefore.Equal(now.Add(keystore.DefaultHostCertTTL)) {
		t.Errorf("IssueHostCertificate = %+v", c)
	}
	cert := parseHostCert(t, c.Certificate, ca1, "web1.example.com", e.clock.Now())
	parseHostCert(t, c.Certificate, ca1, "10.0.0.5", e.clock.Now())
	if cert.Serial != c.Serial || cert.KeyId != c.KeyID || len(cert.Extensions) != 0 || len(cert.CriticalOptions) != 0 ||
		string(cert.Key.Marshal()) != string(hostKey.Marshal()) {
		t.Errorf("certificate %+v does not match its record %+v", cert, c)
	}
	if got, err := e.s.HostCertificate(e.ctx, c.ID); err != nil || got.Certificate != c.Certificate || got.Serial != c.Serial {
		t.Errorf("HostCertificate = %+v, %v", got, err)
	}

	// The CA named, a key id and a ttl.
	_, other := newEd25519(t, "")
	c2, err := e.s.IssueHostCertificate(e.ctx, a, keystore.HostCertRequest{CAID: ca2.ID, PublicKey: other, Principals: []string{"db1"},
		KeyID: "db1 (rack 4)", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if c2.CAID != ca2.ID || c2.KeyID != "db1 (rack 4)" || c2.RequestedBy != nil || !c2.ValidBefore.Equal(now.Add(time.Hour)) {
		t.Errorf("with ca_id, key_id and ttl: %+v", c2)
	}
	parseHostCert(t, c2.Certificate, ca2, "db1", e.clock.Now())

	list, total, err := e.s.ListHostCertificates(e.ctx, keystore.HostCertFilter{}, keystore.Page{})
	if err != nil || total != 2 || list[0].ID != c2.ID {
		t.Errorf("ListHostCertificates = %d %v, %v", total, list, err)
	}
	if _, total, _ := e.s.ListHostCertificates(e.ctx, keystore.HostCertFilter{CAID: ca2.ID}, keystore.Page{}); total != 1 {
		t.Errorf("filtered by CA: %d", total)
	}
	if _, total, _ := e.s.ListHostCertificates(e.ctx, keystore.HostCertFilter{KeyFingerprint: c.KeyFingerprint}, keystore.Page{}); total != 1 {
		t.Errorf("filtered by key: %d", total)
	}

	_, skLine := skEd25519Line(t, "")
	_, rsaLine := authorizedLine(t, rsaKey(1024).Public(), "")
	for _, bad := range []struct {
		name   string
		req    keystore.HostCertRequest
		field  string
		reason string
	}{
		{"no-key", keystore.HostCertRequest{Principals: []string{"a"}}, "key", "blank"},
		{"a-certificate", keystore.HostCertRequest{PublicKey: c.Certificate, Principals: []string{"a"}}, "key", "certificate"},
		{"a-security-key", keystore.HostCertRequest{PublicKey: skLine, Principals: []string{"a"}}, "key", "security key"},
		{"weak-rsa", keystore.HostCertRequest{PublicKey: rsaLine, Principals: []string{"a"}}, "key", "2048"},
		{"no-names", keystore.HostCertRequest{PublicKey: hostLine, Principals: []string{" ", ""}}, "principals", "blank"},
		{"a-space", keystore.HostCertRequest{PublicKey: hostLine, Principals: []string{"web 1"}}, "principals", "not a host name"},
		{"a-pattern", keystore.HostCertRequest{PublicKey: hostLine, Principals: []string{"*.example.com"}}, "principals", "no patterns"},
		{"a-zone", keystore.HostCertRequest{PublicKey: hostLine, Principals: []string{"fe80::1%eth0,x"}}, "principals", "zone"},
		{"a-port", keystore.HostCertRequest{PublicKey: hostLine, Principals: []string{"[web1]:2222"}}, "principals", "not a host name"},
		{"a-leading-dash", keystore.HostCertRequest{PublicKey: hostLine, Principals: []string{"-oProxyCommand=x"}}, "principals", "not a host name"},
		{"too-long", keystore.HostCertRequest{PublicKey: hostLine, Principals: []string{strings.Repeat("a", 254)}}, "principals", "too long"},
		{"ttl-too-long", keystore.HostCertRequest{PublicKey: hostLine, Principals: []string{"a"}, TTL: keystore.MaxHostCertTTL + time.Second}, "ttl", "between"},
		{"ttl-too-short", keystore.HostCertRequest{PublicKey: hostLine, Principals: []string{"a"}, TTL: time.Second}, "ttl", "between"},
		{"key-id-too-long", keystore.HostCertRequest{PublicKey: hostLine, Principals: []string{"a"}, KeyID: strings.Repeat("x", 256)}, "key_id", "too long"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			_, err := e.s.IssueHostCertificate(e.ctx, a, bad.req)
			wantOnlyField(t, err, bad.field, bad.reason)
		})
	}
	many := make([]string, keystore.MaxHostPrincipals+1)
	for i := range many {
		many[i] = "h" + strconv.Itoa(i)
	}
	_, err = e.s.IssueHostCertificate(e.ctx, a, keystore.HostCertRequest{PublicKey: hostLine, Principals: many})
	wantOnlyField(t, err, "principals", "too many")
	caPubLine := ca1.Key
	_, err = e.s.IssueHostCertificate(e.ctx, a, keystore.HostCertRequest{PublicKey: caPubLine, Principals: []string{"a"}})
	wantOnlyField(t, err, "key", "certificate authority's own key")
	_, err = e.s.IssueHostCertificate(e.ctx, a, keystore.HostCertRequest{CAID: 99999, PublicKey: hostLine, Principals: []string{"a"}})
	wantIs(t, err, keystore.ErrNotFound)
	if err := e.s.DeleteHostCA(e.ctx, a, ca2.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.s.IssueHostCertificate(e.ctx, a, keystore.HostCertRequest{CAID: ca2.ID, PublicKey: hostLine, Principals: []string{"a"}})
	wantIs(t, err, keystore.ErrNotFound)
}

// TestHostKRL: revoking a host certificate puts its serial (under its CA)
// and its host key into the host KRL, bumps the version, and stops
// keygate signing that key again; a deleted CA's revocations stay; a
// second revocation is a conflict and changes nothing.
func TestHostKRL(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := keystore.Actor{UserID: e.user(t, "root-admin").ID}
	st, err := e.s.HostKRLState(e.ctx)
	if err != nil || st.Version != 0 || !st.Public {
		t.Fatalf("a new keystore's host KRL: %+v, %v", st, err)
	}
	k, _, err := e.s.HostKRL(e.ctx)
	if err != nil || len(k.Certs) != 0 || len(k.SHA256) != 0 {
		t.Fatalf("empty host KRL = %+v, %v", k, err)
	}
	step := func() time.Time { e.clock.Advance(time.Second); return e.clock.Now().UTC().Truncate(time.Millisecond) }
	ca1, _ := e.s.GenerateHostCA(e.ctx, a, "one", "")
	ca2, _ := e.s.GenerateHostCA(e.ctx, a, "two", "")
	issue := func(caID int64) (*keystore.HostCertificate, gossh.PublicKey, string) {
		t.Helper()
		pub, line := newEd25519(t, "")
		c, err := e.s.IssueHostCertificate(e.ctx, a, keystore.HostCertRequest{CAID: caID, PublicKey: line, Principals: []string{"h"}})
		if err != nil {
			t.Fatal(err)
		}
		return c, pub, line
	}
	c1, k1, line1 := issue(ca1.ID)
	c2, k2, _ := issue(ca1.ID)
	issue(ca1.ID)
	c4, k4, _ := issue(ca2.ID)
	revoke := func(c *keystore.HostCertificate) {
		t.Helper()
		r, err := e.s.RevokeHostCertificate(e.ctx, a, c.ID, " key leaked ")
		if err != nil {
			t.Fatal(err)
		}
		if r.RevokedAt == nil || r.RevokedBy == nil || *r.RevokedBy != a.UserID || r.RevocationReason != "key leaked" {
			t.Errorf("RevokeHostCertificate = %+v", r)
		}
	}
	step()
	revoke(c1)
	revoke(c2)
	last := step()
	revoke(c4)
	k, st, err = e.s.HostKRL(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != 5 || !st.UpdatedAt.Equal(last) {
		t.Errorf("state %+v, want version 5 at %v", st, last)
	}
	ca1Pub, _, _, _, _ := gossh.ParseAuthorizedKey([]byte(ca1.Key))
	ca2Pub, _, _, _, _ := gossh.ParseAuthorizedKey([]byte(ca2.Key))
	want := &krl.KRL{Version: 5, GeneratedAt: uint64(last.Unix()), Comment: "keygate host certificates",
		Certs: []*krl.CertRevocations{
			{CA: ca1Pub.Marshal(), Serials: []krl.Range{{Lo: c1.Serial, Hi: c1.Serial}, {Lo: c2.Serial, Hi: c2.Serial}}},
			{CA: ca2Pub.Marshal(), Serials: []krl.Range{{Lo: c4.Serial, Hi: c4.Serial}}},
		},
		SHA256: [][32]byte{sha256.Sum256(k1.Marshal()), sha256.Sum256(k2.Marshal()), sha256.Sum256(k4.Marshal())}}
	wantKRL(t, k, want)
	if got, _ := e.s.HostKRLState(e.ctx); got != st {
		t.Errorf("HostKRLState = %+v, HostKRL's %+v", got, st)
	}

	// Revoked: listed as such, not again, and no new certificate for the key.
	_, err = e.s.RevokeHostCertificate(e.ctx, a, c1.ID, "")
	wantIs(t, err, keystore.ErrConflict)
	_, err = e.s.RevokeHostCertificate(e.ctx, a, 99999, "")
	wantIs(t, err, keystore.ErrNotFound)
	_, err = e.s.RevokeHostCertificate(e.ctx, a, c2.ID, strings.Repeat("x", 300))
	wantOnlyField(t, err, "reason", "too long")
	_, err = e.s.IssueHostCertificate(e.ctx, a, keystore.HostCertRequest{CAID: ca2.ID, PublicKey: line1, Principals: []string{"h"}})
	if wantIs(t, err, keystore.ErrConflict); !strings.Contains(err.Error(), "was revoked") {
		t.Errorf("a revoked key signed again: %v", err)
	}
	if _, total, _ := e.s.ListHostCertificates(e.ctx, keystore.HostCertFilter{Revoked: ptr(true)}, keystore.Page{}); total != 3 {
		t.Errorf("revoked: %d, want 3", total)
	}
	if _, total, _ := e.s.ListHostCertificates(e.ctx, keystore.HostCertFilter{Revoked: ptr(false)}, keystore.Page{}); total != 1 {
		t.Errorf("not revoked: %d, want 1", total)
	}
	if st, _ := e.s.HostKRLState(e.ctx); st.Version != 5 {
		t.Errorf("refused writes changed the version: %d", st.Version)
	}

	// Deleting a CA: a new version; its revocations stay.
	at := step()
	if err := e.s.DeleteHostCA(e.ctx, a, ca1.ID); err != nil {
		t.Fatal(err)
	}
	k, st, _ = e.s.HostKRL(e.ctx)
	want.Version, want.GeneratedAt = 6, uint64(at.Unix())
	wantKRL(t, k, want)
	if st.Version != 6 {
		t.Errorf("after deleting a CA: version %d", st.Version)
	}
	// The KRL as OpenSSH's reader sees it: parses, and revokes exactly the
	// revoked certificates.
	data, err := k.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := krl.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if !parsed.Revoked(k1) || parsed.Revoked(ca2Pub) {
		t.Error("the parsed KRL's verdicts are wrong")
	}
}

// TestOwnHostCertificate: keygate's own host key gets a certificate of the
// oldest host CA for its names, the same one until half of its 30
// days have passed, then a new one; new names, a deleted CA or a revoked
// certificate change it; no host CA, none.
func TestOwnHostCertificate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := keystore.Actor{UserID: e.user(t, "root-admin").ID}
	key, _ := newEd25519(t, "")
	names := []string{"keygate.example.com", "Bastion.example.com"}
	own := func() *keystore.HostCertificate {
		t.Helper()
		c, err := e.s.OwnHostCertificate(e.ctx, key, names)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := own(); c != nil {
		t.Fatalf("without a host CA: %+v", c)
	}
	ca1, _ := e.s.GenerateHostCA(e.ctx, a, "one", "")
	first := own()
	if first == nil || first.CAID != ca1.ID || !first.Own || first.RequestedBy != nil || first.KeyID != "keygate host keygate.example.com" ||
		strings.Join(first.Principals, ",") != "keygate.example.com,bastion.example.com" ||
		first.ValidBefore.Sub(first.ValidAfter) != keystore.OwnHostCertTTL+time.Minute {
		t.Fatalf("OwnHostCertificate = %+v", first)
	}
	parseHostCert(t, first.Certificate, ca1, "bastion.example.com", e.clock.Now())
	if again := own(); again.ID != first.ID {
		t.Errorf("a second call signed again: %d, %d", first.ID, again.ID)
	}
	e.clock.Advance(14 * 24 * time.Hour)
	if again := own(); again.ID != first.ID {
		t.Errorf("renewed before half: %+v", again)
	}
	e.clock.Advance(24 * time.Hour)
	renewed := own()
	if renewed.ID == first.ID || renewed.Serial == first.Serial || !renewed.ValidBefore.After(first.ValidBefore) {
		t.Fatalf("not renewed after 15 days: %+v", renewed)
	}
	// A newer CA does not take over; other names do get a new certificate.
	ca2, _ := e.s.GenerateHostCA(e.ctx, a, "two", "rsa")
	if again := own(); again.ID != renewed.ID {
		t.Errorf("a newer CA took over: %+v", again)
	}
	names = []string{"keygate.example.com"}
	fewer := own()
	if fewer.ID == renewed.ID || strings.Join(fewer.Principals, ",") != "keygate.example.com" {
		t.Errorf("new names, same certificate: %+v", fewer)
	}
	// Deleting the CA in use: the next one signs.
	if err := e.s.DeleteHostCA(e.ctx, a, ca1.ID); err != nil {
		t.Fatal(err)
	}
	moved := own()
	if moved.CAID != ca2.ID {
		t.Fatalf("after deleting the CA in use: %+v", moved)
	}
	parseHostCert(t, moved.Certificate, ca2, "keygate.example.com", e.clock.Now())
	if _, total, _ := e.s.ListHostCertificates(e.ctx, keystore.HostCertFilter{Own: ptr(true)}, keystore.Page{}); total != 4 {
		t.Errorf("own certificates recorded: %d, want 4", total)
	}
	// Revoked: no certificate for that key any more.
	if _, err := e.s.RevokeHostCertificate(e.ctx, a, moved.ID, "host key copied"); err != nil {
		t.Fatal(err)
	}
	_, err := e.s.OwnHostCertificate(e.ctx, key, names)
	wantIs(t, err, keystore.ErrConflict)
	var revoked *keystore.HostKeyRevokedError
	if !errors.As(err, &revoked) || revoked.Fingerprint != gossh.FingerprintSHA256(key) {
		t.Errorf("a revoked key: %v, want a *HostKeyRevokedError naming it", err)
	}
	// Another key, and no CA at all.
	other, _ := newEd25519(t, "")
	if c, err := e.s.OwnHostCertificate(e.ctx, other, names); err != nil || c == nil || c.CAID != ca2.ID {
		t.Errorf("another key: %+v, %v", c, err)
	}
	if err := e.s.DeleteHostCA(e.ctx, a, ca2.ID); err != nil {
		t.Fatal(err)
	}
	if c, err := e.s.OwnHostCertificate(e.ctx, other, names); err != nil || c != nil {
		t.Errorf("no host CA left: %+v, %v", c, err)
	}
	_, err = e.s.OwnHostCertificate(e.ctx, other, []string{"bad name"})
	wantIs(t, err, keystore.ErrInvalid)
}

// FuzzNormalizeHostPrincipals: whatever an admin sends, the names kept
// are non-empty, lower-case, without commas, spaces or control characters
// (they are stored comma-joined and compared by OpenSSH as they are), and
// normalizing them again changes nothing.
func FuzzNormalizeHostPrincipals(f *testing.F) {
	for _, s := range []string{"web1.example.com", "10.0.0.5", "::1", "fe80::1%eth0", "Web1", "a b", "*.x", "", "a,b", "-x", "x..y"} {
		f.Add(s, "second")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		out, err := keystore.NormalizeHostPrincipals("principals", []string{a, b})
		if err != nil {
			if !errors.Is(err, keystore.ErrInvalid) {
				t.Fatalf("%q, %q: %v is no validation error", a, b, err)
			}
			return
		}
		for _, n := range out {
			if n == "" || n != strings.ToLower(n) || strings.ContainsAny(n, ", \t\r\n%*?") {
				t.Fatalf("%q, %q: kept %q", a, b, n)
			}
			for _, r := range n {
				if r < 0x21 || r > 0x7e {
					t.Fatalf("%q, %q: kept %q", a, b, n)
				}
			}
		}
		again, err := keystore.NormalizeHostPrincipals("principals", out)
		if err != nil || strings.Join(again, ",") != strings.Join(out, ",") {
			t.Fatalf("not idempotent: %q -> %q, %v", out, again, err)
		}
	})
}
