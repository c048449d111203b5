-- +goose Up
-- Managed host certificate authorities (issue 24): instance-level CAs whose
-- private key keygate generated and holds, sealed (AES-256-GCM) under the CA
-- encryption key (--ca-key-file) like a group's managed CA. They sign
-- keygate's own host keys and, on an admin's request, the host keys of the
-- OpenSSH servers behind it. Deleting one destroys its private key and
-- takes it out of use (deleted_at); its public key and certificate records
-- stay, so that its revocations stay in the host KRL for clients that still
-- trust it.
CREATE TABLE host_cas (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    title              TEXT    NOT NULL,
    key                TEXT    NOT NULL,
    fingerprint_sha256 TEXT    NOT NULL,
    key_type           TEXT    NOT NULL,
    sealed_private_key TEXT,
    created_by         INTEGER,
    created_at         INTEGER NOT NULL,
    deleted_at         INTEGER
);
CREATE UNIQUE INDEX host_cas_fingerprint_unique ON host_cas (fingerprint_sha256);

-- Every host certificate a host CA signed: keygate's own (own = 1, asked
-- for by no one) and fleet servers' (requested_by: the admin). The
-- certificate itself is public (a server shows it to every client) and is
-- kept. A revocation revokes the certificate's serial and its host key.
CREATE TABLE host_certificates (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    ca_id             INTEGER NOT NULL REFERENCES host_cas (id) ON DELETE CASCADE,
    serial            INTEGER NOT NULL,
    key_id            TEXT    NOT NULL,
    key_type          TEXT    NOT NULL,
    key_fingerprint   TEXT    NOT NULL,
    principals        TEXT    NOT NULL,
    certificate       TEXT    NOT NULL,
    own               INTEGER NOT NULL DEFAULT 0,
    requested_by      INTEGER,
    valid_after       INTEGER NOT NULL,
    valid_before      INTEGER NOT NULL,
    revoked_at        INTEGER,
    revoked_by        INTEGER,
    revocation_reason TEXT    NOT NULL DEFAULT '',
    created_at        INTEGER NOT NULL
);
CREATE UNIQUE INDEX host_certificates_ca_serial_unique ON host_certificates (ca_id, serial);
CREATE INDEX host_certificates_key ON host_certificates (key_fingerprint);

-- The host KRL's version, bumped by every change of the host CAs or their
-- revocations (in the change's transaction), and the time of that change.
-- No row: version 0.
CREATE TABLE host_krl (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- +goose Down
DROP TABLE host_krl;
DROP TABLE host_certificates;
DROP TABLE host_cas;
