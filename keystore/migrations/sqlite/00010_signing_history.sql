-- +goose Up
-- A user key that was deleted (rotation) or lost its signing usage is kept
-- here: git checks a signature by the commit's time, so the signatures the
-- key made while it was registered stay verifiable. signing_until is when
-- it stopped being a signing key (its deletion, or its expiry if earlier);
-- NULL for a key that could not sign. key_id is the id it had, so that it
-- can still be revoked by that id.
CREATE TABLE deleted_keys (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id             INTEGER NOT NULL,
    user_id            INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title              TEXT    NOT NULL,
    key                TEXT    NOT NULL,
    fingerprint_sha256 TEXT    NOT NULL,
    signing_until      INTEGER,
    deleted_at         INTEGER NOT NULL
);
CREATE INDEX deleted_keys_user_key ON deleted_keys (user_id, key_id);
CREATE INDEX deleted_keys_fingerprint ON deleted_keys (fingerprint_sha256);

-- A revoked key (compromise): every signature it made fails (git's
-- gpg.ssh.revocationFile), and it can never be registered again. It
-- outlives its user (user_id SET NULL).
CREATE TABLE revoked_keys (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id             INTEGER NOT NULL,
    user_id            INTEGER REFERENCES users (id) ON DELETE SET NULL,
    key                TEXT    NOT NULL,
    fingerprint_sha256 TEXT    NOT NULL,
    revoked_at         INTEGER NOT NULL
);
CREATE UNIQUE INDEX revoked_keys_fingerprint_unique ON revoked_keys (fingerprint_sha256);

-- +goose Down
DROP TABLE revoked_keys;
DROP TABLE deleted_keys;
