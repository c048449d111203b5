package authindex

import (
	"testing"

	"github.com/keygate/keygate/keystore"
)

// BenchmarkDeployAccess: the decision on a deploy key's git command, and
// on each open session every second: a group key, three groups deep, whose
// owner is a maintainer of the top group (the longest common walk).
func BenchmarkDeployAccess(b *testing.B) {
	ix := New(nil)
	ix.InsertUser(&keystore.User{ID: 1, Username: "alice", Email: "alice@example.com", State: keystore.StateActive})
	ix.mu.Lock()
	ix.groups[1] = groupRec{Top: 1}
	ix.groups[2] = groupRec{Parent: 1, Top: 1}
	ix.groups[3] = groupRec{Parent: 2, Top: 1}
	ix.putMember(1, keystore.MemberLevel{UserID: 1, AccessLevel: keystore.Maintainer})
	ix.mu.Unlock()
	owner := int64(1)
	ix.InsertDeployKey(&keystore.DeployKey{ID: 1, Title: "ci", FingerprintSHA256: keystore.FingerprintString([32]byte{1}),
		UserID: &owner, UserRecorded: true, Groups: []keystore.DeployKeyGrant{{ID: 1, CanPush: true}}})
	b.ReportAllocs()
	for b.Loop() {
		if read, push := ix.DeployAccess(1, 10, 3); !read || !push {
			b.Fatalf("read=%v push=%v", read, push)
		}
	}
}
