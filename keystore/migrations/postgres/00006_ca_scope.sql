-- +goose Up
-- A CA key is its top-level group's own (issue 20); see the SQLite
-- migration for the why.
DROP INDEX group_cas_fingerprint_sha256_unique;
CREATE UNIQUE INDEX group_cas_group_fingerprint_unique ON group_cas (group_id, fingerprint_sha256);

DELETE FROM cert_revocations WHERE group_id NOT IN (SELECT id FROM groups);
DROP INDEX cert_revocations_unique;
CREATE UNIQUE INDEX cert_revocations_unique ON cert_revocations (group_id, ca_fingerprint, kind, value);

-- +goose Down
DELETE FROM cert_revocations a USING cert_revocations b
    WHERE a.ca_fingerprint = b.ca_fingerprint AND a.kind = b.kind AND a.value = b.value AND a.id > b.id;
DROP INDEX cert_revocations_unique;
CREATE UNIQUE INDEX cert_revocations_unique ON cert_revocations (ca_fingerprint, kind, value);
DELETE FROM group_cas a USING group_cas b WHERE a.fingerprint_sha256 = b.fingerprint_sha256 AND a.id > b.id;
DROP INDEX group_cas_group_fingerprint_unique;
CREATE UNIQUE INDEX group_cas_fingerprint_sha256_unique ON group_cas (fingerprint_sha256);
