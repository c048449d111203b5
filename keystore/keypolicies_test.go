package keystore_test

import (
	"crypto/elliptic"
	"errors"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

func policyWith(t *testing.T, settings map[string]string) keystore.KeyPolicy {
	t.Helper()
	p, err := keystore.ParseKeyPolicy(keystore.KeyPolicy{}, settings)
	if err != nil {
		t.Fatalf("ParseKeyPolicy(%v): %v", settings, err)
	}
	return p
}

func TestKeyPolicyRules(t *testing.T) {
	t.Parallel()
	day := int64(24 * 60)
	for _, c := range []struct {
		name     string
		settings map[string]string
		kind     uint8
		bits     int
		expires  bool
		lifeMin  int64
		want     keystore.PolicyRule
	}{
		{"no-policy-allows-anything", nil, keystore.KindRSA, 2048, false, 0, keystore.RuleNone},
		{"forbidden-kind", map[string]string{"rsa_key_restriction": "-1"}, keystore.KindRSA, 4096, false, 0, keystore.RuleKindForbidden},
		{"other-kinds-untouched", map[string]string{"rsa_key_restriction": "-1"}, keystore.KindED25519, 256, false, 0, keystore.RuleNone},
		{"too-few-bits", map[string]string{"rsa_key_restriction": "3072"}, keystore.KindRSA, 2048, false, 0, keystore.RuleTooFewBits},
		{"exactly-the-minimum", map[string]string{"rsa_key_restriction": "3072"}, keystore.KindRSA, 3072, false, 0, keystore.RuleNone},
		{"ecdsa-384-refuses-256", map[string]string{"ecdsa_key_restriction": "384"}, keystore.KindECDSA, 256, false, 0, keystore.RuleTooFewBits},
		{"sk-kinds-are-their-own", map[string]string{"ecdsa_key_restriction": "-1"}, keystore.KindECDSASK, 256, false, 0, keystore.RuleNone},
		{"lifetime-without-expiry", map[string]string{"max_ssh_key_lifetime": "30"}, keystore.KindED25519, 256, false, 0, keystore.RuleNoExpiry},
		{"lifetime-exactly-the-limit", map[string]string{"max_ssh_key_lifetime": "30"}, keystore.KindED25519, 256, true, 30 * day, keystore.RuleNone},
		{"lifetime-a-minute-over", map[string]string{"max_ssh_key_lifetime": "30"}, keystore.KindED25519, 256, true, 30*day + 1, keystore.RuleKeyLifetime},
		{"kind-before-lifetime", map[string]string{"max_ssh_key_lifetime": "30", "ed25519_key_restriction": "-1"}, keystore.KindED25519, 256, false, 0, keystore.RuleKindForbidden},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := policyWith(t, c.settings)
			if got := p.CheckKey(c.kind, c.bits, c.expires, c.lifeMin); got != c.want {
				t.Errorf("CheckKey = %s, want %s", got.Label(), c.want.Label())
			}
		})
	}
	for _, c := range []struct {
		name          string
		settings      map[string]string
		after, before uint64
		want          keystore.PolicyRule
	}{
		{"forever-no-policy", nil, 0, gossh.CertTimeInfinity, keystore.RuleNone},
		{"forever-expiry-required", map[string]string{"require_ssh_certificate_expiry": "true"}, 0, gossh.CertTimeInfinity, keystore.RuleCertNoExpiry},
		{"forever-under-a-lifetime", map[string]string{"max_ssh_certificate_lifetime": "24"}, 0, gossh.CertTimeInfinity, keystore.RuleCertNoExpiry},
		{"beyond-int64-is-forever", map[string]string{"max_ssh_certificate_lifetime": "24"}, 0, 1 << 63, keystore.RuleCertNoExpiry},
		{"24h-is-allowed", map[string]string{"max_ssh_certificate_lifetime": "24"}, 1000, 1000 + 24*3600, keystore.RuleNone},
		{"24h-and-a-second", map[string]string{"max_ssh_certificate_lifetime": "24"}, 1000, 1000 + 24*3600 + 1, keystore.RuleCertLifetime},
		{"expiry-required-and-given", map[string]string{"require_ssh_certificate_expiry": "1"}, 1000, 1_000_000, keystore.RuleNone},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := policyWith(t, c.settings)
			if got := p.CheckCert(c.after, c.before); got != c.want {
				t.Errorf("CheckCert = %s, want %s", got.Label(), c.want.Label())
			}
		})
	}
}

