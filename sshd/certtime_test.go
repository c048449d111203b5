package sshd

import (
	"crypto/rand"
	"math"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testutil"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"

	gossh "golang.org/x/crypto/ssh"
)

// TestCertWindowFixedClock is the certificate-validity table on a fixed
// clock, after x/crypto's TestValidateCertTime: ValidAfter is inclusive,
// ValidBefore exclusive, CertTimeInfinity never expires, times beyond
// int64 seconds are refused, and the skew widens both ends.
func TestCertWindowFixedClock(t *testing.T) {
	t.Parallel()
	const now = 120
	clock := time.Unix(now, 0)
	cases := []struct {
		name          string
		after, before uint64
		skew          time.Duration
		want          string // "" valid, else the reason
	}{
		{"inside", 100, 200, 0, ""},
		{"at-valid-after", now, 200, 0, ""},
		{"one-second-before-valid-after", now + 1, 200, 0, "certificate not yet valid"},
		{"at-valid-before", 100, now, 0, "certificate expired"},
		{"one-second-before-valid-before", 100, now + 1, 0, ""},
		{"expired", 10, 100, 0, "certificate expired"},
		{"zero-after-infinite-before", 0, gossh.CertTimeInfinity, 0, ""},
		{"infinite-before", 100, gossh.CertTimeInfinity, 0, ""},
		{"after-beyond-int64", math.MaxInt64 + 1, gossh.CertTimeInfinity, 0, "certificate not yet valid"},
		{"before-beyond-int64", 0, math.MaxInt64 + 1, 0, "certificate expired"},
		{"future-within-skew", now + 30, 400, time.Minute, ""},
		{"future-beyond-skew", now + 61, 400, time.Minute, "certificate not yet valid"},
		{"expired-within-skew", 0, now - 30, time.Minute, ""},
		{"expired-at-skew", 0, now - 60, time.Minute, "certificate expired"},
	}
	ca, subject := testutil.NewSigner(t), testutil.NewSigner(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cert := &gossh.Certificate{ValidAfter: c.after, ValidBefore: c.before}
			before, reason, banner := certWindow(cert, clock, c.skew)
			if reason != c.want {
				t.Fatalf("certWindow [%d, %d) at %d skew %v: %q, want %q", c.after, c.before, now, c.skew, reason, c.want)
			}
			if reason != "" && banner == "" {
				t.Fatal("a refusal without a banner")
			}
			if reason == "" && c.before != gossh.CertTimeInfinity && !before.Equal(time.Unix(int64(c.before), 0)) {
				t.Fatalf("expiry %v, want %d", before, c.before)
			}
			// Without skew, the window is exactly x/crypto's CertChecker's
			// (keygate checks it itself for the banner and the skew).
			if c.skew == 0 {
				signed := &gossh.Certificate{Key: subject.PublicKey(), CertType: gossh.UserCert, ValidPrincipals: []string{"git"},
					ValidAfter: c.after, ValidBefore: c.before}
				if err := signed.SignCert(rand.Reader, ca); err != nil {
					t.Fatal(err)
				}
				checker := gossh.CertChecker{Clock: func() time.Time { return clock }}
				if err := checker.CheckCert("git", signed); (err == nil) != (reason == "") {
					t.Fatalf("keygate says %q, x/crypto's CertChecker says %v", reason, err)
				}
			}
		})
	}
}

// certUserAuth answers what stillValid asks about a certificate login: user
// 1 is active, a member and an enterprise user of group 5, whose CA 9
// exists. Anything else panics (nil Authorizer).
type certUserAuth struct{ Authorizer }

func (certUserAuth) User(id int64) (authindex.User, bool) {
	return authindex.User{ID: id, Active: true, EnterpriseGroupID: 5}, id == 1
}
func (certUserAuth) CAExists(id int64) bool { return id == 9 }
func (certUserAuth) Revoked(int64, [32]byte, uint64, string, string, int64) bool {
	return false
}
func (certUserAuth) AccessLevel(userID, groupID int64) int { return 30 }
func (certUserAuth) KeyPolicy() *keystore.KeyPolicy        { return &keystore.KeyPolicy{} }

// TestStillValidKeepsTheSkew: an open certificate login is cut off when its
// certificate expires, widened by the same --cert-clock-skew that let it
// log in; not a second after login.
func TestStillValidKeepsTheSkew(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	id := &Identity{UserID: 1, CAID: 9, CAGroupID: 5, CertValidBefore: now.Add(-30 * time.Second)}
	for _, c := range []struct {
		skew time.Duration
		want string
	}{{0, "certificate expired"}, {time.Minute, ""}, {30 * time.Second, "certificate expired"}} {
		s := &Server{cfg: Config{Auth: certUserAuth{}, CertClockSkew: c.skew}}
		if got := s.stillValid(id, now); got != c.want {
			t.Errorf("skew %v, certificate expired 30s ago: %q, want %q", c.skew, got, c.want)
		}
	}
}
