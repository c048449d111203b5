-- +goose Up
-- Trust boundaries (issue 11).

-- A user's enterprise group: the top-level group whose CAs may vouch for
-- them. Only admins set it.
ALTER TABLE users ADD COLUMN enterprise_group_id INTEGER REFERENCES groups (id) ON DELETE SET NULL;

-- Bastion targets record who made them: 'admin' targets are network policy
-- as written; 'owner' targets must lie inside an admin's allowance.
-- 'legacy' rows (made before this migration) are classified at start by
-- the store, which logs each one it disables.
ALTER TABLE bastion_targets ADD COLUMN origin TEXT NOT NULL DEFAULT 'legacy';
ALTER TABLE bastion_targets ADD COLUMN disabled_reason TEXT NOT NULL DEFAULT '';

-- Where group owners may point bastion targets, set by admins per group
-- (and its subgroups).
CREATE TABLE bastion_allowances (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id    INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    pattern     TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
);
CREATE INDEX bastion_allowances_group ON bastion_allowances (group_id);

-- Revocations belong to the CA's public key (its fingerprint), not to its
-- row: deleting a CA and adding the same key again keeps them in force.
-- group_id is the group whose owner made the revocation. Serials become
-- canonical decimal and fingerprints unpadded, so that stored values match.
CREATE TABLE cert_revocations_new (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT    NOT NULL CHECK (kind IN ('serial', 'key_id', 'fingerprint')),
    value          TEXT    NOT NULL,
    reason         TEXT    NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    ca_fingerprint TEXT    NOT NULL,
    group_id       INTEGER NOT NULL
);
CREATE UNIQUE INDEX cert_revocations_new_unique ON cert_revocations_new (ca_fingerprint, kind, value);
INSERT OR IGNORE INTO cert_revocations_new (id, kind, value, reason, created_at, ca_fingerprint, group_id)
    SELECT r.id, r.kind,
           CASE
             WHEN r.kind = 'serial' AND r.value <> '' AND r.value NOT GLOB '*[^0-9]*'
               THEN CASE WHEN ltrim(r.value, '0') = '' THEN '0' ELSE ltrim(r.value, '0') END
             WHEN r.kind = 'fingerprint' THEN rtrim(r.value, '=')
             ELSE r.value
           END,
           r.reason, r.created_at, c.fingerprint_sha256, c.group_id
    FROM cert_revocations r JOIN group_cas c ON c.id = r.ca_id ORDER BY r.id;
DROP TABLE cert_revocations;
ALTER TABLE cert_revocations_new RENAME TO cert_revocations;
DROP INDEX cert_revocations_new_unique;
CREATE UNIQUE INDEX cert_revocations_unique ON cert_revocations (ca_fingerprint, kind, value);

-- +goose Down
DROP INDEX cert_revocations_unique;
CREATE TABLE cert_revocations_old (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ca_id      INTEGER NOT NULL REFERENCES group_cas (id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('serial', 'key_id', 'fingerprint')),
    value      TEXT    NOT NULL,
    reason     TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);
INSERT OR IGNORE INTO cert_revocations_old (id, ca_id, kind, value, reason, created_at)
    SELECT r.id, c.id, r.kind, r.value, r.reason, r.created_at
    FROM cert_revocations r JOIN group_cas c ON c.fingerprint_sha256 = r.ca_fingerprint;
DROP TABLE cert_revocations;
ALTER TABLE cert_revocations_old RENAME TO cert_revocations;
CREATE UNIQUE INDEX cert_revocations_unique ON cert_revocations (ca_id, kind, value);
DROP TABLE bastion_allowances;
ALTER TABLE bastion_targets DROP COLUMN disabled_reason;
ALTER TABLE bastion_targets DROP COLUMN origin;
ALTER TABLE users DROP COLUMN enterprise_group_id;
