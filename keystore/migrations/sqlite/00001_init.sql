-- +goose Up
-- Times are integer milliseconds since the Unix epoch (UTC), the same on every backend.
CREATE TABLE users (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    username    TEXT    NOT NULL,
    email       TEXT    NOT NULL,
    name        TEXT    NOT NULL DEFAULT '',
    state       TEXT    NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'blocked')),
    is_admin    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX users_username_unique ON users (lower(username));
CREATE UNIQUE INDEX users_email_unique ON users (lower(email));

CREATE TABLE groups (
    id                       INTEGER PRIMARY KEY AUTOINCREMENT,
    name                     TEXT    NOT NULL,
    path                     TEXT    NOT NULL,
    description              TEXT    NOT NULL DEFAULT '',
    parent_id                INTEGER REFERENCES groups (id) ON DELETE CASCADE,
    full_path                TEXT    NOT NULL,
    enforce_ssh_certificates INTEGER NOT NULL DEFAULT 0,
    created_at               INTEGER NOT NULL
);
CREATE UNIQUE INDEX groups_full_path_unique ON groups (lower(full_path));
CREATE INDEX groups_parent ON groups (parent_id);

CREATE TABLE members (
    group_id     INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    access_level INTEGER NOT NULL CHECK (access_level IN (10, 20, 30, 40, 50)),
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE personal_access_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    scopes       TEXT    NOT NULL,
    digest       TEXT    NOT NULL,
    expires_at   INTEGER,
    revoked      INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE UNIQUE INDEX personal_access_tokens_digest_unique ON personal_access_tokens (digest);
CREATE INDEX personal_access_tokens_user ON personal_access_tokens (user_id);

CREATE TABLE keys (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id            INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title              TEXT    NOT NULL,
    key                TEXT    NOT NULL,
    type               TEXT    NOT NULL,
    bits               INTEGER NOT NULL,
    fingerprint_sha256 TEXT    NOT NULL,
    fingerprint_md5    TEXT    NOT NULL,
    usage_type         TEXT    NOT NULL CHECK (usage_type IN ('auth', 'signing', 'auth_and_signing')),
    expires_at         INTEGER,
    created_at         INTEGER NOT NULL,
    last_used_at       INTEGER
);
CREATE UNIQUE INDEX keys_fingerprint_sha256_unique ON keys (fingerprint_sha256);
CREATE INDEX keys_fingerprint_md5 ON keys (fingerprint_md5);
CREATE INDEX keys_user ON keys (user_id);

CREATE TABLE group_cas (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id           INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    title              TEXT    NOT NULL,
    key                TEXT    NOT NULL,
    fingerprint_sha256 TEXT    NOT NULL,
    created_at         INTEGER NOT NULL
);
CREATE UNIQUE INDEX group_cas_fingerprint_sha256_unique ON group_cas (fingerprint_sha256);
CREATE INDEX group_cas_group ON group_cas (group_id);

CREATE TABLE cert_revocations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ca_id      INTEGER NOT NULL REFERENCES group_cas (id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('serial', 'key_id', 'fingerprint')),
    value      TEXT    NOT NULL,
    reason     TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX cert_revocations_unique ON cert_revocations (ca_id, kind, value);

CREATE TABLE gpg_keys (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key           TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL,
    primary_keyid TEXT    NOT NULL,
    emails        TEXT    NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);
CREATE UNIQUE INDEX gpg_keys_fingerprint_unique ON gpg_keys (fingerprint);
CREATE INDEX gpg_keys_user ON gpg_keys (user_id);

CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor_id    INTEGER,
    action      TEXT    NOT NULL,
    target_type TEXT    NOT NULL,
    target_id   INTEGER NOT NULL,
    details     TEXT    NOT NULL DEFAULT '{}',
    remote_ip   TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_target ON audit_events (target_type, target_id);

-- The change log: every write appends one row per changed entity in the same
-- transaction. In-memory indexes follow it in seq order.
CREATE TABLE changes (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    entity    TEXT    NOT NULL,
    entity_id INTEGER NOT NULL,
    op        TEXT    NOT NULL
);

-- +goose Down
DROP TABLE changes;
DROP TABLE audit_events;
DROP TABLE gpg_keys;
DROP TABLE cert_revocations;
DROP TABLE group_cas;
DROP TABLE keys;
DROP TABLE personal_access_tokens;
DROP TABLE members;
DROP TABLE groups;
DROP TABLE users;
