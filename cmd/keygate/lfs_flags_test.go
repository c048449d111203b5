package main

import (
	"io"
	"strings"
	"testing"

	"github.com/keygate/keygate/sshd"
)

// TestLFSMaxObjectSizeFlag is not parallel: it sets the environment.
func TestLFSMaxObjectSizeFlag(t *testing.T) {
	t.Setenv("KEYGATE_LFS_MAX_OBJECT_SIZE", "")
	c, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.LFSMaxObjectSize != sshd.DefaultLFSMaxObjectSize {
		t.Fatalf("default = %d, want %d", c.LFSMaxObjectSize, int64(sshd.DefaultLFSMaxObjectSize))
	}
	t.Setenv("KEYGATE_LFS_MAX_OBJECT_SIZE", "104857600")
	if c, err = parseServe(nil, io.Discard); err != nil || c.LFSMaxObjectSize != 100<<20 {
		t.Fatalf("from env: %d, %v", c.LFSMaxObjectSize, err)
	}
	if c, err = parseServe([]string{"--lfs-max-object-size", "-1"}, io.Discard); err != nil || c.LFSMaxObjectSize != -1 {
		t.Fatalf("-1 (off): %d, %v", c.LFSMaxObjectSize, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--lfs-max-object-size", "0"}, "--lfs-max-object-size must not be 0"},
		{[]string{"--lfs-max-object-size", "2199023255553"}, "--lfs-max-object-size must be at most"},
		{[]string{"--lfs-max-object-size", "5G"}, "sizes and counts are plain numbers"},
	} {
		if _, err := parseServe(tc.args, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	t.Setenv("KEYGATE_LFS_MAX_OBJECT_SIZE", "big")
	if _, err := parseServe(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "KEYGATE_LFS_MAX_OBJECT_SIZE") {
		t.Errorf("KEYGATE_LFS_MAX_OBJECT_SIZE=big: %v", err)
	}
}
