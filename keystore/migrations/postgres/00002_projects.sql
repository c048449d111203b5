-- +goose Up
CREATE TABLE projects (
    id          BIGSERIAL PRIMARY KEY,
    group_id    BIGINT  NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    name        TEXT COLLATE "C" NOT NULL,
    path        TEXT COLLATE "C" NOT NULL,
    description TEXT COLLATE "C" NOT NULL DEFAULT '',
    created_at  BIGINT  NOT NULL
);
CREATE UNIQUE INDEX projects_group_path_unique ON projects (group_id, lower(path));

-- +goose Down
DROP TABLE projects;
