"""The cross-tenant admin matrix through a real server on loopback: an admin key of tenant acme
reads only acme (404 for globex's entries), changes nothing of globex's or shared (403), mints
no key with more rights than its own, and cannot switch off another tenant's checks; an
operator key does all of it. The issue's exploit, step by step, fails."""

from __future__ import annotations

import httpx
import pytest

from specguard.backends.scripted import ScriptedBackend
from specguard.core import Runtime
from specguard.guard import TieredGuard
from specguard.guard.deliberative import DeliberativeChecker
from specguard.policy import Policy, hash_key
from specguard.server import create_app
from specguard.store import Store

from _loopback import serve

KEYS = {"acme": "sg-acme-admin", "globex": "sg-globex-admin", "op": "sg-operator",
        "plain": "sg-acme-plain"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    policy = Policy.from_dict({
        "tenants": {"default": {}, "acme": {}, "globex": {}},
        "profiles": {"teen": {"text": "I am 15 years old."}},  # shared by every tenant
        "api_keys": [
            {"name": "acme-admin", "sha256": hash_key(KEYS["acme"]), "tenant": "acme", "admin": True},
            {"name": "globex-admin", "sha256": hash_key(KEYS["globex"]), "tenant": "globex", "admin": True},
            {"name": "operator", "sha256": hash_key(KEYS["op"]), "tenant": "default", "operator": True},
            {"name": "acme-plain", "sha256": hash_key(KEYS["plain"]), "tenant": "acme"},
        ],
    })
    backend = ScriptedBackend(["- drinking alcohol\n"])  # a deterministic model: the routes are tested
    runtime = Runtime(backend, policy=policy, store=Store(str(tmp_path_factory.mktemp("t") / "t.db")),
                      guard=TieredGuard(deliberative=DeliberativeChecker(backend)))
    with serve(create_app(runtime)) as url:
        op = _client(url, "op")
        for body in ({"id": "acme-p", "text": "I have asthma.", "tenant": "acme"},
                     {"id": "globex-p", "text": "I am pregnant.", "tenant": "globex"}):
            assert op.post("/admin/profiles", json=body).status_code == 201
        for body in ({"id": "a1", "tenant": "acme", "profile": "acme-p"},
                     {"id": "g1", "tenant": "globex", "profile": "globex-p"}):
            assert op.post("/admin/users", json=body).status_code == 201
        assert op.post("/admin/api-keys", json={"name": "g1-key", "user": "g1"}).status_code == 201
        assert op.post("/admin/api-keys", json={"name": "acme-op", "tenant": "acme",
                                                "operator": True}).status_code == 201
        assert op.post("/admin/profiles/globex-p/guidelines",
                       json={"items": ["drinking alcohol"]}).status_code == 201
        yield url


def _client(url: str, who: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"authorization": f"Bearer {KEYS[who]}"}, timeout=30)


# (what, method, path, body, status for acme's admin)
MATRIX = [
    ("read another tenant's user", "GET", "/admin/users/g1", None, 404),
    ("switch off another tenant's checks", "PATCH", "/admin/users/g1",
     {"settings": {"input_check": {"enabled": False}, "output_check": {"enabled": False}}}, 403),
    ("move another tenant's user", "PATCH", "/admin/users/g1", {"tenant": "acme"}, 403),
    ("delete another tenant's user", "DELETE", "/admin/users/g1", None, 403),
    ("create a user in another tenant", "POST", "/admin/users", {"id": "x1", "tenant": "globex"}, 403),
    ("bind another tenant's profile", "POST", "/admin/users", {"id": "x2", "profile": "globex-p"}, 422),
    ("read another tenant's profile", "GET", "/admin/profiles/globex-p", None, 404),
    ("edit another tenant's profile", "PATCH", "/admin/profiles/globex-p", {"text": "changed"}, 403),
    ("edit a shared profile", "PATCH", "/admin/profiles/teen", {"text": "changed"}, 403),
    ("delete another tenant's profile", "DELETE", "/admin/profiles/globex-p", None, 403),
    ("create a profile for another tenant", "POST", "/admin/profiles",
     {"id": "gx", "text": "t", "tenant": "globex"}, 403),
    ("read another tenant's guidelines", "GET", "/admin/profiles/globex-p/guidelines", None, 404),
    ("write another tenant's guidelines", "POST", "/admin/profiles/globex-p/guidelines",
     {"items": ["nothing"]}, 403),
    ("approve another tenant's guidelines", "POST", "/admin/profiles/globex-p/guidelines/1/approve",
     None, 403),
    ("write a shared profile's guidelines", "POST", "/admin/profiles/teen/guidelines",
     {"items": ["nothing"]}, 403),
    ("mint an admin gateway key for another tenant", "POST", "/admin/api-keys",
     {"name": "k1", "tenant": "globex", "admin": True, "trusted_gateway": True}, 403),
    ("mint a key for another tenant's user", "POST", "/admin/api-keys", {"name": "k2", "user": "g1"}, 422),
    ("mint an operator key", "POST", "/admin/api-keys", {"name": "k3", "operator": True}, 403),
    ("delete another tenant's key", "DELETE", "/admin/api-keys/g1-key", None, 403),
    ("delete an operator's key in its own tenant", "DELETE", "/admin/api-keys/acme-op", None, 403),
    ("write another tenant's spec", "POST", "/admin/specs/general",
     {"scope": "tenant:globex", "text": "Anything goes.", "activate": True}, 403),
    ("write the global spec", "POST", "/admin/specs/general",
     {"scope": "global", "text": "Anything goes.", "activate": True}, 403),
    ("read another tenant's spec history", "GET", "/admin/specs/general?scope=tenant:globex", None, 404),
    # what acme's admin may do in acme
    ("create a user in its tenant", "POST", "/admin/users", {"id": "a2"}, 201),
    ("bind a shared profile", "POST", "/admin/users", {"id": "a3", "profile": "teen"}, 201),
    ("edit its own profile", "PATCH", "/admin/profiles/acme-p", {"text": "I have severe asthma."}, 200),
    ("mint an admin key in its tenant", "POST", "/admin/api-keys", {"name": "k4", "admin": True}, 201),
    ("mint a gateway key in its tenant", "POST", "/admin/api-keys",
     {"name": "k5", "trusted_gateway": True}, 201),
    ("write its tenant's spec", "POST", "/admin/specs/general",
     {"scope": "tenant:acme", "text": "Refuse weapon instructions.", "activate": True}, 201),
]


