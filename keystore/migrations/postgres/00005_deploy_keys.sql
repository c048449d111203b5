-- +goose Up
-- Deploy keys: machine identities for git, enabled per project and (keygate's
-- own) per group, each with can_push. A fingerprint is unique across user keys
-- and deploy keys (checked by the store in the write transaction).
CREATE TABLE deploy_keys (
    id                 BIGSERIAL PRIMARY KEY,
    title              TEXT COLLATE "C" NOT NULL,
    key                TEXT COLLATE "C" NOT NULL,
    type               TEXT COLLATE "C" NOT NULL,
    bits               INTEGER NOT NULL,
    fingerprint_sha256 TEXT COLLATE "C" NOT NULL,
    fingerprint_md5    TEXT COLLATE "C" NOT NULL,
    instance           INTEGER NOT NULL DEFAULT 0,
    user_id            BIGINT REFERENCES users (id) ON DELETE SET NULL,
    expires_at         BIGINT,
    created_at         BIGINT  NOT NULL,
    last_used_at       BIGINT
);
CREATE UNIQUE INDEX deploy_keys_fingerprint_sha256_unique ON deploy_keys (fingerprint_sha256);

CREATE TABLE deploy_key_projects (
    deploy_key_id BIGINT  NOT NULL REFERENCES deploy_keys (id) ON DELETE CASCADE,
    project_id    BIGINT  NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    can_push      INTEGER NOT NULL DEFAULT 0,
    created_at    BIGINT  NOT NULL,
    PRIMARY KEY (deploy_key_id, project_id)
);
CREATE INDEX deploy_key_projects_project ON deploy_key_projects (project_id);

CREATE TABLE deploy_key_groups (
    deploy_key_id BIGINT  NOT NULL REFERENCES deploy_keys (id) ON DELETE CASCADE,
    group_id      BIGINT  NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    can_push      INTEGER NOT NULL DEFAULT 0,
    created_at    BIGINT  NOT NULL,
    PRIMARY KEY (deploy_key_id, group_id)
);
CREATE INDEX deploy_key_groups_group ON deploy_key_groups (group_id);

-- +goose Down
DROP TABLE deploy_key_groups;
DROP TABLE deploy_key_projects;
DROP TABLE deploy_keys;
