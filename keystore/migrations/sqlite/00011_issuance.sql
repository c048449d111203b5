-- +goose Up
-- Certificates from identity (issue 23). A managed CA is one whose private
-- key keygate generated and holds, sealed (AES-256-GCM) under a key that is
-- not in the database (--ca-key-file): a dump alone cannot sign.
ALTER TABLE group_cas ADD COLUMN managed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE group_cas ADD COLUMN sealed_private_key TEXT;

-- The longest certificate a group's managed CAs issue to people (seconds;
-- keygate's --cert-max-ttl caps it instance-wide).
ALTER TABLE groups ADD COLUMN ssh_certificate_max_ttl INTEGER NOT NULL DEFAULT 28800;

-- OpenID Connect issuers an admin trusts: people's ID tokens (audience
-- client_id) and CI jobs' (audience per trust rule).
CREATE TABLE oidc_issuers (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    issuer          TEXT    NOT NULL,
    client_id       TEXT    NOT NULL DEFAULT '',
    username_claim  TEXT    NOT NULL DEFAULT 'preferred_username' CHECK (username_claim IN ('email', 'preferred_username')),
    required_claims TEXT    NOT NULL DEFAULT '{}',
    created_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX oidc_issuers_issuer_unique ON oidc_issuers (issuer);

-- Which CI jobs (ID tokens of a trusted issuer with this audience and
-- these claims) may get a certificate for a project.
CREATE TABLE ssh_certificate_trust_rules (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    issuer_id  INTEGER NOT NULL REFERENCES oidc_issuers (id) ON DELETE CASCADE,
    audience   TEXT    NOT NULL,
    claims     TEXT    NOT NULL DEFAULT '{}',
    access     TEXT    NOT NULL CHECK (access IN ('read', 'write')),
    max_ttl    INTEGER NOT NULL,
    created_by INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX ssh_certificate_trust_rules_project ON ssh_certificate_trust_rules (project_id);

-- Every certificate a managed CA signed. Serials are unique per CA and
-- never reused (random, checked against this table).
CREATE TABLE issued_certificates (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    ca_id           INTEGER NOT NULL REFERENCES group_cas (id) ON DELETE CASCADE,
    group_id        INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    serial          INTEGER NOT NULL,
    key_id          TEXT    NOT NULL,
    key_fingerprint TEXT    NOT NULL,
    principals      TEXT    NOT NULL,
    extensions      TEXT    NOT NULL DEFAULT '',
    user_id         INTEGER REFERENCES users (id) ON DELETE SET NULL,
    project_id      INTEGER REFERENCES projects (id) ON DELETE SET NULL,
    access          TEXT    NOT NULL DEFAULT '',
    requested_by    INTEGER,
    source          TEXT    NOT NULL,
    issuer          TEXT    NOT NULL DEFAULT '',
    subject         TEXT    NOT NULL DEFAULT '',
    claims          TEXT    NOT NULL DEFAULT '{}',
    trust_rule_id   INTEGER,
    valid_after     INTEGER NOT NULL,
    valid_before    INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX issued_certificates_ca_serial_unique ON issued_certificates (ca_id, serial);
CREATE INDEX issued_certificates_user ON issued_certificates (user_id);

-- +goose Down
DROP TABLE issued_certificates;
DROP TABLE ssh_certificate_trust_rules;
DROP TABLE oidc_issuers;
ALTER TABLE groups DROP COLUMN ssh_certificate_max_ttl;
-- Managed CAs cannot be kept without their private keys' column.
DELETE FROM group_cas WHERE managed = 1;
ALTER TABLE group_cas DROP COLUMN sealed_private_key;
ALTER TABLE group_cas DROP COLUMN managed;
