-- +goose Up
-- A user key that was deleted (rotation) or lost its signing usage is kept
-- here: git checks a signature by the commit's time, so the signatures the
-- key made while it was registered stay verifiable. signing_until is when
-- it stopped being a signing key (its deletion, or its expiry if earlier);
-- NULL for a key that could not sign. key_id is the id it had, so that it
-- can still be revoked by that id.
CREATE TABLE deleted_keys (
    id                 BIGSERIAL PRIMARY KEY,
    key_id             BIGINT  NOT NULL,
    user_id            BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title              TEXT COLLATE "C" NOT NULL,
    key                TEXT COLLATE "C" NOT NULL,
    fingerprint_sha256 TEXT COLLATE "C" NOT NULL,
    signing_until      BIGINT,
    deleted_at         BIGINT  NOT NULL
);
CREATE INDEX deleted_keys_user_key ON deleted_keys (user_id, key_id);
CREATE INDEX deleted_keys_fingerprint ON deleted_keys (fingerprint_sha256);

-- A revoked key (compromise): every signature it made fails (git's
-- gpg.ssh.revocationFile), and it can never be registered again. It
-- outlives its user (user_id SET NULL).
CREATE TABLE revoked_keys (
    id                 BIGSERIAL PRIMARY KEY,
    key_id             BIGINT  NOT NULL,
    user_id            BIGINT  REFERENCES users (id) ON DELETE SET NULL,
    key                TEXT COLLATE "C" NOT NULL,
    fingerprint_sha256 TEXT COLLATE "C" NOT NULL,
    revoked_at         BIGINT  NOT NULL
);
CREATE UNIQUE INDEX revoked_keys_fingerprint_unique ON revoked_keys (fingerprint_sha256);

-- +goose Down
DROP TABLE revoked_keys;
DROP TABLE deleted_keys;
