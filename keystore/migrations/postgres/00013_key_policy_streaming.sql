-- +goose Up
-- Key policies (issue 26): the instance's (group_id NULL, GitLab's
-- application settings for keys) and top-level groups' stricter ones.
-- Restrictions: 0 none, -1 forbidden, N minimum bits; lifetimes 0: none.
CREATE TABLE key_policies (
    id                             BIGSERIAL PRIMARY KEY,
    group_id                       BIGINT  REFERENCES groups (id) ON DELETE CASCADE,
    rsa_key_restriction            INTEGER NOT NULL DEFAULT 0,
    ecdsa_key_restriction          INTEGER NOT NULL DEFAULT 0,
    ecdsa_sk_key_restriction       INTEGER NOT NULL DEFAULT 0,
    ed25519_key_restriction        INTEGER NOT NULL DEFAULT 0,
    ed25519_sk_key_restriction     INTEGER NOT NULL DEFAULT 0,
    max_ssh_key_lifetime           INTEGER NOT NULL DEFAULT 0, -- days
    max_ssh_certificate_lifetime   INTEGER NOT NULL DEFAULT 0, -- hours
    require_ssh_certificate_expiry INTEGER NOT NULL DEFAULT 0,
    updated_at                     BIGINT  NOT NULL
);
CREATE UNIQUE INDEX key_policies_scope ON key_policies ((COALESCE(group_id, 0)));

-- Audit event streaming: destinations (HTTPS endpoints an admin added),
-- local sinks (a node's JSON lines file), and the outbox, written in the
-- same transaction as each audit event while anything consumes it. Each
-- consumer's delivered_seq is the last outbox id it delivered; rows below
-- every consumer's are deleted.
CREATE TABLE audit_stream_destinations (
    id                 BIGSERIAL PRIMARY KEY,
    name               TEXT COLLATE "C" NOT NULL,
    destination_url    TEXT COLLATE "C" NOT NULL,
    verification_token TEXT COLLATE "C" NOT NULL,
    event_type_filters TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    delivered_seq      BIGINT NOT NULL DEFAULT 0,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE UNIQUE INDEX audit_stream_destinations_url ON audit_stream_destinations (destination_url);

CREATE TABLE audit_stream_sinks (
    name          TEXT COLLATE "C" PRIMARY KEY,
    delivered_seq BIGINT NOT NULL DEFAULT 0,
    seen_at       BIGINT NOT NULL
);

-- Rows are numbered under a transaction-scoped advisory lock held to commit,
-- so ids follow commit order across nodes (gaps from rollbacks are harmless:
-- consumers only need "every id below a committed one is committed").
CREATE TABLE audit_outbox (
    id       BIGSERIAL PRIMARY KEY,
    event_id BIGINT NOT NULL,
    at       BIGINT NOT NULL
);

-- +goose Down
DROP TABLE audit_outbox;
DROP TABLE audit_stream_sinks;
DROP TABLE audit_stream_destinations;
DROP TABLE key_policies;
