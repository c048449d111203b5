package keystore

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DefaultBranch is the branch a new project's repository starts on (its
// HEAD), reported as default_branch.
const DefaultBranch = "main"

// Repos manages the bare git repositories of projects under Root:
// Root/<namespace full path>/<project path>.git.
type Repos struct {
	Root   string
	GitBin string // default "git"
	// Home is git's private HOME (default: "git-home" beside Root); see
	// GitEnv.
	Home string
}

// gitHome returns git's private HOME, creating it.
func (r Repos) gitHome() (string, error) {
	home := r.Home
	if home == "" {
		home = filepath.Join(filepath.Dir(r.Root), "git-home")
	}
	return PrepareGitHome(home)
}

// Path returns the repository directory of a project full path, or "" if
// the path would leave Root.
func (r Repos) Path(fullPath string) string {
	if r.Root == "" {
		return "" // never act relative to the working directory
	}
	rel := filepath.Clean(filepath.FromSlash(fullPath) + ".git")
	if filepath.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return ""
	}
	return filepath.Join(r.Root, rel)
}

// Create initialises an empty bare repository.
func (r Repos) Create(ctx context.Context, fullPath string) error {
	dir := r.Path(fullPath)
	if dir == "" {
		return fmt.Errorf("keystore: no repository root configured or bad path %q", fullPath)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o750); err != nil {
		return err
	}
	git, err := ResolveGit(r.GitBin)
	if err != nil {
		return fmt.Errorf("keystore: git not found: %w", err)
	}
	home, err := r.gitHome()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, git, "init", "--bare", "--quiet", "--initial-branch="+DefaultBranch, dir)
	cmd.Env = GitEnv(home, git)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("keystore: git init %s: %v: %s", dir, err, out)
	}
	return nil
}

// Remove deletes a project's repository.
func (r Repos) Remove(fullPath string) error {
	dir := r.Path(fullPath)
	if dir == "" {
		return nil
	}
	return os.RemoveAll(dir)
}

// RemoveNamespace deletes every repository under a group's full path.
func (r Repos) RemoveNamespace(groupFullPath string) error {
	dir := r.Path(groupFullPath)
	if dir == "" {
		return nil
	}
	return os.RemoveAll(strings.TrimSuffix(dir, ".git"))
}

// MoveNamespace moves every repository of a renamed group.
func (r Repos) MoveNamespace(oldFullPath, newFullPath string) error {
	from, to := r.Path(oldFullPath), r.Path(newFullPath)
	if from == "" || to == "" {
		return nil
	}
	from, to = strings.TrimSuffix(from, ".git"), strings.TrimSuffix(to, ".git")
	if _, err := os.Stat(from); err != nil {
		return nil // no repositories yet
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o750); err != nil {
		return err
	}
	return os.Rename(from, to)
}
