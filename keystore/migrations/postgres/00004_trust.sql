-- +goose Up
-- Trust boundaries (issue 11); see the SQLite migration for the why.
ALTER TABLE users ADD COLUMN enterprise_group_id BIGINT REFERENCES groups (id) ON DELETE SET NULL;

ALTER TABLE bastion_targets ADD COLUMN origin TEXT COLLATE "C" NOT NULL DEFAULT 'legacy';
ALTER TABLE bastion_targets ADD COLUMN disabled_reason TEXT COLLATE "C" NOT NULL DEFAULT '';

CREATE TABLE bastion_allowances (
    id          BIGSERIAL PRIMARY KEY,
    group_id    BIGINT  NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    pattern     TEXT COLLATE "C" NOT NULL,
    description TEXT COLLATE "C" NOT NULL DEFAULT '',
    created_at  BIGINT  NOT NULL
);
CREATE INDEX bastion_allowances_group ON bastion_allowances (group_id);

DROP INDEX cert_revocations_unique; -- canonical values may coincide; duplicates go below
ALTER TABLE cert_revocations ADD COLUMN ca_fingerprint TEXT COLLATE "C";
ALTER TABLE cert_revocations ADD COLUMN group_id BIGINT;
UPDATE cert_revocations r SET ca_fingerprint = c.fingerprint_sha256, group_id = c.group_id
    FROM group_cas c WHERE c.id = r.ca_id;
UPDATE cert_revocations SET value = CASE WHEN ltrim(value, '0') = '' THEN '0' ELSE ltrim(value, '0') END
    WHERE kind = 'serial' AND value ~ '^[0-9]+$';
UPDATE cert_revocations SET value = rtrim(value, '=') WHERE kind = 'fingerprint';
DELETE FROM cert_revocations WHERE ca_fingerprint IS NULL;
DELETE FROM cert_revocations a USING cert_revocations b
    WHERE a.ca_fingerprint = b.ca_fingerprint AND a.kind = b.kind AND a.value = b.value AND a.id > b.id;
ALTER TABLE cert_revocations DROP COLUMN ca_id; -- and with it the foreign key
ALTER TABLE cert_revocations ALTER COLUMN ca_fingerprint SET NOT NULL;
ALTER TABLE cert_revocations ALTER COLUMN group_id SET NOT NULL;
CREATE UNIQUE INDEX cert_revocations_unique ON cert_revocations (ca_fingerprint, kind, value);

-- +goose Down
DROP INDEX cert_revocations_unique;
ALTER TABLE cert_revocations ADD COLUMN ca_id BIGINT REFERENCES group_cas (id) ON DELETE CASCADE;
UPDATE cert_revocations r SET ca_id = c.id FROM group_cas c WHERE c.fingerprint_sha256 = r.ca_fingerprint;
DELETE FROM cert_revocations WHERE ca_id IS NULL;
ALTER TABLE cert_revocations ALTER COLUMN ca_id SET NOT NULL;
ALTER TABLE cert_revocations DROP COLUMN group_id;
ALTER TABLE cert_revocations DROP COLUMN ca_fingerprint;
CREATE UNIQUE INDEX cert_revocations_unique ON cert_revocations (ca_id, kind, value);
DROP TABLE bastion_allowances;
ALTER TABLE bastion_targets DROP COLUMN disabled_reason;
ALTER TABLE bastion_targets DROP COLUMN origin;
ALTER TABLE users DROP COLUMN enterprise_group_id;
