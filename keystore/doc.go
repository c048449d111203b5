// Package keystore holds keygate's domain model: users, groups and their
// memberships, personal access tokens, user SSH keys, group SSH certificate
// authorities and their revocations, GPG keys and audit events.
//
// It validates everything that enters the store (SSH public keys are parsed
// with x/crypto/ssh, GPG keys with ProtonMail/go-crypto), persists it in SQL
// (SQLite by default, PostgreSQL for several nodes) and records every change in a monotonically numbered
// change log so in-memory indexes can follow it. It knows nothing of HTTP or
// SSH servers.
package keystore
