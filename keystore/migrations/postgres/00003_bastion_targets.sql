-- +goose Up
CREATE TABLE bastion_targets (
    id               BIGSERIAL PRIMARY KEY,
    group_id         BIGINT  NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    pattern          TEXT COLLATE "C" NOT NULL,
    min_access_level INTEGER NOT NULL DEFAULT 30,
    description      TEXT COLLATE "C" NOT NULL DEFAULT '',
    created_at       BIGINT  NOT NULL
);
CREATE INDEX bastion_targets_group ON bastion_targets (group_id);

-- +goose Down
DROP TABLE bastion_targets;
