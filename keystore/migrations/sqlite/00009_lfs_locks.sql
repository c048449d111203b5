-- +goose Up
-- Git LFS file locks (git lfs lock over SSH): at most one per path in a
-- project; they go with the project and with the user who holds them. The
-- LFS objects themselves are files in the repository's directory.
CREATE TABLE lfs_locks (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    path       TEXT    NOT NULL,
    ref_name   TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX lfs_locks_project_path_unique ON lfs_locks (project_id, path);
CREATE INDEX lfs_locks_user ON lfs_locks (user_id);

-- +goose Down
DROP TABLE lfs_locks;
