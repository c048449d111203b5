-- +goose Up
CREATE TABLE bastion_targets (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id         INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    pattern          TEXT    NOT NULL,
    min_access_level INTEGER NOT NULL DEFAULT 30,
    description      TEXT    NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL
);
CREATE INDEX bastion_targets_group ON bastion_targets (group_id);

-- +goose Down
DROP TABLE bastion_targets;
