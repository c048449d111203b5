-- +goose Up
-- Deploy keys: machine identities for git, enabled per project and (keygate's
-- own) per group, each with can_push. A fingerprint is unique across user keys
-- and deploy keys (checked by the store in the write transaction).
CREATE TABLE deploy_keys (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    title              TEXT    NOT NULL,
    key                TEXT    NOT NULL,
    type               TEXT    NOT NULL,
    bits               INTEGER NOT NULL,
    fingerprint_sha256 TEXT    NOT NULL,
    fingerprint_md5    TEXT    NOT NULL,
    instance           INTEGER NOT NULL DEFAULT 0,
    user_id            INTEGER REFERENCES users (id) ON DELETE SET NULL,
    expires_at         INTEGER,
    created_at         INTEGER NOT NULL,
    last_used_at       INTEGER
);
CREATE UNIQUE INDEX deploy_keys_fingerprint_sha256_unique ON deploy_keys (fingerprint_sha256);

CREATE TABLE deploy_key_projects (
    deploy_key_id INTEGER NOT NULL REFERENCES deploy_keys (id) ON DELETE CASCADE,
    project_id    INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    can_push      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (deploy_key_id, project_id)
);
CREATE INDEX deploy_key_projects_project ON deploy_key_projects (project_id);

CREATE TABLE deploy_key_groups (
    deploy_key_id INTEGER NOT NULL REFERENCES deploy_keys (id) ON DELETE CASCADE,
    group_id      INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    can_push      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (deploy_key_id, group_id)
);
CREATE INDEX deploy_key_groups_group ON deploy_key_groups (group_id);

-- +goose Down
DROP TABLE deploy_key_groups;
DROP TABLE deploy_key_projects;
DROP TABLE deploy_keys;
