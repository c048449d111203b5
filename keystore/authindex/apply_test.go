package authindex

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// goneSource answers every one-entity read with "not found": each change
// Apply reads means "deleted". Any other read panics (nil Source).
type goneSource struct{ Source }

func (goneSource) Key(context.Context, int64) (*keystore.Key, error) {
	return nil, keystore.ErrNotFound
}
func (goneSource) User(context.Context, int64) (*keystore.User, error) {
	return nil, keystore.ErrNotFound
}
func (goneSource) Group(context.Context, int64) (*keystore.Group, error) {
	return nil, keystore.ErrNotFound
}
func (goneSource) GroupMembers(context.Context, int64) ([]keystore.MemberLevel, error) {
	return nil, nil
}
func (goneSource) CA(context.Context, int64, int64) (*keystore.GroupCA, error) {
	return nil, keystore.ErrNotFound
}
func (goneSource) RevocationByID(context.Context, int64) (*keystore.Revocation, error) {
	return nil, keystore.ErrNotFound
}
func (goneSource) BastionTargetByID(context.Context, int64, int64) (*keystore.BastionTarget, error) {
	return nil, keystore.ErrNotFound
}
func (goneSource) BastionAllowanceByID(context.Context, int64, int64) (*keystore.BastionAllowance, error) {
	return nil, keystore.ErrNotFound
}
func (goneSource) DeployKey(context.Context, int64) (*keystore.DeployKey, error) {
	return nil, keystore.ErrNotFound
}
func (goneSource) Project(context.Context, int64) (*keystore.Project, error) {
	return nil, keystore.ErrNotFound
}

// TestEveryEntityIsApplied fails when an entity is added to
// keystore.Entities without a case in Apply: Apply is run on a change of
// each, and an entity it does not know is the "unknown entity" warning.
func TestEveryEntityIsApplied(t *testing.T) {
	t.Parallel()
	ix := New(goneSource{})
	var logs bytes.Buffer
	ix.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	for i, e := range keystore.Entities {
		if err := ix.Apply(context.Background(), keystore.Change{Seq: int64(i + 1), Entity: e.Entity, EntityID: 1, Op: "delete"}); err != nil {
			t.Fatalf("%s: %v", e.Entity, err)
		}
		if strings.Contains(logs.String(), "unknown entity") {
			t.Fatalf("entity %q has no case in Apply:\n%s", e.Entity, logs.String())
		}
	}
}

// TestApplyUnknownEntity: a change of an entity this build does not know
// is not silently dropped: it is logged once, and the feed moves on.
func TestApplyUnknownEntity(t *testing.T) {
	t.Parallel()
	ix := New(nil)
	var logs bytes.Buffer
	ix.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	ctx := context.Background()
	for seq := int64(1); seq <= 3; seq++ {
		if err := ix.Apply(ctx, keystore.Change{Seq: seq, Entity: "frobnicator", EntityID: 1, Op: "create"}); err != nil {
			t.Fatal(err)
		}
	}
	if ix.Applied() != 3 {
		t.Fatalf("applied = %d, want 3", ix.Applied())
	}
	if n := strings.Count(logs.String(), "unknown entity"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, logs.String())
	}
	// Entities with nothing on the auth path need no source.
	for i, e := range []keystore.Entity{keystore.EntityGPGKey, keystore.EntityToken} {
		if err := ix.Apply(ctx, keystore.Change{Seq: int64(4 + i), Entity: e, EntityID: 1}); err != nil {
			t.Fatal(err)
		}
	}
}
func (goneSource) KeyPolicyByID(context.Context, int64) (*keystore.KeyPolicyRow, error) {
	return nil, keystore.ErrNotFound
}