@pytest.mark.parametrize("what,method,path,body,status", MATRIX, ids=[m[0] for m in MATRIX])
def test_an_admin_acts_only_inside_its_tenant(base, what, method, path, body, status):
    with _client(base, "acme") as acme:
        r = acme.request(method, path, json=body)
    assert r.status_code == status, f"{what}: {r.status_code} {r.text}"
    if status >= 400:
        assert r.json()["error"]["type"] in ("permission_error", "not_found_error",
                                             "invalid_request_error")


def test_listings_and_the_audit_log_are_filtered_to_the_tenant(base):
    with _client(base, "acme") as acme:
        users = acme.get("/admin/users").json()["data"]
        profiles = acme.get("/admin/profiles").json()["data"]
        keys = acme.get("/admin/api-keys").json()["data"]
        audit = acme.get("/admin/audit", params={"limit": 1000}).json()
        specs = acme.get("/admin/specs").json()
    assert users and all(u["tenant"] == "acme" for u in users)
    assert {p["id"] for p in profiles} >= {"acme-p", "teen"} and "globex-p" not in {p["id"] for p in profiles}
    assert keys and all(k["tenant"] == "acme" for k in keys)
    assert audit and all(e["tenant"] == "acme" for e in audit)
    assert all(s["scope"] in ("global", "tenant:acme") for s in specs)
    with _client(base, "op") as op:
        everything = op.get("/admin/audit", params={"limit": 1000}).json()
        all_users = op.get("/admin/users").json()["data"]
    assert {e["tenant"] for e in everything} >= {"acme", "globex"}
    assert {u["tenant"] for u in all_users} >= {"acme", "globex"}


def test_the_exploit_of_the_issue_fails_and_the_operator_still_can(base):
    """acme's admin: mint an admin gateway key for globex, switch off globex's user's checks,
    delete globex's keys, read globex's audit log. None of it works; globex's user is as before."""
    with _client(base, "acme") as acme, _client(base, "op") as op, _client(base, "globex") as globex:
        before = op.get("/admin/users/g1").json()
        assert acme.post("/admin/api-keys", json={"name": "evil", "tenant": "globex", "admin": True,
                                                  "trusted_gateway": True}).status_code == 403
        assert acme.patch("/admin/users/g1", json={"settings": {"input_check": {"enabled": False}}}
                          ).status_code == 403
        assert acme.delete("/admin/api-keys/g1-key").status_code == 403
        assert all(e["tenant"] == "acme" for e in acme.get("/admin/audit").json())
        assert op.get("/admin/users/g1").json() == before
        # globex's own admin manages globex; the operator manages everyone.
        assert globex.patch("/admin/users/g1", json={"settings": {"max_tokens": 64}}).status_code == 200
        assert op.patch("/admin/users/a1", json={"settings": {"max_tokens": 32}}).status_code == 200
        assert op.post("/admin/profiles/teen/guidelines", json={"items": ["x"]}).status_code == 201


def test_a_minted_key_has_no_more_rights_than_its_maker(base):
    with _client(base, "acme") as acme:
        created = acme.post("/admin/api-keys", json={"name": "k6", "admin": True}).json()
    assert created["tenant"] == "acme" and created["admin"] and not created["operator"]
    minted = httpx.Client(base_url=base, headers={"authorization": f"Bearer {created['key']}"})
    with minted:
        assert minted.post("/admin/api-keys", json={"name": "k7", "operator": True}).status_code == 403
        assert minted.get("/admin/users/g1").status_code == 404
    with _client(base, "plain") as plain:
        assert plain.get("/admin/users").status_code == 403
