// octokit and gitbeaker against a running keygate over HTTPS. Run by
// TestCompatJS (cmd/keygate/compat_test.go) with KEYGATE_URL, KEYGATE_TOKEN,
// KEYGATE_SSH_KEYS (a file of fresh public keys, one per line) and
// NODE_EXTRA_CA_CERTS (the throwaway CA). Prints "octokit: N checks passed"
// and "gitbeaker: N checks passed"; any failure throws.
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";
import { Octokit } from "@octokit/rest";
import { Gitlab } from "@gitbeaker/rest";

const url = process.env.KEYGATE_URL;
const admin = process.env.KEYGATE_TOKEN;
const keys = readFileSync(process.env.KEYGATE_SSH_KEYS, "utf8").trim().split("\n");
const gpgKey = readFileSync(process.env.KEYGATE_GPG_KEY, "utf8");
let checks = 0;
const check = (cond, what) => { assert.ok(cond, what); checks++; };
const rejects = async (p, status, what, msg) => {
  try { await p; } catch (e) {
    const code = e.status ?? e.cause?.response?.status;
    check(code === status, `${what}: status ${code}, want ${status}`);
    if (msg) check(String(e.message).includes(msg), `${what}: message ${e.message}, want ${msg}`);
    return;
  }
  throw new Error(`${what}: no error`);
};

// gitbeaker (GitLab v4).
const gl = new Gitlab({ host: url, token: admin });
const alice = await gl.Users.create({ username: "alice", email: "alice@example.com", name: "Alice" });
for (let i = 0; i < 6; i++) await gl.Users.create({ username: `bulk${i}`, email: `bulk${i}@example.com` });
const every = await gl.Users.all({ perPage: 3, maxPages: 10 });
check(every.length === 8, `Users.all paged: ${every.length}, want 8`);
await gl.Users.block(alice.id);
const blocked = await gl.Users.all({ blocked: true });
check(blocked.length === 1 && blocked[0].username === "alice", `Users.all({blocked:true}): ${blocked.map((u) => u.username)}`);
await gl.Users.unblock(alice.id);
const key = await gl.UserSSHKeys.create("signing", keys[0], { userId: alice.id, expiresAt: "2031-01-02", usageType: "signing" });
check(key.usage_type === "signing" && String(key.expires_at).startsWith("2031-01-02"), `UserSSHKeys.create: ${JSON.stringify(key)}`);
const pat = await gl.requester.post("users/" + alice.id + "/personal_access_tokens", { body: { name: "js", scopes: ["api"] } });
const aliceToken = pat.body.token;
check(typeof aliceToken === "string" && aliceToken.length > 10, "personal access token");
const gpg = await gl.UserGPGKeys.create(gpgKey, { userId: alice.id });
check(gpg.key.startsWith("-----BEGIN PGP PUBLIC KEY BLOCK-----"), "UserGPGKeys.create");
check((await gl.UserGPGKeys.all({ userId: alice.id })).length === 1, "UserGPGKeys.all");
await gl.UserGPGKeys.remove(gpg.id, { userId: alice.id });
check((await gl.UserGPGKeys.all({ userId: alice.id })).length === 0, "UserGPGKeys.remove");
const eng = await gl.Groups.create("Eng", "eng");
const sub = await gl.Groups.create("Backend", "backend", { parentId: eng.id });
await gl.GroupMembers.add(eng.id, alice.id, 40);
const topLevel = await gl.Groups.all({ topLevelOnly: true, pagination: "offset" });
check(topLevel.length === 1 && topLevel[0].full_path === "eng", `Groups.all({topLevelOnly}): ${topLevel.map((g) => g.full_path)}`);
const inherited = await gl.GroupMembers.all(sub.id, { includeInherited: true });
check(inherited.map((m) => m.username).sort().join(",") === "alice,root", `GroupMembers.all(includeInherited): ${inherited.map((m) => m.username)}`);
const direct = await gl.GroupMembers.all(sub.id);
check(direct.length === 0, `GroupMembers.all(direct): ${direct.map((m) => m.username)}`);
// Group SSH certificate authorities (no gitbeaker resource: its requester).
const ca = (await gl.requester.post(`groups/${eng.id}/ssh_certificates`, { body: { title: "team CA", key: keys[9] } })).body;
check(ca.title === "team CA", "ssh_certificates create");
const cas = (await gl.requester.get(`groups/${eng.id}/ssh_certificates`)).body;
check(cas.length === 1 && cas[0].id === ca.id, "ssh_certificates list");
await gl.requester.delete(`groups/${eng.id}/ssh_certificates/${ca.id}`);
check((await gl.requester.get(`groups/${eng.id}/ssh_certificates`)).body.length === 0, "ssh_certificates delete");
const desc = await gl.Groups.allDescendantGroups(eng.id, {});
check(desc.map((g) => g.full_path).join(",") === "eng/backend", "allDescendantGroups");
const proj = await gl.Projects.create({ name: "tools", namespaceId: sub.id });
check(proj.default_branch === "main", "project default_branch");
await gl.Projects.create({ name: "site", namespaceId: eng.id });
await rejects(gl.Users.show(999999), 404, "missing user");

