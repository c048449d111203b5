package keystore

import (
	"math"
	"time"
)

// User states.
const (
	StateActive  = "active"
	StateBlocked = "blocked"
)

// Key usage types, as GitLab names them.
const (
	UsageAuth           = "auth"
	UsageSigning        = "signing"
	UsageAuthAndSigning = "auth_and_signing"
)

// Access levels of group membership, as GitLab numbers them.
const (
	NoAccess   = 0
	Guest      = 10
	Reporter   = 20
	Developer  = 30
	Maintainer = 40
	Owner      = 50
)

// Entity names what a change-log row is about (and the target type of the
// audit event written with it).
type Entity string

// The entities. Adding one: a constant here, a row in Entities, and a case
// in authindex's Apply (a test fails until it has one).
const (
	EntityUser             Entity = "user"
	EntityGroup            Entity = "group"
	EntityMember           Entity = "member" // EntityID is the group
	EntityKey              Entity = "key"
	EntityCA               Entity = "ca"
	EntityRevocation       Entity = "revocation"
	EntityBastionTarget    Entity = "bastion_target"
	EntityBastionAllowance Entity = "bastion_allowance"
	EntityGPGKey           Entity = "gpg_key"
	EntityToken            Entity = "token"
	EntityProject          Entity = "project"
	EntityDeployKey        Entity = "deploy_key" // with its project and group grants
	EntityKeyPolicy        Entity = "key_policy" // the instance's (group_id NULL) or a top-level group's
)

// Entities lists every entity with the table that holds it, in the order
// parents come before children (the order export writes tables in).
var Entities = []struct {
	Entity Entity
	Table  string
}{
	{EntityGroup, "groups"},
	{EntityUser, "users"}, // users.enterprise_group_id references groups
	{EntityMember, "members"},
	{EntityToken, "personal_access_tokens"},
	{EntityKey, "keys"},
	{EntityCA, "group_cas"},
	{EntityRevocation, "cert_revocations"},
	{EntityGPGKey, "gpg_keys"},
	{EntityProject, "projects"},
	{EntityDeployKey, "deploy_keys"}, // grants: deploy_key_projects, deploy_key_groups
	{EntityBastionTarget, "bastion_targets"},
	{EntityBastionAllowance, "bastion_allowances"},
	{EntityKeyPolicy, "key_policies"},
}

// Token scopes.
const (
	ScopeAPI     = "api"
	ScopeReadAPI = "read_api"
	// ScopeSudo lets an administrator's token act as another user (the
	// Sudo header or ?sudo=), as in GitLab. Only administrators' tokens
	// may carry it.
	ScopeSudo = "sudo"
)

// User is a person who owns keys and belongs to groups.
type User struct {
	ID        int64
	Username  string
	Email     string
	Name      string
	State     string
	IsAdmin   bool
	CreatedAt time.Time
	// EnterpriseGroupID is the top-level group whose SSH certificate
	// authorities may vouch for this user (GitLab's enterprise users); nil:
	// no CA may. Only admins set it.
	EnterpriseGroupID *int64
	// CanCreateGroup, External and ProjectsLimit are GitLab's user limits
	// (admins set them): without CanCreateGroup, or when External, the user
	// cannot create top-level groups; ProjectsLimit caps personal projects,
	// which keygate does not have.
	CanCreateGroup bool
	External       bool
	ProjectsLimit  int
}

// DefaultProjectsLimit is a new user's projects_limit (GitLab's default).
const DefaultProjectsLimit = 100000

// MayCreateTopLevelGroup reports whether u may create a top-level group:
// admins always; anyone else unless external or without can_create_group.
func (u *User) MayCreateTopLevelGroup() bool {
	return u.IsAdmin || (u.CanCreateGroup && !u.External)
}

// Active reports whether the user may authenticate.
func (u *User) Active() bool { return u.State == StateActive }

// Group is a namespace of projects, possibly nested under a parent.
type Group struct {
	ID                     int64
	Name                   string
	Path                   string
	Description            string
	ParentID               *int64
	FullPath               string
	EnforceSSHCertificates bool
	CreatedAt              time.Time
	// KRLPublic: anyone may read the group's KRL and CA keys (see KRLState).
	KRLPublic bool
	// SSHCertificateMaxTTL is the longest certificate the group's managed
	// CAs issue to people (default 8h; keygate's --cert-max-ttl caps it).
	SSHCertificateMaxTTL time.Duration
}

// TopLevel reports whether the group has no parent.
func (g *Group) TopLevel() bool { return g.ParentID == nil }

