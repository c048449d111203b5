package httpapi

import (
	"net/http"
	"regexp"
	"strings"
	"sync"

	"github.com/keygate/keygate/keystore"
)

// operation documents one route of the API. The table is checked against
// the router by a test, so every route is documented and every documented
// route exists.
type operation struct {
	Method, Path, Summary, Who string
	Schema                     string // response schema name, "" for none
	List                       bool
	Status                     string // success status, default "200"
}

var operations = []operation{
	{"GET", "/api/v4/openapi.json", "This document", "anyone", "", false, ""},
	{"GET", "/api/v4/version", "keygate version", "authenticated", "Version", false, ""},
	{"GET", "/api/v4/metadata", "keygate version, GitLab's metadata shape", "authenticated", "", false, ""},
	{"GET", "/api/v4/user", "The authenticated user", "self", "User", false, ""},
	{"GET", "/api/v4/user/keys", "List your SSH keys", "self", "Key", true, ""},
	{"POST", "/api/v4/user/keys", "Add an SSH key (title, key, expires_at, usage_type)", "self", "Key", false, "201"},
	{"GET", "/api/v4/user/keys/{key_id}", "Get one of your SSH keys", "self", "Key", false, ""},
	{"DELETE", "/api/v4/user/keys/{key_id}", "Delete one of your SSH keys (rotation: signatures it made before stay valid)", "self", "", false, "204"},
	{"POST", "/api/v4/user/keys/{key_id}/revoke", "Revoke one of your SSH keys (compromise): deleted, every signature it made fails, never added again; a deleted key by the id it had", "self", "", false, "202"},
	{"GET", "/api/v4/user/gpg_keys", "List your GPG keys", "self", "GPGKey", true, ""},
	{"POST", "/api/v4/user/gpg_keys", "Add a GPG key (key)", "self", "GPGKey", false, "201"},
	{"GET", "/api/v4/user/gpg_keys/{key_id}", "Get one of your GPG keys", "self", "GPGKey", false, ""},
	{"DELETE", "/api/v4/user/gpg_keys/{key_id}", "Delete one of your GPG keys", "self", "", false, "204"},
	{"POST", "/api/v4/user/gpg_keys/{key_id}/revoke", "Revoke one of your GPG keys", "self", "", false, "202"},
	{"GET", "/api/v4/users", "List users (username, search)", "authenticated", "User", true, ""},
	{"POST", "/api/v4/users", "Create a user (username, email, name, admin, can_create_group, external, projects_limit)", "admin", "User", false, "201"},
	{"GET", "/api/v4/users/{id}", "Get a user by id or username", "authenticated", "User", false, ""},
	{"PUT", "/api/v4/users/{id}", "Modify a user", "admin", "User", false, ""},
	{"DELETE", "/api/v4/users/{id}", "Delete a user and everything they own", "admin", "", false, "204"},
	{"POST", "/api/v4/users/{id}/block", "Block a user", "admin", "", false, "201"},
	{"POST", "/api/v4/users/{id}/unblock", "Unblock a user", "admin", "", false, "201"},
	{"POST", "/api/v4/users/{id}/personal_access_tokens", "Create a personal access token (name, scopes, expires_at)", "admin", "Token", false, "201"},
	{"GET", "/api/v4/users/{id}/keys", "List a user's SSH keys; others than the user and admins see only public ones (not expired, not a blocked user's)", "authenticated", "Key", true, ""},
	{"POST", "/api/v4/users/{id}/keys", "Add an SSH key for a user", "admin", "Key", false, "201"},
	{"GET", "/api/v4/users/{id}/keys/{key_id}", "Get a user's SSH key; others than the user and admins only a public one (not expired, not a blocked user's)", "authenticated", "Key", false, ""},
	{"DELETE", "/api/v4/users/{id}/keys/{key_id}", "Delete a user's SSH key (rotation: signatures it made before stay valid)", "admin", "", false, "204"},
	{"POST", "/api/v4/users/{id}/keys/{key_id}/revoke", "Revoke a user's SSH key (compromise): deleted, every signature it made fails, never added again", "admin", "", false, "202"},
	{"GET", "/api/v4/users/{id}/gpg_keys", "List a user's GPG keys; others than the user and admins see only public ones (not revoked, not a blocked user's)", "anyone", "GPGKey", true, ""},
	{"POST", "/api/v4/users/{id}/gpg_keys", "Add a GPG key for a user", "admin", "GPGKey", false, "201"},
	{"GET", "/api/v4/users/{id}/gpg_keys/{key_id}", "Get a user's GPG key; others than the user and admins only a public one (not revoked, not a blocked user's)", "anyone", "GPGKey", false, ""},
	{"DELETE", "/api/v4/users/{id}/gpg_keys/{key_id}", "Delete a user's GPG key", "admin", "", false, "204"},
	{"POST", "/api/v4/users/{id}/gpg_keys/{key_id}/revoke", "Revoke a user's GPG key", "admin", "", false, "202"},
	{"GET", "/api/v4/keys", "Find a key by fingerprint (SHA256:… or MD5)", "admin", "KeyWithUser", false, ""},
	{"GET", "/api/v4/keys/{id}", "Get a key with its user", "admin", "KeyWithUser", false, ""},
	{"GET", "/api/v4/personal_access_tokens", "List tokens (yours; all for admins; filters user_id, revoked, state, search, created_/expires_/last_used_ after/before)", "self / admin", "Token", true, ""},
	{"GET", "/api/v4/personal_access_tokens/self", "The token used for this request", "self", "Token", false, ""},
	{"DELETE", "/api/v4/personal_access_tokens/self", "Revoke the token used for this request", "self", "", false, "204"},
	{"GET", "/api/v4/personal_access_tokens/{token_id}", "Get a token", "self / admin", "Token", false, ""},
	{"DELETE", "/api/v4/personal_access_tokens/{token_id}", "Revoke a token", "self / admin", "", false, "204"},
	{"GET", "/api/v4/groups", "List groups you are a member of (all for admins)", "authenticated", "Group", true, ""},
	{"POST", "/api/v4/groups", "Create a group (name, path, parent_id, description, enforce_ssh_certificates)", "authenticated", "Group", false, "201"},
	{"GET", "/api/v4/groups/{id}", "Get a group by id or URL-encoded path", "member", "Group", false, ""},
	{"PUT", "/api/v4/groups/{id}", "Modify a group (name, path, description, enforce_ssh_certificates, ssh_certificate_max_ttl; krl_public: admins only, top-level groups)", "owner", "Group", false, ""},
	{"DELETE", "/api/v4/groups/{id}", "Delete a group with its subgroups", "owner", "", false, "202"},
	{"GET", "/api/v4/groups/{id}/subgroups", "List direct subgroups", "member", "Group", true, ""},
	{"GET", "/api/v4/groups/{id}/descendant_groups", "List subgroups at any depth", "member", "Group", true, ""},
	{"GET", "/api/v4/groups/{id}/members", "List direct members", "member", "Member", true, ""},
	{"POST", "/api/v4/groups/{id}/members", "Add a member (user_id or username, access_level, expires_at)", "owner", "Member", false, "201"},
	{"GET", "/api/v4/groups/{id}/members/all", "List effective members, inherited ones included, at their highest level", "member", "Member", true, ""},
	{"GET", "/api/v4/groups/{id}/members/all/{user_id}", "Get an effective member", "member", "Member", false, ""},
	{"GET", "/api/v4/groups/{id}/members/{user_id}", "Get a direct member", "member", "Member", false, ""},
	{"PUT", "/api/v4/groups/{id}/members/{user_id}", "Change a member's access level and expires_at", "owner", "Member", false, ""},
	{"DELETE", "/api/v4/groups/{id}/members/{user_id}", "Remove a member", "owner", "", false, "204"},
	{"GET", "/api/v4/groups/{id}/ssh_certificates", "List the group's SSH certificate authorities", "owner, top-level groups", "SSHCertificate", true, ""},
	{"POST", "/api/v4/groups/{id}/ssh_certificates", "Add an SSH certificate authority (title, key), or with generate=true (title, key_type: ed25519, ecdsa or rsa) a managed one whose private key keygate generates and holds, sealed, and never shows (\"managed\": true)", "owner, top-level groups", "SSHCertificate", false, "201"},
	{"GET", "/api/v4/groups/{id}/ssh_certificates/{cert_id}/issued", "The certificates a managed CA issued (newest first): serial, key id, principals, validity, user or project, who asked, source of identity", "owner, top-level groups", "IssuedCertificate", true, ""},
	{"POST", "/api/v4/user/ssh_certificates", "A certificate for your key (key, group_id, ttl seconds, ca_id) from your enterprise group's managed CA; authenticate with a personal access token or an OpenID Connect ID token of a trusted issuer (Authorization: Bearer)", "an enterprise user who is a member of the group", "IssuedCertificate", false, "201"},
	{"GET", "/api/v4/user/ssh_certificates", "The certificates issued to you, newest first", "self", "IssuedCertificate", true, ""},
	{"GET", "/api/v4/admin/oidc_issuers", "List the OpenID Connect issuers keygate trusts", "admin", "OIDCIssuer", true, ""},
	{"POST", "/api/v4/admin/oidc_issuers", "Trust an OpenID Connect issuer (issuer URL, client_id: the audience of people's ID tokens, username_claim: email or preferred_username, required_claims object)", "admin", "OIDCIssuer", false, "201"},
	{"GET", "/api/v4/admin/oidc_issuers/{issuer_id}", "Get a trusted issuer", "admin", "OIDCIssuer", false, ""},
	{"DELETE", "/api/v4/admin/oidc_issuers/{issuer_id}", "Stop trusting an issuer (its trust rules go with it)", "admin", "", false, "204"},
	{"GET", "/api/v4/admin/ssh_host_certificate_authorities", "List keygate's managed host CAs, oldest first (the first signs keygate's own host keys and, by default, fleet servers')", "admin", "SSHHostCA", true, ""},
	{"POST", "/api/v4/admin/ssh_host_certificate_authorities", "Generate a managed host CA (title, key_type: ed25519 (default), ecdsa or rsa); keygate keeps the private key sealed and never shows it", "admin", "SSHHostCA", false, "201"},
	{"GET", "/api/v4/admin/ssh_host_certificate_authorities/{ca_id}", "Get a managed host CA", "admin", "SSHHostCA", false, ""},
	{"DELETE", "/api/v4/admin/ssh_host_certificate_authorities/{ca_id}", "Delete a managed host CA: its private key is destroyed, keygate's host keys move to the next host CA; its revocations stay in the host KRL", "admin", "", false, "204"},
	{"GET", "/api/v4/admin/ssh_host_certificates", "The host certificates the host CAs signed, newest first (ca_id, key_fingerprint, own, revoked)", "admin", "SSHHostCertificate", true, ""},
	{"POST", "/api/v4/admin/ssh_host_certificates", "Sign a fleet server's host key (key, principals: its host names and addresses, ca_id, key_id, ttl seconds: default 90 days, at most 397): an OpenSSH host certificate, recorded", "admin", "SSHHostCertificate", false, "201"},
	{"GET", "/api/v4/admin/ssh_host_certificates/{certificate_id}", "Get a host certificate's record, with the certificate", "admin", "SSHHostCertificate", false, ""},
	{"POST", "/api/v4/admin/ssh_host_certificates/{certificate_id}/revoke", "Revoke a host certificate (reason): its serial and its host key go into the host KRL, and keygate signs no new certificate for that key", "admin", "SSHHostCertificate", false, ""},
	{"GET", "/api/v4/ssh_host_certificate_authorities/krl", "The host certificates' revocations as a binary OpenSSH KRL (ssh's RevokedHostKeys): serials per host CA and the revoked host keys' SHA-256 fingerprints; ETag/If-None-Match (304), X-KRL-Version, X-KRL-Generated-At", "anyone", "", false, ""},
	{"GET", "/-/oidc_issuers", "The issuers people may sign in with (issuer, client_id), the git user and SSH host and port, for keygate login", "anyone", "", false, ""},
	{"GET", "/api/v4/projects/{id}/ssh_certificate_trust", "List the project's CI trust rules", "maintainer+", "TrustRule", true, ""},
	{"POST", "/api/v4/projects/{id}/ssh_certificate_trust", "Let CI jobs get certificates for the project (issuer, audience, claims object or claims[name]=value — one of sub, repository, repository_id, project_path, project_id required —, access read or write, max_ttl seconds: default 900, at most 3600)", "maintainer+", "TrustRule", false, "201"},
	{"DELETE", "/api/v4/projects/{id}/ssh_certificate_trust/{rule_id}", "Remove a trust rule (certificates it gave stay valid until they expire or are revoked)", "maintainer+", "", false, "204"},
	{"GET", "/api/v4/groups/{id}/ssh_certificate_trust", "Every CI trust rule of the group's projects and its subgroups'", "owner", "TrustRule", true, ""},
	{"POST", "/api/v4/projects/{id}/ssh_certificates", "A certificate for a CI job's key (key, ttl seconds) that reads or pushes to this project only, like a deploy key; authenticate with the job's ID token (Authorization: Bearer) matching a trust rule", "a CI job (ID token)", "IssuedCertificate", false, "201"},
	{"DELETE", "/api/v4/groups/{id}/ssh_certificates/{cert_id}", "Delete an SSH certificate authority", "owner, top-level groups", "", false, "204"},
	{"DELETE", "/api/v4/groups/{id}/ssh_certificate/{cert_id}", "Delete an SSH certificate authority (GitLab's documented path)", "owner, top-level groups", "", false, "204"},
	{"GET", "/api/v4/groups/{id}/ssh_certificates/{cert_id}/revocations", "List a CA's certificate revocations", "owner, top-level groups", "Revocation", true, ""},
	{"POST", "/api/v4/groups/{id}/ssh_certificates/{cert_id}/revocations", "Revoke certificates of a CA (one of serial, key_id, fingerprint; reason)", "owner, top-level groups", "Revocation", false, "201"},
	{"DELETE", "/api/v4/groups/{id}/ssh_certificates/{cert_id}/revocations/{revocation_id}", "Lift a revocation", "owner, top-level groups", "", false, "204"},
	{"GET", "/api/v4/groups/{id}/ssh_certificates/krl", "The group's certificate revocations as a binary OpenSSH KRL (sshd RevokedKeys): serials, key ids and certificate key SHA-256 fingerprints of the CA keys it holds; ETag/If-None-Match (304), X-KRL-Version, X-KRL-Generated-At", "maintainer+, top-level groups; anyone when krl_public", "", false, ""},
	{"GET", "/api/v4/groups/{id}/ssh_certificates/trusted_user_ca_keys", "The group's CA public keys as sshd's TrustedUserCAKeys file (text, one key a line, commented with the group and CA); ETag", "maintainer+, top-level groups; anyone when krl_public", "", false, ""},
	{"GET", "/api/v4/groups/{id}/ssh_certificates/principals", "Usernames of the group's active effective members at min_access_level (default 30) or more who are enterprise users of its top-level group, one a line (text; username=NAME: that user's line or nothing), for sshd's AuthorizedPrincipalsCommand", "maintainer+", "", false, ""},
	{"GET", "/api/v4/groups/{id}/bastion_targets", "List the group's bastion targets (origin, active)", "owner", "BastionTarget", true, ""},
	{"POST", "/api/v4/groups/{id}/bastion_targets", "Add a bastion target (pattern host:port with * wildcards, min_access_level default 30, description); an owner who is not an admin only inside the group's bastion allowances, and never one that could never forward (a loopback, link-local, metadata, unspecified or multicast address, or a localhost name; else 403)", "admin; owner inside allowances", "BastionTarget", false, "201"},
	{"DELETE", "/api/v4/groups/{id}/bastion_targets/{target_id}", "Delete a bastion target", "owner", "", false, "204"},
	{"GET", "/api/v4/groups/{id}/bastion_allowances", "List the bastion allowances that apply to the group (its own and its ancestors')", "owner", "BastionAllowance", true, ""},
	{"POST", "/api/v4/groups/{id}/bastion_allowances", "Allow the group's owners to add bastion targets inside pattern (host pattern, IP or CIDR, and port or *)", "admin", "BastionAllowance", false, "201"},
	{"DELETE", "/api/v4/groups/{id}/bastion_allowances/{allowance_id}", "Delete a bastion allowance (owner targets outside every allowance stop applying)", "admin", "", false, "204"},
	{"GET", "/api/v4/groups/{id}/projects", "List a group's projects", "member", "Project", true, ""},
	{"GET", "/api/v4/projects", "List the projects you can see (admins: all); search, membership, owned, min_access_level", "authenticated", "Project", true, ""},
	{"POST", "/api/v4/projects", "Create a project and its bare repository (namespace_id, name, path, description)", "maintainer+ of the namespace", "Project", false, "201"},
	{"GET", "/api/v4/projects/{id}", "Get a project by id or URL-encoded path", "member", "Project", false, ""},
	{"DELETE", "/api/v4/projects/{id}", "Delete a project and its repository", "owner of the namespace", "", false, "202"},
	{"GET", "/api/v4/deploy_keys", "List every deploy key (public=true: instance keys only; orphaned=true: keys whose owner does not answer for everything they are enabled for), with the projects and groups it reaches, its owner (user_id) and owner_status", "admin", "InstanceDeployKey", true, ""},
	{"POST", "/api/v4/deploy_keys", "Add an instance deploy key (key, title, expires_at); maintainers enable it on their projects", "admin", "InstanceDeployKey", false, "201"},
	{"GET", "/api/v4/deploy_keys/{key_id}", "Get any deploy key with the projects and groups it reaches (keygate; GitLab has it proposed)", "admin", "InstanceDeployKey", false, ""},
	{"PUT", "/api/v4/deploy_keys/{key_id}", "Rename any deploy key (title) or transfer it (user_id: an active user who answers for everything it does; an admin for an instance key) (keygate)", "admin", "InstanceDeployKey", false, ""},
	{"DELETE", "/api/v4/deploy_keys/{key_id}", "Delete any deploy key everywhere, instance keys included (keygate; GitLab has it proposed)", "admin", "", false, "204"},
	{"GET", "/api/v4/projects/{id}/deploy_keys", "List the project's deploy keys", "maintainer+", "DeployKey", true, ""},
	{"POST", "/api/v4/projects/{id}/deploy_keys", "Add a deploy key to the project (key, title, can_push, expires_at); an existing deploy key the caller can use is enabled instead", "maintainer+", "DeployKey", false, "201"},
	{"GET", "/api/v4/projects/{id}/deploy_keys/{key_id}", "Get a deploy key enabled on the project", "maintainer+", "DeployKey", false, ""},
	{"PUT", "/api/v4/projects/{id}/deploy_keys/{key_id}", "Change a deploy key's can_push on the project, and its title (a key enabled elsewhere too, or an instance key: its owner or an admin only)", "maintainer+", "DeployKey", false, ""},
	{"DELETE", "/api/v4/projects/{id}/deploy_keys/{key_id}", "Disable a deploy key on the project (deleted when enabled nowhere else and not an instance key)", "maintainer+", "", false, "204"},
	{"POST", "/api/v4/projects/{id}/deploy_keys/{key_id}/enable", "Enable an existing deploy key on the project (read-only)", "maintainer+ (and of a place the key is enabled, unless an instance key)", "DeployKey", false, "201"},
	{"GET", "/api/v4/groups/{id}/deploy_keys", "List the group's deploy keys (every project of the group and its subgroups)", "maintainer+", "DeployKey", true, ""},
	{"POST", "/api/v4/groups/{id}/deploy_keys", "Add a deploy key to the group (key, title, can_push, expires_at)", "maintainer+", "DeployKey", false, "201"},
	{"GET", "/api/v4/groups/{id}/deploy_keys/{key_id}", "Get a deploy key enabled on the group", "maintainer+", "DeployKey", false, ""},
	{"PUT", "/api/v4/groups/{id}/deploy_keys/{key_id}", "Change a deploy key's can_push on the group, and its title (a key enabled elsewhere too, or an instance key: its owner or an admin only)", "maintainer+", "DeployKey", false, ""},
	{"DELETE", "/api/v4/groups/{id}/deploy_keys/{key_id}", "Disable a deploy key on the group", "maintainer+", "", false, "204"},
	{"POST", "/api/v4/groups/{id}/deploy_keys/{key_id}/enable", "Enable an existing deploy key on the group (read-only)", "maintainer+", "DeployKey", false, "201"},
	{"GET", "/api/v4/users/{id}/project_deploy_keys", "List the deploy keys a user owns (made, or was transferred)", "the user / admin", "DeployKey", true, ""},
	{"GET", "/api/v3/repos/{owner}/{repo}/keys", "List a repository's deploy keys (owner/repo: the project's full path, a nested owner URL-encoded)", "maintainer+", "", true, ""},
	{"POST", "/api/v3/repos/{owner}/{repo}/keys", "Add a deploy key (title, key, read_only)", "maintainer+", "", false, "201"},
	{"GET", "/api/v3/repos/{owner}/{repo}/keys/{id}", "Get a deploy key", "maintainer+", "", false, ""},
	{"DELETE", "/api/v3/repos/{owner}/{repo}/keys/{id}", "Remove a deploy key from the repository", "maintainer+", "", false, "204"},
	{"GET", "/api/v4/admin/audit_events/streaming/destinations", "List the audit event streaming destinations", "admin", "StreamingDestination", true, ""},
	{"POST", "/api/v4/admin/audit_events/streaming/destinations", "Add a streaming destination (destination_url: https://, or http:// to loopback; verification_token, generated when not given; event_type_filters; name); it receives the events recorded from now on", "admin", "StreamingDestination", false, "201"},
	{"GET", "/api/v4/admin/audit_events/streaming/destinations/{destination_id}", "Get a streaming destination", "admin", "StreamingDestination", false, ""},
	{"PUT", "/api/v4/admin/audit_events/streaming/destinations/{destination_id}", "Change a streaming destination (its place in the stream stays)", "admin", "StreamingDestination", false, ""},
	{"DELETE", "/api/v4/admin/audit_events/streaming/destinations/{destination_id}", "Delete a streaming destination", "admin", "", false, "204"},
	{"GET", "/api/v4/application/settings", "Application settings: the key policy (GitLab's *_key_restriction, max_ssh_key_lifetime; keygate's max_ssh_certificate_lifetime, require_ssh_certificate_expiry) and GitLab's other settings at their defaults", "admin", "ApplicationSettings", false, ""},
	{"PUT", "/api/v4/application/settings", "Change the key policy (only the key settings; any other name is a 400 naming it); applies at the next login and to open sessions", "admin", "ApplicationSettings", false, ""},
	{"GET", "/api/v4/application/settings/key_policy_violations", "Keys that log in today and that the key policy refuses; key settings in the query string try a policy before switching it on", "admin", "KeyPolicyViolation", true, ""},
	{"GET", "/api/v4/groups/{id}/key_policy", "The group's own key policy for git in its projects, and the effective one (merged with the instance's: stricter only)", "owner, top-level groups", "GroupKeyPolicy", false, ""},
	{"PUT", "/api/v4/groups/{id}/key_policy", "Change the group's own key policy (the key settings); it can only add to the instance's", "owner, top-level groups", "GroupKeyPolicy", false, ""},
	{"GET", "/api/v4/groups/{id}/audit_events", "The group's audit events", "owner", "AuditEvent", true, ""},
	{"GET", "/api/v4/audit_events", "All audit events (entity_type, entity_id, created_after, created_before)", "admin", "AuditEvent", true, ""},
	{"GET", "/api/v3/user/keys", "GitHub: list your authentication keys", "self", "GitHubKey", true, ""},
	{"POST", "/api/v3/user/keys", "GitHub: add an authentication key (title, key)", "self", "GitHubKey", false, "201"},
	{"GET", "/api/v3/user/keys/{id}", "GitHub: get an authentication key", "self", "GitHubKey", false, ""},
	{"DELETE", "/api/v3/user/keys/{id}", "GitHub: delete an authentication key", "self", "", false, "204"},
	{"GET", "/api/v3/user/ssh_signing_keys", "GitHub: list your SSH signing keys", "self", "GitHubSigningKey", true, ""},
	{"POST", "/api/v3/user/ssh_signing_keys", "GitHub: add an SSH signing key (title, key)", "self", "GitHubSigningKey", false, "201"},
	{"GET", "/api/v3/user/ssh_signing_keys/{id}", "GitHub: get an SSH signing key", "self", "GitHubSigningKey", false, ""},
	{"DELETE", "/api/v3/user/ssh_signing_keys/{id}", "GitHub: delete an SSH signing key", "self", "", false, "204"},
	{"GET", "/api/v3/users/{username}/keys", "GitHub: a user's public authentication keys (not expired, not a blocked user's)", "anyone", "GitHubPublicKey", true, ""},
	{"GET", "/api/v3/users/{username}/ssh_signing_keys", "GitHub: a user's public SSH signing keys (not expired, not a blocked user's)", "anyone", "GitHubSigningKey", true, ""},
	{"GET", "/-/health", "Liveness", "anyone", "", false, ""},
	{"GET", "/-/readiness", "Readiness: both listeners up, and the database answers or the auth index is fresh enough to serve without it; a database file keygate cannot write shows as \"database\": \"read-only\" with \"writes\" refused (still 200)", "anyone", "", false, ""},
	{"GET", "/api/v3/", "GitHub: the API entry point; X-OAuth-Scopes names the token's scopes as GitHub's", "anyone", "", false, ""},
	{"POST", "/api/graphql", "GitHub GraphQL, only { viewer { login name id databaseId } } (what gh asks)", "authenticated", "", false, ""},
	{"GET", "/api/v3/user", "GitHub: the token's user", "authenticated", "", false, ""},
	{"GET", "/{username}.keys", "a user's authentication keys as authorized_keys text (not signing-only, expired or blocked users' keys)", "anyone", "", false, ""},
	{"GET", "/-/allowed_signers", "git allowed signers file (text): every signer for admins, your own lines otherwise; expired and deleted keys with valid-before", "authenticated", "", false, ""},
	{"GET", "/-/allowed_signers/revoked", "git revocation file (text, gpg.ssh.revocationFile): every revoked key", "authenticated", "", false, ""},
	{"GET", "/metrics", "Prometheus metrics (text)", "anyone", "", false, ""},
}

