package keystore

import "time"

// What anyone may see of another person's keys: the one rule for every
// public key listing (GET /USERNAME.keys, GitHub's /users/:username/keys
// and ssh_signing_keys, GitLab's /users/:id/keys and /users/:id/gpg_keys
// when the viewer is neither that user nor an admin). A key is public
// while it can still be used: its user is active (a blocked user's keys
// are hidden), an SSH key has not expired, a GPG key is not revoked
// (GitLab deletes a revoked GPG key). Which usages a listing shows
// (authentication, signing) is the listing's own business.

// PublicKey reports whether key k of user u is public at now.
func PublicKey(u *User, k *Key, now time.Time) bool {
	return u.Active() && k.UserID == u.ID && (k.ExpiresAt == nil || k.ExpiresAt.After(now))
}

// PublicGPGKey reports whether GPG key g of user u is public.
func PublicGPGKey(u *User, g *GPGKey) bool {
	return u.Active() && g.UserID == u.ID && g.RevokedAt == nil
}

// publicKeyWhere is PublicKey in SQL over the keys table (arguments: now
// in milliseconds, StateActive).
const publicKeyWhere = `(expires_at IS NULL OR expires_at > ?) AND user_id IN (SELECT id FROM users WHERE state = ?)`

// publicGPGWhere is PublicGPGKey in SQL over the gpg_keys table
// (argument: StateActive).
const publicGPGWhere = `revoked_at IS NULL AND user_id IN (SELECT id FROM users WHERE state = ?)`
