#!/usr/bin/python3
"""python-gitlab (library) against a running keygate over HTTPS.

Run by TestCompatPythonGitlab (cmd/keygate/compat_test.go), which starts
keygate with its own TLS certificate and passes:
  KEYGATE_URL     https://127.0.0.1:PORT
  KEYGATE_TOKEN   the bootstrap admin token
  KEYGATE_CA      the throwaway CA's PEM file
  KEYGATE_SSH_KEYS  a file of fresh OpenSSH public keys, one per line
  KEYGATE_GPG_KEY   an armored OpenPGP public key for u03@example.com
Every check is an assert; the last line is "python-gitlab: N checks passed".
"""
import os
import warnings

import gitlab

# python-gitlab warns when a Link header leaves the base URL (http:// behind
# TLS, another host): that would be a failure here.
warnings.filterwarnings("error", message="The base URL")

URL, TOKEN, CA = os.environ["KEYGATE_URL"], os.environ["KEYGATE_TOKEN"], os.environ["KEYGATE_CA"]
with open(os.environ["KEYGATE_SSH_KEYS"]) as f:
    KEYS = f.read().split("\n")
with open(os.environ["KEYGATE_GPG_KEY"]) as f:
    GPG = f.read()
checks = 0


def check(cond, what):
    global checks
    assert cond, what
    checks += 1


def raises(exc, code, fn, what):
    try:
        fn()
    except exc as e:
        check(e.response_code == code, f"{what}: status {e.response_code}, want {code}")
        return
    raise AssertionError(f"{what}: no {exc.__name__}")


gl = gitlab.Gitlab(URL, private_token=TOKEN, ssl_verify=CA)
gl.auth()
check(gl.user.username == "root", "auth() is root")

# Users, pagination over HTTPS (get_all follows the Link headers).
users = [gl.users.create({"username": f"u{i:02d}", "email": f"u{i:02d}@example.com", "name": f"User {i}"}) for i in range(25)]
every = gl.users.list(get_all=True, per_page=10)
check(len(every) == 26, f"get_all users: {len(every)}, want 26")
check([u.username for u in gl.users.list(username="u03")] == ["u03"], "users.list(username=)")
users[1].block()
blocked = gl.users.list(blocked=True, get_all=True)
check([u.username for u in blocked] == ["u01"], f"users.list(blocked=True) = {[u.username for u in blocked]}")
raises(gitlab.exceptions.GitlabListError, 400, lambda: gl.users.list(blocked="maybe"), "users.list(blocked=maybe)")

# Keys with expires_at and usage_type; a token for the user; their view.
u = gl.users.get(users[3].id)
k = u.keys.create({"title": "signing", "key": KEYS[0], "expires_at": "2031-01-02", "usage_type": "signing"})
check(k.usage_type == "signing" and k.expires_at.startswith("2031-01-02"), f"key create: {k.usage_type} {k.expires_at}")
u.keys.create({"title": "laptop", "key": KEYS[1]})
tok = u.personal_access_tokens.create({"name": "compat", "scopes": ["api"]})
check(tok.token and tok.scopes == ["api"], "personal access token")
me = gitlab.Gitlab(URL, private_token=tok.token, ssl_verify=CA)
me.auth()
check(me.user.username == "u03", "token authenticates as u03")
mine = me.user.keys.list(get_all=True)
check(sorted(x.title for x in mine) == ["laptop", "signing"], f"user.keys.list: {[x.title for x in mine]}")
me.user.keys.delete(mine[0].id)
check(len(me.user.keys.list(get_all=True)) == 1, "user.keys.delete")

