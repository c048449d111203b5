-- +goose Up
-- Certificates from identity (issue 23). A managed CA is one whose private
-- key keygate generated and holds, sealed (AES-256-GCM) under a key that is
-- not in the database (--ca-key-file): a dump alone cannot sign.
ALTER TABLE group_cas ADD COLUMN managed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE group_cas ADD COLUMN sealed_private_key TEXT COLLATE "C";

-- The longest certificate a group's managed CAs issue to people (seconds;
-- keygate's --cert-max-ttl caps it instance-wide).
ALTER TABLE groups ADD COLUMN ssh_certificate_max_ttl INTEGER NOT NULL DEFAULT 28800;

-- OpenID Connect issuers an admin trusts: people's ID tokens (audience
-- client_id) and CI jobs' (audience per trust rule).
CREATE TABLE oidc_issuers (
    id              BIGSERIAL PRIMARY KEY,
    issuer          TEXT COLLATE "C" NOT NULL,
    client_id       TEXT COLLATE "C" NOT NULL DEFAULT '',
    username_claim  TEXT COLLATE "C" NOT NULL DEFAULT 'preferred_username' CHECK (username_claim IN ('email', 'preferred_username')),
    required_claims TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    created_at      BIGINT  NOT NULL
);
CREATE UNIQUE INDEX oidc_issuers_issuer_unique ON oidc_issuers (issuer);

-- Which CI jobs (ID tokens of a trusted issuer with this audience and
-- these claims) may get a certificate for a project.
CREATE TABLE ssh_certificate_trust_rules (
    id         BIGSERIAL PRIMARY KEY,
    project_id BIGINT  NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    issuer_id  BIGINT  NOT NULL REFERENCES oidc_issuers (id) ON DELETE CASCADE,
    audience   TEXT COLLATE "C" NOT NULL,
    claims     TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    access     TEXT COLLATE "C" NOT NULL CHECK (access IN ('read', 'write')),
    max_ttl    BIGINT  NOT NULL,
    created_by BIGINT,
    created_at BIGINT  NOT NULL
);
CREATE INDEX ssh_certificate_trust_rules_project ON ssh_certificate_trust_rules (project_id);

-- Every certificate a managed CA signed. Serials are unique per CA and
-- never reused (random, checked against this table).
CREATE TABLE issued_certificates (
    id              BIGSERIAL PRIMARY KEY,
    ca_id           BIGINT  NOT NULL REFERENCES group_cas (id) ON DELETE CASCADE,
    group_id        BIGINT  NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    serial          BIGINT  NOT NULL,
    key_id          TEXT COLLATE "C" NOT NULL,
    key_fingerprint TEXT COLLATE "C" NOT NULL,
    principals      TEXT COLLATE "C" NOT NULL,
    extensions      TEXT COLLATE "C" NOT NULL DEFAULT '',
    user_id         BIGINT  REFERENCES users (id) ON DELETE SET NULL,
    project_id      BIGINT  REFERENCES projects (id) ON DELETE SET NULL,
    access          TEXT COLLATE "C" NOT NULL DEFAULT '',
    requested_by    BIGINT,
    source          TEXT COLLATE "C" NOT NULL,
    issuer          TEXT COLLATE "C" NOT NULL DEFAULT '',
    subject         TEXT COLLATE "C" NOT NULL DEFAULT '',
    claims          TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    trust_rule_id   BIGINT,
    valid_after     BIGINT  NOT NULL,
    valid_before    BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL
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
