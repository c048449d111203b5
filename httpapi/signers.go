package httpapi

import (
	"bytes"
	"net/http"
	"strings"
)

// git's SSH signature files: /-/allowed_signers (gpg.ssh.allowedSignersFile)
// and /-/allowed_signers/revoked (gpg.ssh.revocationFile), and revoking a
// key (POST /user/keys/:key_id/revoke, admin POST
// /users/:id/keys/:key_id/revoke).

// allowedSigners serves git's gpg.ssh.allowedSignersFile: one line per
// signing-capable key of an active user, expired and deleted ones included
// with the time they stopped signing as valid-before (git checks a
// signature by the commit's time); revoked keys are never listed.
func (a *API) allowedSigners(w http.ResponseWriter, r *http.Request) error {
	// The file names every signer's email: an administrator reads the whole
	// file, anyone else only their own lines (emails are not public).
	viewer := me(r)
	var only int64
	if !viewer.IsAdmin {
		only = viewer.ID
	}
	entries, err := a.store.AllowedSigners(r.Context(), only)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	for _, e := range entries {
		if strings.ContainsAny(e.Email, " \t\"") {
			continue
		}
		b.WriteString(e.Email)
		b.WriteString(` namespaces="git"`) // options are comma-separated, as in authorized_keys
		if e.ValidBefore != nil {
			b.WriteString(`,valid-before="` + e.ValidBefore.UTC().Format("20060102150405") + `Z"`)
		}
		b.WriteByte(' ')
		b.WriteString(e.Key)
		b.WriteByte('\n')
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err = w.Write(b.Bytes())
	return err
}

// revokedSigners serves git's gpg.ssh.revocationFile: every revoked key,
// one "type base64" per line (the list of public keys ssh-keygen -Y verify
// -r reads), to any authenticated user. A revocation list fails safe only
// when it is complete, and it names keys, never people (no comment, no
// email).
func (a *API) revokedSigners(w http.ResponseWriter, r *http.Request) error {
	keys, err := a.store.RevokedKeys(r.Context())
	if err != nil {
		return err
	}
	var b bytes.Buffer
	b.WriteString("# keygate: revoked keys; every signature they made fails (git config gpg.ssh.revocationFile)\n")
	for _, k := range keys {
		if f := strings.Fields(k.Key); len(f) >= 2 {
			b.WriteString(f[0] + " " + f[1] + "\n")
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err = w.Write(b.Bytes())
	return err
}

// revokeKey revokes userID's key {key_id}: GitLab's "Revoke" of an SSH key
// (its UI; GitLab's REST API has it for GPG keys only), in the shape of
// the GPG route: 202 and no body. The key is deleted, every signature it
// made fails, and it cannot be added again. A deleted key is revoked by
// the id it had.
func (a *API) revokeKey(w http.ResponseWriter, r *http.Request, userID int64) error {
	id, err := pathInt(r, "key_id", "Key")
	if err != nil {
		return err
	}
	if err := a.store.RevokeKey(r.Context(), actor(r), userID, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (a *API) revokeMyKey(w http.ResponseWriter, r *http.Request) error {
	return a.revokeKey(w, r, me(r).ID)
}

func (a *API) revokeUserKey(w http.ResponseWriter, r *http.Request) error {
	u, err := a.userByID(r, "id")
	if err != nil {
		return err
	}
	return a.revokeKey(w, r, u.ID)
}