# GPG keys.
g = me.user.gpgkeys.create({"key": GPG})
check(g.key.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----"), "gpgkeys.create")
check([x.id for x in gl.users.get(u.id).gpgkeys.list()] == [g.id], "users/:id/gpg_keys")
g.delete()
check(me.user.gpgkeys.list() == [], "gpgkey delete")

# Groups, subgroups, members, members_all.
eng = gl.groups.create({"name": "Eng", "path": "eng"})
back = gl.groups.create({"name": "Backend", "path": "backend", "parent_id": eng.id})
eng.members.create({"user_id": users[2].id, "access_level": 30})
back.members.create({"user_id": users[4].id, "access_level": 40})
check(sorted(x.full_path for x in gl.groups.list(get_all=True)) == ["eng", "eng/backend"], "groups.list")
check([x.full_path for x in gl.groups.list(top_level_only=True)] == ["eng"], "groups.list(top_level_only=True)")
check([x.username for x in eng.members.list(query="u02")] == ["u02"], "members.list(query=)")
check(eng.members.list(query="zzz") == [], "members.list(query=zzz) is empty")
every = {m.username: m.access_level for m in back.members_all.list(get_all=True)}
check(every == {"root": 50, "u02": 30, "u04": 40}, f"members_all: {every}")
check([x.username for x in back.members.list()] == ["u04"], "direct members")
check(sorted(x.full_path for x in eng.descendant_groups.list()) == ["eng/backend"], "descendant_groups")

# Group SSH certificate authorities through gl.http_*.
ca = gl.http_post(f"/groups/{eng.id}/ssh_certificates", post_data={"title": "team CA", "key": KEYS[2]})
check(ca["title"] == "team CA", "ssh_certificates create")
listed = gl.http_list(f"/groups/{eng.id}/ssh_certificates", get_all=True)
check([c["id"] for c in listed] == [ca["id"]], "ssh_certificates list")
raises(gitlab.exceptions.GitlabHttpError, 403, lambda: gl.http_post(f"/groups/{back.id}/ssh_certificates", post_data={"title": "x", "key": KEYS[3]}), "CA on a subgroup")
gl.http_delete(f"/groups/{eng.id}/ssh_certificates/{ca['id']}")
check(gl.http_list(f"/groups/{eng.id}/ssh_certificates") == [], "ssh_certificates delete")

# Projects.
p = gl.projects.create({"name": "tools", "namespace_id": back.id})
check(p.path_with_namespace == "eng/backend/tools" and p.default_branch == "main", f"project: {p.path_with_namespace} {p.default_branch}")
check([x.path_with_namespace for x in gl.projects.list(get_all=True)] == ["eng/backend/tools"], "projects.list")
check([x.path_with_namespace for x in eng.projects.list()] == [], "group projects are direct")
raises(gitlab.exceptions.GitlabCreateError, 400, lambda: gl.projects.create({"name": "nowhere"}), "project without namespace")

# Errors.
raises(gitlab.exceptions.GitlabGetError, 404, lambda: gl.users.get(999999), "missing user")
raises(gitlab.exceptions.GitlabAuthenticationError, 401, lambda: gitlab.Gitlab(URL, private_token="kgpat-wrong", ssl_verify=CA).auth(), "bad token")
kept = me.user.keys.list()[0]
raises(gitlab.exceptions.GitlabCreateError, 400, lambda: me.user.keys.create({"title": "again", "key": kept.key}), "duplicate key")

# Application settings: the key policy (issue 26). gl.settings.get() reads
# every attribute; save() sends the changed ones.
st = gl.settings.get()
check(st.rsa_key_restriction == 0 and st.dsa_key_restriction == -1 and st.max_ssh_key_lifetime is None,
      f"settings: rsa {st.rsa_key_restriction} dsa {st.dsa_key_restriction} lifetime {st.max_ssh_key_lifetime}")
check(st.default_projects_limit == 100000 and st.repository_storages == ["default"], "other settings at GitLab's defaults")
st.ed25519_sk_key_restriction = -1
st.max_ssh_key_lifetime = 365
st.save()
again = gl.settings.get()
check(again.ed25519_sk_key_restriction == -1 and again.max_ssh_key_lifetime == 365, "settings.save()")
raises(gitlab.exceptions.GitlabCreateError, 400,
       lambda: me.user.keys.create({"title": "no expiry", "key": KEYS[3]}), "a key without expiry under max_ssh_key_lifetime")
raises(gitlab.exceptions.GitlabUpdateError, 400, lambda: gl.settings.update(new_data={"signup_enabled": True}), "a setting keygate does not change")
raises(gitlab.exceptions.GitlabUpdateError, 400, lambda: gl.settings.update(new_data={"rsa_key_restriction": 1000}), "an unsupported size")
raises(gitlab.exceptions.GitlabUpdateError, 403, lambda: me.settings.update(new_data={"rsa_key_restriction": -1}), "a user changing settings")
gl.settings.update(new_data={"ed25519_sk_key_restriction": 0, "max_ssh_key_lifetime": 0})
check(gl.settings.get().max_ssh_key_lifetime is None, "lifetime cleared")

print(f"python-gitlab {gitlab.__version__}: {checks} checks passed")