func obj(props map[string]any, required ...string) map[string]any {
	m := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		m["required"] = required
	}
	return m
}

var (
	str     = map[string]any{"type": "string"}
	strNull = map[string]any{"type": "string", "nullable": true}
	integer = map[string]any{"type": "integer"}
	boolean = map[string]any{"type": "boolean"}
	tstamp  = map[string]any{"type": "string", "format": "date-time"}
)

var intNull = map[string]any{"type": "integer", "nullable": true}

// keyPolicySchema adds the key policy's settings to props.
func keyPolicySchema(props map[string]any) map[string]any {
	for _, n := range keystore.KeyPolicySettings {
		switch n {
		case "require_ssh_certificate_expiry":
			props[n] = boolean
		case "max_ssh_key_lifetime", "max_ssh_certificate_lifetime":
			props[n] = intNull
		default:
			props[n] = map[string]any{"type": "integer", "description": "0: no restriction, -1: forbidden, N: minimum bits"}
		}
	}
	return props
}

var schemas = map[string]any{
	"User": obj(map[string]any{"id": integer, "username": str, "name": str, "state": str, "web_url": str,
		"created_at": tstamp, "email": str, "is_admin": boolean,
		"enterprise_group_id": map[string]any{"type": "integer", "nullable": true, "description": "the top-level group whose SSH CAs may vouch for the user (admins and the user see it; admins set it)"},
		"can_create_group":    map[string]any{"type": "boolean", "description": "may create top-level groups (admins and the user see it; admins set it)"},
		"external":            map[string]any{"type": "boolean", "description": "an external user: no top-level groups (admins and the user see it; admins set it)"},
		"projects_limit":      map[string]any{"type": "integer", "description": "GitLab's personal-projects limit; keygate has no personal namespaces"},
		"can_create_project":  boolean}, "id", "username"),
	"Key": obj(map[string]any{"id": integer, "title": str, "key": str, "created_at": tstamp,
		"expires_at": strNull, "usage_type": map[string]any{"type": "string", "enum": []string{"auth", "signing", "auth_and_signing"}}},
		"id", "title", "key", "created_at"),
	"KeyWithUser": obj(map[string]any{"id": integer, "title": str, "key": str, "created_at": tstamp, "expires_at": strNull,
		"usage_type": str, "user": map[string]any{"$ref": "#/components/schemas/User"}}, "id", "user"),
	"GPGKey": obj(map[string]any{"id": integer, "key": str, "created_at": tstamp, "fingerprint": str,
		"primary_keyid": str, "emails": map[string]any{"type": "array", "items": str}, "revoked": boolean}, "id", "key"),
	"Token": obj(map[string]any{"id": integer, "name": str, "revoked": boolean, "created_at": tstamp,
		"scopes": map[string]any{"type": "array", "items": str}, "user_id": integer, "active": boolean,
		"expires_at": map[string]any{"type": "string", "format": "date", "nullable": true},
		"token":      map[string]any{"type": "string", "description": "only in the creation response"}}, "id", "name"),
	"Group": obj(map[string]any{"id": integer, "name": str, "path": str, "full_path": str, "full_name": str,
		"parent_id": map[string]any{"type": "integer", "nullable": true}, "description": str, "created_at": tstamp,
		"enforce_ssh_certificates": boolean, "krl_public": boolean,
		"ssh_certificate_max_ttl": map[string]any{"type": "integer", "description": "top-level groups: the longest certificate (seconds) the group's managed CAs issue to people; default 28800"}}, "id", "full_path"),
	"Member": obj(map[string]any{"id": integer, "username": str, "name": str, "state": str,
		"access_level": map[string]any{"type": "integer", "enum": []int{10, 20, 30, 40, 50}}, "created_at": tstamp,
		"expires_at": map[string]any{"type": "string", "format": "date", "nullable": true, "description": "the membership ends at the start of this day, UTC"}},
		"id", "access_level"),
	"SSHCertificate": obj(map[string]any{"id": integer, "title": str, "key": str, "created_at": tstamp,
		"managed": map[string]any{"type": "boolean", "description": "keygate holds the private key (only in managed CAs' answers)"}}, "id", "key"),
	"IssuedCertificate": obj(map[string]any{"id": integer, "certificate": map[string]any{"type": "string", "description": "the OpenSSH certificate line; only in the issuing response"},
		"serial": integer, "key_id": str, "principals": map[string]any{"type": "array", "items": str},
		"extensions": map[string]any{"type": "array", "items": str}, "valid_after": tstamp, "valid_before": tstamp,
		"ca_id": integer, "group_id": integer, "key_fingerprint": str, "user_id": map[string]any{"type": "integer", "nullable": true},
		"project_id": integer, "access": str, "requested_by": map[string]any{"type": "integer", "nullable": true},
		"source": map[string]any{"type": "string", "enum": []string{keystore.CertSourceToken, keystore.CertSourceOIDC, keystore.CertSourceJob}},
		"issuer": str, "subject": str, "claims": map[string]any{"type": "object"}, "trust_rule_id": integer, "created_at": tstamp},
		"id", "serial", "key_id", "principals", "valid_after", "valid_before", "ca_id"),
	"SSHHostCA": obj(map[string]any{"id": integer, "title": str, "key": str, "fingerprint_sha256": str,
		"key_type":   map[string]any{"type": "string", "enum": []string{keystore.CAKeyEd25519, keystore.CAKeyECDSA, keystore.CAKeyRSA}},
		"created_by": map[string]any{"type": "integer", "nullable": true}, "created_at": tstamp}, "id", "key", "fingerprint_sha256"),
	"SSHHostCertificate": obj(map[string]any{"id": integer, "ca_id": integer, "serial": integer, "key_id": str, "key_type": str,
		"key_fingerprint": str, "principals": map[string]any{"type": "array", "items": str},
		"certificate":  map[string]any{"type": "string", "description": "the OpenSSH host certificate line (HostCertificate in sshd_config)"},
		"own":          map[string]any{"type": "boolean", "description": "one of keygate's own host keys, signed by keygate itself"},
		"requested_by": map[string]any{"type": "integer", "nullable": true}, "valid_after": tstamp, "valid_before": tstamp,
		"revoked": boolean, "revoked_at": map[string]any{"type": "string", "format": "date-time", "nullable": true},
		"revoked_by": map[string]any{"type": "integer", "nullable": true}, "revocation_reason": str, "created_at": tstamp},
		"id", "ca_id", "serial", "key_fingerprint", "principals", "certificate", "valid_after", "valid_before"),
	"OIDCIssuer": obj(map[string]any{"id": integer, "issuer": str, "client_id": str,
		"username_claim":  map[string]any{"type": "string", "enum": []string{"email", "preferred_username"}},
		"required_claims": map[string]any{"type": "object"}, "created_at": tstamp}, "id", "issuer"),
	"TrustRule": obj(map[string]any{"id": integer, "project_id": integer, "issuer": str, "audience": str,
		"claims": map[string]any{"type": "object"}, "access": map[string]any{"type": "string", "enum": []string{"read", "write"}},
		"max_ttl": integer, "created_by": map[string]any{"type": "integer", "nullable": true}, "created_at": tstamp},
		"id", "project_id", "issuer", "audience", "claims", "access", "max_ttl"),
	"AuditEvent": obj(map[string]any{"id": integer, "author_id": map[string]any{"type": "integer", "nullable": true},
		"entity_id": integer, "entity_type": str, "event_name": str, "details": map[string]any{"type": "object"},
		"created_at": tstamp}, "id"),
	"Revocation": obj(map[string]any{"id": integer, "type": map[string]any{"type": "string", "enum": []string{"serial", "key_id", "fingerprint"}},
		"value": str, "reason": str, "created_at": tstamp}, "id", "type", "value"),
	"DeployKey": obj(map[string]any{"id": integer, "title": str, "key": str, "fingerprint": str, "fingerprint_sha256": str,
		"created_at": tstamp, "expires_at": strNull, "can_push": boolean}, "id", "title", "key", "can_push"),
	"InstanceDeployKey": obj(map[string]any{"id": integer, "title": str, "key": str, "fingerprint": str, "fingerprint_sha256": str,
		"created_at": tstamp, "expires_at": strNull,
		"projects_with_write_access":    map[string]any{"type": "array", "items": map[string]any{"type": "object"}},
		"projects_with_readonly_access": map[string]any{"type": "array", "items": map[string]any{"type": "object"}},
		"groups_with_write_access":      map[string]any{"type": "array", "items": map[string]any{"type": "object"}},
		"groups_with_readonly_access":   map[string]any{"type": "array", "items": map[string]any{"type": "object"}},
		"user_id":                       map[string]any{"type": "integer", "nullable": true},
		"owner_status": map[string]any{"type": "string", "enum": []string{keystore.OwnerActive, keystore.OwnerInsufficient,
			keystore.OwnerBlocked, keystore.OwnerDeleted, keystore.OwnerUnknown}}}, "id", "key"),
	"Project": obj(map[string]any{"id": integer, "name": str, "path": str, "path_with_namespace": str,
		"ssh_url_to_repo": str, "default_branch": str, "web_url": str, "created_at": tstamp, "namespace": map[string]any{"type": "object"}}, "id", "ssh_url_to_repo"),
	"BastionTarget": obj(map[string]any{"id": integer, "pattern": str,
		"min_access_level": map[string]any{"type": "integer", "enum": []int{10, 20, 30, 40, 50}}, "description": str, "created_at": tstamp,
		"origin": map[string]any{"type": "string", "enum": []string{"admin", "owner"}}, "active": boolean, "disabled_reason": str},
		"id", "pattern", "min_access_level", "origin", "active"),
	"BastionAllowance": obj(map[string]any{"id": integer, "group_id": integer, "pattern": str, "description": str, "created_at": tstamp},
		"id", "group_id", "pattern"),
	"Version":          obj(map[string]any{"version": str, "revision": str}),
	"GitHubKey":        obj(map[string]any{"id": integer, "key": str, "url": str, "title": str, "created_at": tstamp, "verified": boolean, "read_only": boolean}, "id", "key"),
	"GitHubSigningKey": obj(map[string]any{"id": integer, "key": str, "url": str, "title": str, "created_at": tstamp}, "id", "key", "url"),
	"GitHubPublicKey":  obj(map[string]any{"id": integer, "key": str}, "id", "key"),
	"ApplicationSettings": obj(keyPolicySchema(map[string]any{"id": integer, "created_at": strNull, "updated_at": strNull}),
		"rsa_key_restriction", "ed25519_key_restriction"),
	"GroupKeyPolicy": obj(keyPolicySchema(map[string]any{"group_id": integer, "updated_at": strNull,
		"effective": obj(keyPolicySchema(map[string]any{}))}), "group_id", "effective"),
	"StreamingDestination": obj(map[string]any{"id": integer, "name": str, "destination_url": str, "verification_token": str,
		"event_type_filters": map[string]any{"type": "array", "items": str}, "created_at": tstamp, "updated_at": tstamp},
		"id", "destination_url", "verification_token", "event_type_filters"),
	"KeyPolicyViolation": obj(map[string]any{"kind": map[string]any{"type": "string", "enum": []string{"user_key", "deploy_key"}},
		"id": integer, "user_id": intNull, "username": strNull, "title": str, "fingerprint": str,
		"key_type": map[string]any{"type": "string", "enum": []string{"rsa", "ecdsa", "ecdsa_sk", "ed25519", "ed25519_sk"}},
		"bits":     integer, "expires_at": strNull, "created_at": tstamp, "setting": str, "reason": str}, "kind", "id", "fingerprint", "setting"),
	"Error": obj(map[string]any{"message": map[string]any{
		"description": "a string such as \"404 Key Not Found\", or for validation errors an object of field -> reasons"}}),
}

