-- +goose Up
-- A CA key is its top-level group's own (issue 20). Any group may register
-- a CA public key, whoever else registered it (public keys are public: a
-- key registered first elsewhere must not lock its holder out), and a
-- revocation belongs to the group that made it and the CA key it names:
-- it refuses only certificates that log in through that group's CA with
-- that key, and only that group (and admins) read it. Deleting a CA and
-- adding the same key again in the same group keeps its revocations.
DROP INDEX group_cas_fingerprint_sha256_unique;
CREATE UNIQUE INDEX group_cas_group_fingerprint_unique ON group_cas (group_id, fingerprint_sha256);

-- Existing revocations stay with the group that made them (group_id).
-- Those of groups that no longer exist can never apply again, and an id
-- can come back (an import moves sequences past the highest id only): they
-- go, so that no new group reads them.
DELETE FROM cert_revocations WHERE group_id NOT IN (SELECT id FROM groups);
DROP INDEX cert_revocations_unique;
CREATE UNIQUE INDEX cert_revocations_unique ON cert_revocations (group_id, ca_fingerprint, kind, value);

-- +goose Down
-- One CA row and one revocation per key again: the oldest of each wins.
DELETE FROM cert_revocations WHERE EXISTS (SELECT 1 FROM cert_revocations o
    WHERE o.ca_fingerprint = cert_revocations.ca_fingerprint AND o.kind = cert_revocations.kind
      AND o.value = cert_revocations.value AND o.id < cert_revocations.id);
DROP INDEX cert_revocations_unique;
CREATE UNIQUE INDEX cert_revocations_unique ON cert_revocations (ca_fingerprint, kind, value);
DELETE FROM group_cas WHERE EXISTS (SELECT 1 FROM group_cas o
    WHERE o.fingerprint_sha256 = group_cas.fingerprint_sha256 AND o.id < group_cas.id);
DROP INDEX group_cas_group_fingerprint_unique;
CREATE UNIQUE INDEX group_cas_fingerprint_sha256_unique ON group_cas (fingerprint_sha256);