// Member is a user's direct membership of a group.
type Member struct {
	GroupID     int64
	User        User
	AccessLevel int
	CreatedAt   time.Time
	// ExpiresAt is when the membership ends (midnight UTC of GitLab's
	// expires_at date); nil: never. An expired membership grants nothing.
	ExpiresAt *time.Time
}

// Expired reports whether the membership has ended at now.
func (m *Member) Expired(now time.Time) bool { return m.ExpiresAt != nil && !now.Before(*m.ExpiresAt) }

// Token is a personal access token. The secret itself is never stored.
type Token struct {
	ID         int64
	UserID     int64
	Name       string
	Scopes     []string
	ExpiresAt  *time.Time
	Revoked    bool
	CreatedAt  time.Time
	LastUsedAt *time.Time
}

// Active reports whether the token can be used at now.
func (t *Token) Active(now time.Time) bool {
	return !t.Revoked && (t.ExpiresAt == nil || now.Before(*t.ExpiresAt))
}

// HasScope reports whether the token carries scope.
func (t *Token) HasScope(scope string) bool {
	for _, s := range t.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}

// Key is a user's SSH public key.
type Key struct {
	ID                int64
	UserID            int64
	Title             string
	Key               string // normalised "type base64 [comment]"
	Type              string
	Bits              int
	FingerprintSHA256 string // "SHA256:…"
	FingerprintMD5    string // "aa:bb:…"
	UsageType         string
	ExpiresAt         *time.Time
	CreatedAt         time.Time
	LastUsedAt        *time.Time
}

// CanAuthenticate reports whether the key's usage type allows logins.
func (k *Key) CanAuthenticate() bool {
	return k.UsageType == UsageAuth || k.UsageType == UsageAuthAndSigning
}

// CanSign reports whether the key's usage type allows signatures.
func (k *Key) CanSign() bool {
	return k.UsageType == UsageSigning || k.UsageType == UsageAuthAndSigning
}

// Expired reports whether the key has expired at now.
func (k *Key) Expired(now time.Time) bool {
	return k.ExpiresAt != nil && !now.Before(*k.ExpiresAt)
}

// GroupCA is a group SSH certificate authority (GitLab's "group SSH certificate").
type GroupCA struct {
	ID                int64
	GroupID           int64
	Title             string
	Key               string
	FingerprintSHA256 string
	CreatedAt         time.Time
	// Managed: keygate generated the CA and holds its private key (sealed,
	// see GenerateCA); it issues certificates. Uploaded CAs are not.
	Managed bool
}

// Revocation kinds.
const (
	RevokeSerial      = "serial"
	RevokeKeyID       = "key_id"
	RevokeFingerprint = "fingerprint"
)

// Revocation revokes certificates issued by one CA key in one top-level
// group. It belongs to the group and the key (CAFingerprint), not to a CA
// row: deleting the CA and registering the same key again in the same
// group keeps it in force. It refuses no other group's logins, and only
// its group's owners (and admins) read or lift it.
type Revocation struct {
	ID            int64
	CAFingerprint string // "SHA256:…" of the CA's public key
	// GroupID is the top-level group whose owner made the revocation, the
	// only group whose certificate logins it refuses.
	GroupID   int64
	Kind      string
	Value     string
	Reason    string
	CreatedAt time.Time
}

// GPGKey is a user's OpenPGP public key.
type GPGKey struct {
	ID           int64
	UserID       int64
	Key          string
	Fingerprint  string
	PrimaryKeyID string
	Emails       []string
	CreatedAt    time.Time
	RevokedAt    *time.Time
}

// AuditEvent records one state-changing action.
type AuditEvent struct {
	ID         int64
	At         time.Time
	ActorID    *int64
	Action     string
	TargetType string
	TargetID   int64
	Details    string // JSON object
	RemoteIP   string
}

// Change is one row of the change log.
type Change struct {
	Seq      int64
	At       time.Time
	Entity   Entity
	EntityID int64
	Op       string // "create", "update", "delete"
}

// Actor is who performs a write, for the audit log.
type Actor struct {
	UserID   int64 // 0: the system
	RemoteIP string
	// SudoBy is the administrator who acted as UserID through Sudo (0:
	// none); audit events record it as "sudo_by".
	SudoBy int64
}

// Page selects one page of a list. Page counts from 1.
type Page struct {
	Page    int
	PerPage int
}

func (p Page) limitOffset() (int, int) {
	per := p.PerPage
	if per < 0 {
		// Every row. Not LIMIT -1: that means "no limit" on SQLite only.
		return math.MaxInt64, 0
	}
	if per == 0 {
		per = 20
	}
	page := p.Page
	if page <= 0 {
		page = 1
	}
	return per, (page - 1) * per
}
