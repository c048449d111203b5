-- +goose Up
-- A top-level group's KRL (GET /groups/:id/ssh_certificates/krl): whether
-- anyone may read it without a token (an admin's choice), and its version,
-- which every change of the group's CAs or certificate revocations bumps,
-- with the time of that change (the KRL's generated_date). A group that
-- never changed keeps version 0 and its creation time.
ALTER TABLE groups ADD COLUMN krl_public INTEGER NOT NULL DEFAULT 0;
ALTER TABLE groups ADD COLUMN krl_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE groups ADD COLUMN krl_updated_at INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE groups DROP COLUMN krl_updated_at;
ALTER TABLE groups DROP COLUMN krl_version;
ALTER TABLE groups DROP COLUMN krl_public;