const gitbeakerChecks = checks;

// octokit (GitHub v3) as alice.
const gh = new Octokit({ baseUrl: url + "/api/v3", auth: aliceToken });
const me = await gh.rest.users.getAuthenticated();
check(me.data.login === "alice", "users.getAuthenticated");
check(String(me.headers["x-oauth-scopes"]).includes("admin:public_key"), "X-OAuth-Scopes");
for (let i = 1; i <= 5; i++) await gh.rest.users.createPublicSshKeyForAuthenticatedUser({ title: `k${i}`, key: keys[i] });
const paged = await gh.paginate(gh.rest.users.listPublicSshKeysForAuthenticatedUser, { per_page: 2 });
check(paged.length === 5 && paged.every((k) => k.url.startsWith(url + "/api/v3/user/keys/")), `paginate user keys: ${paged.length}`);
const one = await gh.rest.users.getPublicSshKeyForAuthenticatedUser({ key_id: paged[0].id });
check(one.data.title === "k1", "getPublicSshKeyForAuthenticatedUser");
await gh.rest.users.deletePublicSshKeyForAuthenticatedUser({ key_id: paged[0].id });
await rejects(gh.rest.users.getPublicSshKeyForAuthenticatedUser({ key_id: paged[0].id }), 404, "deleted key", "Not Found");
const pub = await gh.paginate(gh.rest.users.listPublicKeysForUser, { username: "alice", per_page: 2 });
check(pub.length === 4, `listPublicKeysForUser: ${pub.length}`);
const sk = await gh.rest.users.createSshSigningKeyForAuthenticatedUser({ title: "sign", key: keys[6] });
const sks = await gh.paginate(gh.rest.users.listSshSigningKeysForAuthenticatedUser, { per_page: 1 });
check(sks.length === 2 && sks.some((k) => k.id === sk.data.id), `signing keys: ${sks.length}`); // keys[0] is signing too
const gotSk = await gh.rest.users.getSshSigningKeyForAuthenticatedUser({ ssh_signing_key_id: sk.data.id });
check(gotSk.data.title === "sign", "getSshSigningKeyForAuthenticatedUser");
const pubSk = await gh.paginate(gh.rest.users.listSshSigningKeysForUser, { username: "alice", per_page: 1 });
check(pubSk.length === 2, `listSshSigningKeysForUser: ${pubSk.length}`);
await gh.rest.users.deleteSshSigningKeyForAuthenticatedUser({ ssh_signing_key_id: sk.data.id });
await rejects(gh.rest.users.getSshSigningKeyForAuthenticatedUser({ ssh_signing_key_id: sk.data.id }), 404, "deleted signing key", "Not Found");
const dk = await gh.rest.repos.createDeployKey({ owner: "eng", repo: "site", title: "ci", key: keys[7], read_only: true });
check(dk.data.read_only === true, "createDeployKey");
const dks = await gh.paginate(gh.rest.repos.listDeployKeys, { owner: "eng", repo: "site" });
check(dks.length === 1, `listDeployKeys: ${dks.length}`);
await gh.rest.repos.deleteDeployKey({ owner: "eng", repo: "site", key_id: dk.data.id });
await rejects(new Octokit({ baseUrl: url + "/api/v3", auth: "kgpat-wrong" }).rest.users.getAuthenticated(), 401, "bad token", "Bad credentials");
const ro = (await gl.requester.post("users/" + alice.id + "/personal_access_tokens", { body: { name: "ro", scopes: ["read_api"] } })).body.token;
await rejects(new Octokit({ baseUrl: url + "/api/v3", auth: ro }).rest.users.createPublicSshKeyForAuthenticatedUser({ title: "x", key: keys[8] }), 403, "read_api write", "read_api");
console.log(`gitbeaker: ${gitbeakerChecks} checks passed; octokit: ${checks - gitbeakerChecks} checks passed`);
