"""The admin API on a real uvicorn on loopback: auth (401/403), CRUD with 404/409/422, keys shown
once and usable at once, guidelines derived, edited and approved, every change audited. The key
here is an operator's (it works across tenants); tests/reliability/test_tenancy.py has what a
tenant's admin may and may not do.

The model is the project's ScriptedBackend (a deterministic dummy LM shipped in
specguard.backends): these tests are about the admin routes, not about what a model says."""

from __future__ import annotations

import httpx
import pytest

from specguard.backends.scripted import ScriptedBackend
from specguard.core import Runtime
from specguard.policy import Policy, hash_key
from specguard.server import ServerSettings, create_app
from specguard.store import Store

from _loopback import serve

ADMIN, USER = "sg-admin-test", "sg-user-test"
LIST = "- drinking alcohol such as beer, wine or tequila\n- taking acetaminophen in large doses\n"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    policy = Policy.from_dict({
        "tenants": {"default": {}, "acme": {}},
        "api_keys": [
            {"name": "root", "sha256": hash_key(ADMIN), "tenant": "default", "operator": True},
            {"name": "plain", "sha256": hash_key(USER), "tenant": "default"},
        ],
    })
    store = Store(str(tmp_path_factory.mktemp("admin") / "specguard.db"))
    runtime = Runtime(ScriptedBackend([LIST]), policy=policy, store=store)
    with serve(create_app(runtime, ServerSettings())) as url:
        yield url


@pytest.fixture
def admin(base):
    with httpx.Client(base_url=base + "/admin", headers={"authorization": f"Bearer {ADMIN}"}) as c:
        yield c


def test_admin_routes_need_an_admin_key(base):
    assert httpx.get(base + "/admin/users").status_code == 401
    assert httpx.get(base + "/admin/users", headers={"authorization": "Bearer nope"}).status_code == 401
    r = httpx.get(base + "/admin/users", headers={"authorization": f"Bearer {USER}"})
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"


def test_profile_user_key_lifecycle_and_errors(admin, base):
    r = admin.post("/profiles", json={"id": "hep", "text": "I have hepatitis.",
                                      "attributes": {"health_conditions": ["hepatitis"]}})
    assert r.status_code == 201, r.text
    assert r.json()["origin"] == "store"
    assert admin.post("/profiles", json={"id": "hep", "text": "again"}).status_code == 409
    assert admin.post("/profiles", json={"id": "x", "text": "t", "colour": "red"}).status_code == 422
    assert admin.post("/profiles", json={"id": "x", "text": "t",
                                         "attributes": {"age_band": "ancient"}}).status_code == 422
    assert admin.get("/profiles/ghost").status_code == 404

    assert admin.post("/users", json={"id": "alice", "tenant": "acme", "profile": "hep"}).status_code == 201
    assert admin.post("/users", json={"id": "bob", "tenant": "nowhere"}).status_code == 422
    assert admin.patch("/users/ghost", json={"tenant": "acme"}).status_code == 404
    assert admin.delete("/profiles/hep").status_code == 409  # alice uses it

    r = admin.post("/api-keys", json={"name": "alice-key", "user": "alice"})
    assert r.status_code == 201
    key = r.json()["key"]
    assert key.startswith("sg-") and r.json()["tenant"] == "acme"
    listed = admin.get("/api-keys").json()
    assert listed["object"] == "list" and listed["data"]
    assert all("key" not in k for k in listed["data"])  # never shown again
    assert admin.post("/api-keys", json={"name": "alice-key", "user": "alice"}).status_code == 409

    # The new key works at once on the chat API, as alice.
    models = httpx.get(base + "/v1/models", headers={"authorization": f"Bearer {key}"})
    assert models.status_code == 200
    explained = admin.get("/users/alice/policy").json()
    assert explained["profile"] == "hep" and explained["tenant"] == "acme"

    assert admin.delete("/users/alice").status_code == 204
    assert httpx.get(base + "/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 401
    assert admin.delete("/users/alice").status_code == 404
    assert admin.delete("/profiles/hep").status_code == 204


def test_guidelines_are_derived_as_drafts_edited_and_approved(admin):
    assert admin.post("/profiles", json={"id": "preg", "text": "I am pregnant."}).status_code == 201
    r = admin.post("/profiles/preg/guidelines/derive")
    assert r.status_code == 201, r.text
    derived = r.json()
    assert derived["status"] == "draft" and derived["version"] == 1
    assert derived["items"] == ["drinking alcohol such as beer, wine or tequila",
                                "taking acetaminophen in large doses"]
    assert derived["source"] == "model:scripted"
    r = admin.post("/profiles/preg/guidelines", json={"items": ["drinking alcohol (beer, wine, spirits)"]})
    assert r.status_code == 201 and r.json()["version"] == 2 and r.json()["source"] == "admin"
    assert admin.post("/profiles/preg/guidelines", json={"items": [""]}).status_code == 422
    assert admin.post("/profiles/preg/guidelines/9/approve").status_code == 404
    r = admin.post("/profiles/preg/guidelines/2/approve")
    assert r.status_code == 200 and r.json()["status"] == "approved"
    assert r.json()["approved_by"] == "key:root"
    statuses = [g["status"] for g in admin.get("/profiles/preg/guidelines").json()]
    assert statuses == ["draft", "approved"]
    assert admin.post("/profiles/ghost/guidelines/derive").status_code == 404


def test_every_change_is_in_the_audit_log_with_who_and_when(admin):
    admin.post("/profiles", json={"id": "audited", "text": "I have asthma."})
    admin.patch("/profiles/audited", json={"text": "I have severe asthma."})
    log = admin.get("/audit", params={"limit": 2}).json()
    assert [(e["actor"], e["action"], e["target"]) for e in log] == [
        ("key:root", "profile.update", "profile:audited"),
        ("key:root", "profile.create", "profile:audited"),
    ]
    assert all(e["at"] for e in log)
