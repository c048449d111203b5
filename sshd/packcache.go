package sshd

import "context"

// PackCache shares one git pack-objects among identical upload-pack
// requests (internal/packcache.Cache implements it).
type PackCache interface {
	// Attach prepares one upload-pack run on a repository whose access
	// decision passed: args go before git's subcommand, env is added to
	// git's environment; release ends the session's use of the cache (ctx's
	// end does too).
	Attach(ctx context.Context, repoID int64, dir string) (args, env []string, release func())
	// Invalidate makes a repository's cached packs stale (a push).
	Invalidate(repoID int64)
}

// packCacheFor returns git's extra arguments and environment for one git
// service on an authorized repository, and what to call when it ends: an
// upload-pack gets the pack cache's hook; a push makes the repository's
// cached packs stale when it starts and again when it ends (whatever it
// changed is never served from a pack computed before).
func (s *Server) packCacheFor(ctx context.Context, sub string, repoID int64, dir string) (args, env []string, done func()) {
	pc := s.cfg.PackCache
	switch {
	case pc == nil:
		return nil, nil, func() {}
	case sub == "upload-pack":
		return pc.Attach(ctx, repoID, dir)
	case sub == "receive-pack":
		pc.Invalidate(repoID)
		return nil, nil, func() { pc.Invalidate(repoID) }
	}
	return nil, nil, func() {}
}