// TestKeyPolicyStricter: merging never loosens either side.
func TestKeyPolicyStricter(t *testing.T) {
	t.Parallel()
	inst := policyWith(t, map[string]string{"rsa_key_restriction": "3072", "ecdsa_key_restriction": "-1", "max_ssh_key_lifetime": "90"})
	group := policyWith(t, map[string]string{"rsa_key_restriction": "2048", "ed25519_sk_key_restriction": "-1", "ecdsa_key_restriction": "521",
		"max_ssh_key_lifetime": "30", "max_ssh_certificate_lifetime": "12", "require_ssh_certificate_expiry": "true"})
	for _, m := range []keystore.KeyPolicy{inst.Stricter(group), group.Stricter(inst)} {
		want := policyWith(t, map[string]string{"rsa_key_restriction": "3072", "ecdsa_key_restriction": "-1", "ed25519_sk_key_restriction": "-1",
			"max_ssh_key_lifetime": "30", "max_ssh_certificate_lifetime": "12", "require_ssh_certificate_expiry": "true"})
		if m != want {
			t.Errorf("merged = %v\nwant     %v", m, want)
		}
	}
	if m := inst.Stricter(keystore.KeyPolicy{}); m != inst {
		t.Errorf("merged with nothing = %v, want %v", m, inst)
	}
}

func TestParseKeyPolicyRefuses(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, value, field string }{
		{"signup_enabled", "true", "signup_enabled"},
		{"rsa_key_restriction", "1000", "rsa_key_restriction"},
		{"rsa_key_restriction", "abc", "rsa_key_restriction"},
		{"ed25519_key_restriction", "512", "ed25519_key_restriction"},
		{"dsa_key_restriction", "0", "dsa_key_restriction"},
		{"max_ssh_key_lifetime", "366", "max_ssh_key_lifetime"},
		{"max_ssh_key_lifetime", "-1", "max_ssh_key_lifetime"},
		{"max_ssh_certificate_lifetime", "87601", "max_ssh_certificate_lifetime"},
		{"require_ssh_certificate_expiry", "maybe", "require_ssh_certificate_expiry"},
		{"foo_key_restriction", "0", "foo_key_restriction"},
	} {
		_, err := keystore.ParseKeyPolicy(keystore.KeyPolicy{}, map[string]string{c.name: c.value})
		var ve *keystore.ValidationError
		if !errors.As(err, &ve) || len(ve.Fields[c.field]) == 0 {
			t.Errorf("%s=%s: %v, want a validation error on %s", c.name, c.value, err, c.field)
		}
	}
	// DSA: -1 is accepted (it is keygate's rule anyway); null clears a lifetime.
	p, err := keystore.ParseKeyPolicy(policyWith(t, map[string]string{"max_ssh_key_lifetime": "5"}),
		map[string]string{"dsa_key_restriction": "-1", "max_ssh_key_lifetime": "null"})
	if err != nil || p.MaxKeyLifetimeDays != 0 {
		t.Errorf("dsa=-1, lifetime=null: %+v, %v", p, err)
	}
}

