package httpapi

import (
	"net/http"
	"net/url"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

func urlUnescape(s string) (string, error) { return url.PathUnescape(s) }

// handlerFunc is a handler that returns its error for writeError.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// v4 adapts a handlerFunc to GitLab's error shapes.
func (a *API) v4(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	}
}

// v3 adapts a handlerFunc to GitHub's error shapes.
func (a *API) v3(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			a.writeErrorV3(w, r, err)
		}
	}
}

// routes is the route table, top to bottom.
func (a *API) routes() chi.Router {
	r := chi.NewRouter()
	// StripSlashes: /api/v4/user/keys/ is /api/v4/user/keys, as in GitLab.
	// GetHead: HEAD answers every GET route (headers only), for the
	// `curl -I …?per_page=1` X-Total idiom.
	r.Use(a.requestID, a.publicBase, a.accessLog, a.countRequests, a.recoverer, a.limitBody,
		middleware.StripSlashes, middleware.GetHead)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "404 Not Found"})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "405 Method Not Allowed"})
	})

	r.Get("/{username}.keys", a.v4(a.publicKeysText))
	r.Get("/-/health", a.health)
	r.Get("/-/readiness", a.readiness)
	r.Get("/-/oidc_issuers", a.v4(a.loginIssuers))
	r.With(a.authenticate(false), a.requireUser(false)).Get("/-/allowed_signers", a.v4(a.allowedSigners))
	r.With(a.authenticate(false), a.requireUser(false)).Get("/-/allowed_signers/revoked", a.v4(a.revokedSigners))
	if !a.separateMetrics {
		r.Method(http.MethodGet, "/metrics", a.metricsHandler())
	}

	r.Route("/api/v4", func(r chi.Router) {
		r.Use(a.authenticate(false))
		r.Get("/openapi.json", a.openAPI)

		// Certificates from identity: a personal access token or an ID
		// token (people), a CI job's ID token (projects).
		r.Post("/user/ssh_certificates", a.v4(a.issueMyCertificate))
		r.Post("/projects/{id}/ssh_certificates", a.v4(a.issueJobCertificate))

		// Public reads.
		r.Get("/users/{id}/gpg_keys", a.v4(a.listUserGPGKeys))
		// A group's KRL and CA keys: its owners and maintainers, or anyone
		// once an admin made them public (fleet.go).
		r.Get("/groups/{id}/ssh_certificates/krl", a.v4(a.groupKRL))
		r.Get("/groups/{id}/ssh_certificates/trusted_user_ca_keys", a.v4(a.trustedUserCAKeys))
		// The host certificates' revocations: anyone (hostca.go).
		r.Get("/ssh_host_certificate_authorities/krl", a.v4(a.hostKRL))
		r.Get("/users/{id}/gpg_keys/{key_id}", a.v4(a.getUserGPGKey))

		r.Group(func(r chi.Router) {
			r.Use(a.requireUser(false))
			r.Get("/version", a.v4(a.getVersion))
			r.Get("/metadata", a.v4(a.getMetadata))

			r.Get("/user", a.v4(a.getCurrentUser))
			r.Get("/user/keys", a.v4(a.listMyKeys))
			r.Post("/user/keys", a.v4(a.addMyKey))
			r.Get("/user/keys/{key_id}", a.v4(a.getMyKey))
			r.Delete("/user/keys/{key_id}", a.v4(a.deleteMyKey))
			r.Get("/user/ssh_certificates", a.v4(a.listMyCertificates))
			r.Post("/user/keys/{key_id}/revoke", a.v4(a.revokeMyKey))
			r.Get("/user/gpg_keys", a.v4(a.listMyGPGKeys))
			r.Post("/user/gpg_keys", a.v4(a.addMyGPGKey))
			r.Get("/user/gpg_keys/{key_id}", a.v4(a.getMyGPGKey))
			r.Delete("/user/gpg_keys/{key_id}", a.v4(a.deleteMyGPGKey))
			r.Post("/user/gpg_keys/{key_id}/revoke", a.v4(a.revokeMyGPGKey))

			r.Get("/users", a.v4(a.listUsers))
			r.Get("/users/{id}", a.v4(a.getUser))
			r.Get("/users/{id}/keys", a.v4(a.listUserKeys))
			r.Get("/users/{id}/keys/{key_id}", a.v4(a.getUserKey))

			r.Get("/personal_access_tokens", a.v4(a.listTokens))
			r.Get("/personal_access_tokens/self", a.v4(a.getSelfToken))
			r.Delete("/personal_access_tokens/self", a.v4(a.revokeSelfToken))
			r.Get("/personal_access_tokens/{token_id}", a.v4(a.getToken))
			r.Delete("/personal_access_tokens/{token_id}", a.v4(a.revokeToken))

			r.Get("/groups", a.v4(a.listGroups))
			r.Post("/groups", a.v4(a.createGroup))
			r.Get("/groups/{id}", a.v4(a.getGroup))
			r.Put("/groups/{id}", a.v4(a.updateGroup))
			r.Delete("/groups/{id}", a.v4(a.deleteGroup))
			r.Get("/groups/{id}/subgroups", a.v4(a.listSubgroups))
			r.Get("/groups/{id}/descendant_groups", a.v4(a.listDescendantGroups))
			r.Get("/groups/{id}/members", a.v4(a.listMembers))
			r.Post("/groups/{id}/members", a.v4(a.addMember))
			r.Get("/groups/{id}/members/all", a.v4(a.listAllMembers))
			r.Get("/groups/{id}/members/all/{user_id}", a.v4(a.getAllMember))
			r.Get("/groups/{id}/members/{user_id}", a.v4(a.getMember))
			r.Put("/groups/{id}/members/{user_id}", a.v4(a.updateMember))
			r.Delete("/groups/{id}/members/{user_id}", a.v4(a.removeMember))
			r.Get("/groups/{id}/ssh_certificates", a.v4(a.listCAs))
			r.Post("/groups/{id}/ssh_certificates", a.v4(a.createCA))
			r.Delete("/groups/{id}/ssh_certificates/{cert_id}", a.v4(a.deleteCA))
			r.Delete("/groups/{id}/ssh_certificate/{cert_id}", a.v4(a.deleteCA))
			r.Get("/groups/{id}/audit_events", a.v4(a.listGroupAuditEvents))
			r.Get("/groups/{id}/ssh_certificates/principals", a.v4(a.sshPrincipals))
			r.Get("/groups/{id}/ssh_certificates/{cert_id}/revocations", a.v4(a.listRevocations))
			r.Post("/groups/{id}/ssh_certificates/{cert_id}/revocations", a.v4(a.createRevocation))
			r.Delete("/groups/{id}/ssh_certificates/{cert_id}/revocations/{revocation_id}", a.v4(a.deleteRevocation))
			r.Get("/groups/{id}/ssh_certificates/{cert_id}/issued", a.v4(a.listIssued))
			r.Get("/groups/{id}/ssh_certificate_trust", a.v4(a.listGroupTrustRules))
			r.Get("/projects/{id}/ssh_certificate_trust", a.v4(a.listTrustRules))
			r.Post("/projects/{id}/ssh_certificate_trust", a.v4(a.createTrustRule))
			r.Delete("/projects/{id}/ssh_certificate_trust/{rule_id}", a.v4(a.deleteTrustRule))
			r.Get("/groups/{id}/bastion_targets", a.v4(a.listBastionTargets))
			r.Post("/groups/{id}/bastion_targets", a.v4(a.createBastionTarget))
			r.Delete("/groups/{id}/bastion_targets/{target_id}", a.v4(a.deleteBastionTarget))
			r.Get("/groups/{id}/bastion_allowances", a.v4(a.listBastionAllowances))
			r.Get("/groups/{id}/key_policy", a.v4(a.getGroupKeyPolicy))
			r.Put("/groups/{id}/key_policy", a.v4(a.updateGroupKeyPolicy))
			r.Get("/groups/{id}/projects", a.v4(a.listGroupProjects))
			r.Get("/projects", a.v4(a.listProjects))
			r.Post("/projects", a.v4(a.createProject))
			r.Get("/projects/{id}", a.v4(a.getProject))
			// Deploy keys: maintainers of the project (group); admins everywhere.
			pList, pCreate, pGet, pUpdate, pDelete, pEnable := a.scopedDeployKeys(false)
			r.Get("/projects/{id}/deploy_keys", a.v4(pList))
			r.Post("/projects/{id}/deploy_keys", a.v4(pCreate))
			r.Get("/projects/{id}/deploy_keys/{key_id}", a.v4(pGet))
			r.Put("/projects/{id}/deploy_keys/{key_id}", a.v4(pUpdate))
			r.Delete("/projects/{id}/deploy_keys/{key_id}", a.v4(pDelete))
			r.Post("/projects/{id}/deploy_keys/{key_id}/enable", a.v4(pEnable))
			gList, gCreate, gGet, gUpdate, gDelete, gEnable := a.scopedDeployKeys(true)
			r.Get("/groups/{id}/deploy_keys", a.v4(gList))
			r.Post("/groups/{id}/deploy_keys", a.v4(gCreate))
			r.Get("/groups/{id}/deploy_keys/{key_id}", a.v4(gGet))
			r.Put("/groups/{id}/deploy_keys/{key_id}", a.v4(gUpdate))
			r.Delete("/groups/{id}/deploy_keys/{key_id}", a.v4(gDelete))
			r.Post("/groups/{id}/deploy_keys/{key_id}/enable", a.v4(gEnable))
			r.Get("/users/{id}/project_deploy_keys", a.v4(a.listUserProjectDeployKeys))
			r.Delete("/projects/{id}", a.v4(a.deleteProject))

			r.Group(func(r chi.Router) {
				r.Use(a.requireAdmin)
				r.Post("/users", a.v4(a.createUser))
				r.Put("/users/{id}", a.v4(a.updateUser))
				r.Delete("/users/{id}", a.v4(a.deleteUser))
				r.Post("/users/{id}/block", a.v4(a.blockUser))
				r.Post("/users/{id}/unblock", a.v4(a.unblockUser))
				r.Post("/users/{id}/personal_access_tokens", a.v4(a.createToken))
				r.Post("/users/{id}/keys", a.v4(a.addUserKey))
				r.Delete("/users/{id}/keys/{key_id}", a.v4(a.deleteUserKey))
				r.Post("/users/{id}/keys/{key_id}/revoke", a.v4(a.revokeUserKey))
				r.Post("/users/{id}/gpg_keys", a.v4(a.addUserGPGKey))
				r.Delete("/users/{id}/gpg_keys/{key_id}", a.v4(a.deleteUserGPGKey))
				r.Post("/users/{id}/gpg_keys/{key_id}/revoke", a.v4(a.revokeUserGPGKey))
				r.Get("/keys", a.v4(a.getKeyByFingerprint))
				r.Get("/keys/{id}", a.v4(a.getKeyWithUser))
				r.Get("/audit_events", a.v4(a.listAuditEvents))
				r.Get("/deploy_keys", a.v4(a.listInstanceDeployKeys))
				r.Post("/deploy_keys", a.v4(a.createInstanceDeployKey))
				r.Get("/deploy_keys/{key_id}", a.v4(a.getInstanceDeployKey))
				r.Put("/deploy_keys/{key_id}", a.v4(a.updateInstanceDeployKey))
				r.Delete("/deploy_keys/{key_id}", a.v4(a.deleteInstanceDeployKey))
				r.Get("/admin/audit_events/streaming/destinations", a.v4(a.listStreamDestinations))
				r.Post("/admin/audit_events/streaming/destinations", a.v4(a.createStreamDestination))
				r.Get("/admin/audit_events/streaming/destinations/{destination_id}", a.v4(a.getStreamDestination))
				r.Put("/admin/audit_events/streaming/destinations/{destination_id}", a.v4(a.updateStreamDestination))
				r.Delete("/admin/audit_events/streaming/destinations/{destination_id}", a.v4(a.deleteStreamDestination))
				r.Get("/application/settings", a.v4(a.getSettings))
				r.Put("/application/settings", a.v4(a.updateSettings))
				r.Get("/application/settings/key_policy_violations", a.v4(a.listPolicyViolations))
				r.Get("/admin/oidc_issuers", a.v4(a.listOIDCIssuers))
				r.Post("/admin/oidc_issuers", a.v4(a.createOIDCIssuer))
				r.Get("/admin/oidc_issuers/{issuer_id}", a.v4(a.getOIDCIssuer))
				r.Delete("/admin/oidc_issuers/{issuer_id}", a.v4(a.deleteOIDCIssuer))
				r.Get("/admin/ssh_host_certificate_authorities", a.v4(a.listHostCAs))
				r.Post("/admin/ssh_host_certificate_authorities", a.v4(a.createHostCA))
				r.Get("/admin/ssh_host_certificate_authorities/{ca_id}", a.v4(a.getHostCA))
				r.Delete("/admin/ssh_host_certificate_authorities/{ca_id}", a.v4(a.deleteHostCA))
				r.Get("/admin/ssh_host_certificates", a.v4(a.listHostCertificates))
				r.Post("/admin/ssh_host_certificates", a.v4(a.issueHostCertificate))
				r.Get("/admin/ssh_host_certificates/{certificate_id}", a.v4(a.getHostCertificate))
				r.Post("/admin/ssh_host_certificates/{certificate_id}/revoke", a.v4(a.revokeHostCertificate))
				r.Post("/groups/{id}/bastion_allowances", a.v4(a.createBastionAllowance))
				r.Delete("/groups/{id}/bastion_allowances/{allowance_id}", a.v4(a.deleteBastionAllowance))
			})
		})
	})

	r.With(a.authenticate(true), a.requireUser(true)).Post("/api/graphql", a.v3(a.ghGraphQL))
	r.Route("/api/v3", func(r chi.Router) {
		r.Use(a.authenticate(true))
		r.NotFound(a.ghNotFound)
		r.Get("/", a.v3(a.ghRoot))
		r.Get("/users/{username}/keys", a.v3(a.ghPublicKeys))
		r.Get("/users/{username}/ssh_signing_keys", a.v3(a.ghPublicSigningKeys))
		r.Group(func(r chi.Router) {
			r.Use(a.requireUser(true))
			r.Get("/user", a.v3(a.ghUser))
			r.Get("/user/keys", a.v3(a.ghListKeys))
			r.Post("/user/keys", a.v3(a.ghAddKey))
			r.Get("/user/keys/{id}", a.v3(a.ghGetKey))
			r.Delete("/user/keys/{id}", a.v3(a.ghDeleteKey))
			r.Get("/user/ssh_signing_keys", a.v3(a.ghListSigningKeys))
			r.Post("/user/ssh_signing_keys", a.v3(a.ghAddSigningKey))
			r.Get("/user/ssh_signing_keys/{id}", a.v3(a.ghGetSigningKey))
			r.Delete("/user/ssh_signing_keys/{id}", a.v3(a.ghDeleteSigningKey))
			r.Get("/repos/{owner}/{repo}/keys", a.v3(a.ghListRepoKeys))
			r.Post("/repos/{owner}/{repo}/keys", a.v3(a.ghAddRepoKey))
			r.Get("/repos/{owner}/{repo}/keys/{id}", a.v3(a.ghGetRepoKey))
			r.Delete("/repos/{owner}/{repo}/keys/{id}", a.v3(a.ghDeleteRepoKey))
		})
	})
	return r
}