var (
	openAPIOnce sync.Once
	openAPIDoc  map[string]any
)

// OpenAPI returns the OpenAPI 3 document of the API.
func OpenAPI() map[string]any {
	openAPIOnce.Do(func() {
		paths := map[string]map[string]any{}
		for _, op := range operations {
			status := op.Status
			if status == "" {
				status = "200"
			}
			resp := map[string]any{"description": "success"}
			if op.Schema != "" {
				var schema any = map[string]any{"$ref": "#/components/schemas/" + op.Schema}
				if op.List {
					schema = map[string]any{"type": "array", "items": schema}
				}
				resp["content"] = map[string]any{"application/json": map[string]any{"schema": schema}}
			}
			o := map[string]any{
				"summary":     op.Summary,
				"description": "Who: " + op.Who,
				"responses": map[string]any{
					status: resp,
					"default": map[string]any{"description": "error", "content": map[string]any{
						"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}},
				},
			}
			var ps []any
			for _, m := range pathParamRE.FindAllStringSubmatch(op.Path, -1) {
				ps = append(ps, map[string]any{"name": m[1], "in": "path", "required": true, "schema": str})
			}
			if op.List {
				ps = append(ps,
					map[string]any{"name": "page", "in": "query", "schema": integer},
					map[string]any{"name": "per_page", "in": "query", "schema": integer})
			}
			if len(ps) > 0 {
				o["parameters"] = ps
			}
			if op.Who == "anyone" {
				o["security"] = []any{}
			}
			if paths[op.Path] == nil {
				paths[op.Path] = map[string]any{}
			}
			paths[op.Path][strings.ToLower(op.Method)] = o
		}
		openAPIDoc = map[string]any{
			"openapi": "3.0.3",
			"info": map[string]any{"title": "keygate REST API", "version": "4",
				"description": "GitLab v4 compatible keys, groups and SSH certificate authorities; GitHub v3 compatible key routes."},
			"servers": []any{map[string]any{"url": "/"}},
			"paths":   paths,
			"components": map[string]any{
				"schemas": schemas,
				"securitySchemes": map[string]any{
					"privateToken": map[string]any{"type": "apiKey", "in": "header", "name": "PRIVATE-TOKEN"},
					"bearer":       map[string]any{"type": "http", "scheme": "bearer"},
				},
			},
			"security": []any{map[string]any{"privateToken": []any{}}, map[string]any{"bearer": []any{}}},
		}
	})
	return openAPIDoc
}

func (a *API) openAPI(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, OpenAPI())
}

// pathParamRE finds {name} in a route, also inside a segment ({username}.keys).
var pathParamRE = regexp.MustCompile(`\{([^}]+)\}`)