// TestKeyPolicyStoreIndexAndViolations: policies reach the index (followed
// and freshly loaded); keys carry kind, size and lifetime in the index;
// the violations listing (SQL) names exactly the keys the index refuses.
func TestKeyPolicyStoreIndexAndViolations(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ix := followingIndex(t, e)
	alice := e.user(t, "alice")
	type made struct {
		pub    gossh.PublicKey
		id     int64
		deploy bool
	}
	var keys []made
	add := func(p gossh.PublicKey, line string, expires *time.Time) {
		k, err := e.s.CreateKey(e.ctx, sys, alice.ID, keystore.KeyInput{Title: "k", Key: line, UsageType: keystore.UsageAuth, ExpiresAt: expires})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, made{pub: p, id: k.ID})
	}
	in := func(d time.Duration) *time.Time { v := e.clock.Now().Add(d); return &v }
	line := func(pub any) (gossh.PublicKey, string) { return authorizedLine(t, pub, "k") }
	p1, l1 := line(&rsaKey(2048).PublicKey)
	add(p1, l1, nil)
	p2, l2 := line(&rsaKey(3072).PublicKey)
	add(p2, l2, in(20*24*time.Hour))
	p3, l3 := line(&newECDSA(t, elliptic.P256()).PublicKey)
	add(p3, l3, in(60*24*time.Hour))
	p4, l4 := line(&newECDSA(t, elliptic.P384()).PublicKey)
	add(p4, l4, nil)
	p5, l5 := newEd25519(t, "x")
	add(p5, l5, in(10*24*time.Hour))
	// A deploy key: instance-wide, made by alice.
	dpub, dline := newEd25519(t, "deploy")
	dk, err := e.s.CreateDeployKey(e.ctx, keystore.Actor{UserID: alice.ID}, keystore.DeployScope{}, keystore.DeployKeyInput{Title: "ci", Key: dline})
	if err != nil {
		t.Fatal(err)
	}
	keys = append(keys, made{pub: dpub, id: dk.ID, deploy: true})

	// The index holds each key's shape.
	if k, _ := ix.KeyShape(fp(keys[1].pub)); k != (authindex.KeyShape{Kind: keystore.KindRSA, Bits: 3072, LifetimeMin: 20 * 24 * 60}) {
		t.Fatalf("RSA 3072 in the index: %+v", k)
	}
	if k, _ := ix.KeyShape(fp(keys[3].pub)); k != (authindex.KeyShape{Kind: keystore.KindECDSA, Bits: 384}) {
		t.Fatalf("ECDSA 384 in the index: %+v", k)
	}

	policies := []map[string]string{
		{"rsa_key_restriction": "3072"},
		{"ecdsa_key_restriction": "384", "ed25519_key_restriction": "-1"},
		{"max_ssh_key_lifetime": "30"},
		{"rsa_key_restriction": "-1", "max_ssh_key_lifetime": "15"},
	}
	for _, settings := range policies {
		p := policyWith(t, settings)
		row, err := e.s.SetKeyPolicy(e.ctx, sys, 0, p)
		if err != nil {
			t.Fatal(err)
		}
		if *ix.KeyPolicy() != p {
			t.Fatalf("index policy = %v, want %v", *ix.KeyPolicy(), p)
		}
		fresh := followingIndex(t, e)
		if *fresh.KeyPolicy() != p {
			t.Fatalf("freshly loaded index policy = %v, want %v", *fresh.KeyPolicy(), p)
		}
		got, total, err := e.s.KeyPolicyViolations(e.ctx, row.Policy, keystore.Page{PerPage: 100})
		if err != nil {
			t.Fatal(err)
		}
		listed := map[[2]int64]keystore.PolicyRule{}
		for _, v := range got {
			listed[[2]int64{map[string]int64{"user_key": 0, "deploy_key": 1}[v.Kind], v.ID}] = v.Rule
		}
		if total != len(got) {
			t.Errorf("%v: total %d, listed %d", settings, total, len(got))
		}
		for _, k := range keys {
			ik, ok := ix.Key(fp(k.pub))
			if !ok {
				t.Fatalf("key %d not in the index", k.id)
			}
			sh, _ := ix.KeyShape(fp(k.pub))
			want := sh.Policy(ix.KeyPolicy(), ik.ExpiresMS != 0)
			kind := int64(0)
			if k.deploy {
				kind = 1
			}
			if got := listed[[2]int64{kind, k.id}]; got != want {
				t.Errorf("%v: key %d (%s) listed as %s, index says %s", settings, k.id, k.pub.Type(), got.Label(), want.Label())
			}
		}
	}

	// Keys added under a policy: GitLab's 400s, and the deploy key too.
	p := policyWith(t, map[string]string{"rsa_key_restriction": "-1"})
	if _, err := e.s.SetKeyPolicy(e.ctx, sys, 0, p); err != nil {
		t.Fatal(err)
	}
	_, rl := authorizedLine(t, &rsaKey(4096).PublicKey, "again")
	_, err = e.s.CreateKey(e.ctx, sys, alice.ID, keystore.KeyInput{Title: "r", Key: rl})
	wantOnlyField(t, err, "key", "type is forbidden. Must be ECDSA, ED25519, ECDSA_SK, or ED25519_SK")
	_, err = e.s.CreateDeployKey(e.ctx, keystore.Actor{UserID: alice.ID}, keystore.DeployScope{}, keystore.DeployKeyInput{Title: "r", Key: rl})
	wantOnlyField(t, err, "key", "type is forbidden. Must be ECDSA, ED25519, ECDSA_SK, or ED25519_SK")

	// A group policy: top-level groups only; followed by the index.
	g := e.group(t, "eng", nil, alice.ID)
	sub := e.group(t, "web", &g.ID, alice.ID)
	if _, err := e.s.SetKeyPolicy(e.ctx, sys, sub.ID, p); !errors.Is(err, keystore.ErrNotTopLevel) {
		t.Fatalf("a subgroup's policy: %v, want ErrNotTopLevel", err)
	}
	gp := policyWith(t, map[string]string{"ed25519_key_restriction": "-1"})
	if _, err := e.s.SetKeyPolicy(e.ctx, sys, g.ID, gp); err != nil {
		t.Fatal(err)
	}
	if got, ok := ix.GroupKeyPolicy(g.ID); !ok || got != gp {
		t.Fatalf("index group policy = %v %v, want %v", got, ok, gp)
	}
	if *ix.KeyPolicy() != p {
		t.Fatalf("the instance's policy changed with a group's: %v", *ix.KeyPolicy())
	}
	// Deleting the group drops its policy row (and the index's copy is
	// never consulted for a group that does not exist).
	if err := e.s.DeleteGroup(e.ctx, sys, g.ID); err != nil {
		t.Fatal(err)
	}
	if row, err := e.s.KeyPolicy(e.ctx, g.ID); err != nil || row.ID != 0 {
		t.Fatalf("group policy after deleting the group: %+v, %v", row, err)
	}
}
