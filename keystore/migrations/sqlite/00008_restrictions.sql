-- +goose Up
-- Parameters that restrict access (issue 20, finding 7).

-- A membership ends at expires_at (milliseconds; GitLab's date, at the
-- start of that day UTC). NULL: it does not expire. An expired row stays
-- (the API shows it) but grants nothing.
ALTER TABLE members ADD COLUMN expires_at INTEGER;

-- GitLab's user limits. can_create_group: may create top-level groups.
-- external: an external user (no top-level groups, no personal projects).
-- projects_limit: personal projects (keygate has no personal namespaces).
ALTER TABLE users ADD COLUMN can_create_group INTEGER NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN external INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN projects_limit INTEGER NOT NULL DEFAULT 100000;

-- +goose Down
ALTER TABLE users DROP COLUMN projects_limit;
ALTER TABLE users DROP COLUMN external;
ALTER TABLE users DROP COLUMN can_create_group;
ALTER TABLE members DROP COLUMN expires_at;
