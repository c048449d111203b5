-- +goose Up
-- Git LFS file locks (git lfs lock over SSH): at most one per path in a
-- project; they go with the project and with the user who holds them. The
-- LFS objects themselves are files in the repository's directory.
CREATE TABLE lfs_locks (
    id         BIGSERIAL PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    path       TEXT COLLATE "C" NOT NULL,
    ref_name   TEXT COLLATE "C" NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX lfs_locks_project_path_unique ON lfs_locks (project_id, path);
CREATE INDEX lfs_locks_user ON lfs_locks (user_id);

-- +goose Down
DROP TABLE lfs_locks;
