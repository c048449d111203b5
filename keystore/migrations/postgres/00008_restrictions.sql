-- +goose Up
-- Parameters that restrict access (issue 20, finding 7); see the SQLite
-- migration for the why.
ALTER TABLE members ADD COLUMN expires_at BIGINT;

ALTER TABLE users ADD COLUMN can_create_group INTEGER NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN external INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN projects_limit INTEGER NOT NULL DEFAULT 100000;

-- +goose Down
ALTER TABLE users DROP COLUMN projects_limit;
ALTER TABLE users DROP COLUMN external;
ALTER TABLE users DROP COLUMN can_create_group;
ALTER TABLE members DROP COLUMN expires_at;
