// Package httpapi serves keygate's REST API: GitLab v4 compatible routes
// under /api/v4 (users, tokens, SSH and GPG keys, groups, members, group SSH
// certificate authorities, audit events) and GitHub v3 compatible key routes
// under /api/v3, plus the operational endpoints /-/health, /-/readiness,
// /-/allowed_signers and /metrics.
package httpapi
