-- +goose Up
-- The PostgreSQL twin of migrations/sqlite/00001_init.sql: same tables, columns,
-- index names and numbers, so the store's SQL and scanning code are shared.
-- Times are integer milliseconds since the Unix epoch (UTC), the same on every backend.
-- Flags stay INTEGER 0/1 as on SQLite. Text columns use the "C" collation so that
-- ORDER BY sorts by bytes and lower() folds ASCII only, exactly as SQLite does,
-- whatever locale the database was created with.
CREATE TABLE users (
    id          BIGSERIAL PRIMARY KEY,
    username    TEXT COLLATE "C" NOT NULL,
    email       TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL DEFAULT '',
    state       TEXT COLLATE "C" NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'blocked')),
    is_admin    INTEGER NOT NULL DEFAULT 0,
    created_at  BIGINT  NOT NULL
);
CREATE UNIQUE INDEX users_username_unique ON users (lower(username));
CREATE UNIQUE INDEX users_email_unique ON users (lower(email));

CREATE TABLE groups (
    id                       BIGSERIAL PRIMARY KEY,
    name                     TEXT COLLATE "C" NOT NULL,
    path                     TEXT COLLATE "C" NOT NULL,
    description              TEXT COLLATE "C" NOT NULL DEFAULT '',
    parent_id                BIGINT REFERENCES groups (id) ON DELETE CASCADE,
    full_path                TEXT COLLATE "C" NOT NULL,
    enforce_ssh_certificates INTEGER NOT NULL DEFAULT 0,
    created_at               BIGINT  NOT NULL
);
CREATE UNIQUE INDEX groups_full_path_unique ON groups (lower(full_path));
CREATE INDEX groups_parent ON groups (parent_id);

CREATE TABLE members (
    group_id     BIGINT  NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id      BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    access_level INTEGER NOT NULL CHECK (access_level IN (10, 20, 30, 40, 50)),
    created_at   BIGINT  NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE personal_access_tokens (
    id           BIGSERIAL PRIMARY KEY,
    user_id      BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT COLLATE "C" NOT NULL,
    scopes       TEXT COLLATE "C" NOT NULL,
    digest       TEXT COLLATE "C" NOT NULL,
    expires_at   BIGINT,
    revoked      INTEGER NOT NULL DEFAULT 0,
    created_at   BIGINT  NOT NULL,
    last_used_at BIGINT
);
CREATE UNIQUE INDEX personal_access_tokens_digest_unique ON personal_access_tokens (digest);
CREATE INDEX personal_access_tokens_user ON personal_access_tokens (user_id);

CREATE TABLE keys (
    id                 BIGSERIAL PRIMARY KEY,
    user_id            BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title              TEXT COLLATE "C" NOT NULL,
    key                TEXT COLLATE "C" NOT NULL,
    type               TEXT COLLATE "C" NOT NULL,
    bits               INTEGER NOT NULL,
    fingerprint_sha256 TEXT COLLATE "C" NOT NULL,
    fingerprint_md5    TEXT COLLATE "C" NOT NULL,
    usage_type         TEXT COLLATE "C" NOT NULL CHECK (usage_type IN ('auth', 'signing', 'auth_and_signing')),
    expires_at         BIGINT,
    created_at         BIGINT  NOT NULL,
    last_used_at       BIGINT
);
CREATE UNIQUE INDEX keys_fingerprint_sha256_unique ON keys (fingerprint_sha256);
CREATE INDEX keys_fingerprint_md5 ON keys (fingerprint_md5);
CREATE INDEX keys_user ON keys (user_id);

CREATE TABLE group_cas (
    id                 BIGSERIAL PRIMARY KEY,
    group_id           BIGINT  NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    title              TEXT COLLATE "C" NOT NULL,
    key                TEXT COLLATE "C" NOT NULL,
    fingerprint_sha256 TEXT COLLATE "C" NOT NULL,
    created_at         BIGINT  NOT NULL
);
CREATE UNIQUE INDEX group_cas_fingerprint_sha256_unique ON group_cas (fingerprint_sha256);
CREATE INDEX group_cas_group ON group_cas (group_id);

CREATE TABLE cert_revocations (
    id         BIGSERIAL PRIMARY KEY,
    ca_id      BIGINT  NOT NULL REFERENCES group_cas (id) ON DELETE CASCADE,
    kind       TEXT COLLATE "C" NOT NULL CHECK (kind IN ('serial', 'key_id', 'fingerprint')),
    value      TEXT COLLATE "C" NOT NULL,
    reason     TEXT COLLATE "C" NOT NULL DEFAULT '',
    created_at BIGINT  NOT NULL
);
CREATE UNIQUE INDEX cert_revocations_unique ON cert_revocations (ca_id, kind, value);

CREATE TABLE gpg_keys (
    id            BIGSERIAL PRIMARY KEY,
    user_id       BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key           TEXT COLLATE "C" NOT NULL,
    fingerprint   TEXT COLLATE "C" NOT NULL,
    primary_keyid TEXT COLLATE "C" NOT NULL,
    emails        TEXT COLLATE "C" NOT NULL DEFAULT '',
    created_at    BIGINT  NOT NULL,
    revoked_at    BIGINT
);
CREATE UNIQUE INDEX gpg_keys_fingerprint_unique ON gpg_keys (fingerprint);
CREATE INDEX gpg_keys_user ON gpg_keys (user_id);

CREATE TABLE audit_events (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT  NOT NULL,
    actor_id    BIGINT,
    action      TEXT COLLATE "C" NOT NULL,
    target_type TEXT COLLATE "C" NOT NULL,
    target_id   BIGINT  NOT NULL,
    details     TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    remote_ip   TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_target ON audit_events (target_type, target_id);

-- The change log: every write appends one row per changed entity in the same
-- transaction. In-memory indexes follow it in seq order.
-- seq has no sequence here: the store assigns MAX(seq)+1 under a cluster-wide
-- advisory lock, so numbers are gapless and in commit order (see store.go).
CREATE TABLE changes (
    seq       BIGINT  PRIMARY KEY,
    at        BIGINT  NOT NULL,
    entity    TEXT COLLATE "C" NOT NULL,
    entity_id BIGINT  NOT NULL,
    op        TEXT COLLATE "C" NOT NULL
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
