package authindex

import (
	"context"

	"github.com/keygate/keygate/keystore"
)

// Source is the part of the keystore the index reads: row streams and
// counts for a full load, the entity a change names, and the change log.
// *keystore.Store implements it; all SQL stays in keystore.
type Source interface {
	// The change log.
	LastChange(ctx context.Context) (int64, error)
	ChangesSince(ctx context.Context, after int64, limit int) ([]keystore.Change, error)
	Subscribe(fn func(keystore.Change))
	ListenChanges(ctx context.Context, wake func()) error

	// A full load.
	IndexCounts(ctx context.Context) (users, keys int, err error)
	ScanUsers(ctx context.Context, fn func(keystore.UserRow) error) error
	ScanKeys(ctx context.Context, fn func(keystore.KeyRow) error) error
	ScanMembers(ctx context.Context, fn func(groupID int64, m keystore.MemberLevel) error) error
	ScanCAs(ctx context.Context, fn func(id, groupID int64, fingerprint string, managed bool) error) error
	ScanRevocations(ctx context.Context, fn func(*keystore.Revocation) error) error
	AllGroups(ctx context.Context) ([]*keystore.Group, error)
	AllBastionTargets(ctx context.Context) ([]*keystore.BastionTarget, error)
	AllBastionAllowances(ctx context.Context) ([]*keystore.BastionAllowance, error)
	ScanDeployKeys(ctx context.Context, fn func(*keystore.DeployKey) error) error
	ScanProjects(ctx context.Context, fn func(id, groupID int64) error) error
	AllKeyPolicies(ctx context.Context) ([]*keystore.KeyPolicyRow, error)

	// One entity, for a change.
	Key(ctx context.Context, id int64) (*keystore.Key, error)
	User(ctx context.Context, id int64) (*keystore.User, error)
	Group(ctx context.Context, id int64) (*keystore.Group, error)
	GroupMembers(ctx context.Context, groupID int64) ([]keystore.MemberLevel, error)
	CA(ctx context.Context, groupID, id int64) (*keystore.GroupCA, error)
	RevocationByID(ctx context.Context, id int64) (*keystore.Revocation, error)
	BastionTargetByID(ctx context.Context, groupID, id int64) (*keystore.BastionTarget, error)
	BastionAllowanceByID(ctx context.Context, groupID, id int64) (*keystore.BastionAllowance, error)
	DeployKey(ctx context.Context, id int64) (*keystore.DeployKey, error)
	Project(ctx context.Context, id int64) (*keystore.Project, error)
	KeyPolicyByID(ctx context.Context, id int64) (*keystore.KeyPolicyRow, error)
}

var _ Source = (*keystore.Store)(nil)
