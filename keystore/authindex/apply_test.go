package authindex

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// TestEveryEntityIsApplied fails when an entity is added to
// keystore.Entities without a case in Apply.
func TestEveryEntityIsApplied(t *testing.T) {
	t.Parallel()
	for _, e := range keystore.Entities {
		if !Handles(e.Entity) {
			t.Errorf("entity %q has no case in Apply", e.Entity)
		}
	}
	if Handles("frobnicator") {
		t.Error("Handles accepts an unknown entity")
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
	for i, e := range []keystore.Entity{keystore.EntityGPGKey, keystore.EntityToken, keystore.EntityProject} {
		if err := ix.Apply(ctx, keystore.Change{Seq: int64(4 + i), Entity: e, EntityID: 1}); err != nil {
			t.Fatal(err)
		}
	}
}
