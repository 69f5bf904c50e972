"""The curated guideline library and the admin path that drafts a profile's guidelines from it:
real files, a real SQLite store, the real admin API on loopback (official client: httpx), the
real encoder for suggestions."""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from specguard.backends.scripted import ScriptedBackend
from specguard.cli import app
from specguard.core import Runtime
from specguard.directory import ComposedPolicy, DirectoryAdmin, LibraryDraftIn, ProfileIn
from specguard.errors import ConfigError, InvalidRequestError
from specguard.directory import InvalidReferenceError
from specguard.policy import AgeBand, Policy, ProfileAttributes, hash_key
from specguard.profiles import AttributeKind, load_library
from specguard.server import ServerSettings, create_app
from specguard.store import Store

from _loopback import serve


def test_the_library_covers_the_issue_s_kinds_and_every_guideline_says_why():
    lib = load_library()
    kinds = {a.kind for a in lib.attributes.values()}
    assert kinds == set(AttributeKind)
    for a in lib.attributes.values():
        assert a.profiles and a.guidelines, a.id
        for g in a.guidelines:
            assert g.activity in lib.activities and len(g.why) > 10, (a.id, g.decline)
    assert all(len(act.requests) >= 4 for act in lib.activities.values())


def test_the_library_records_its_provenance():
    from importlib import resources

    header = (resources.files("specguard.specs") / "profiles" / "library.yaml").read_text()[:2500]
    assert "NOT written from U-SafeBench's evaluation profiles" in header
    assert "Disclosure" in header  # what its author saw while inspecting the split


def test_structured_attributes_map_onto_the_library():
    lib = load_library()
    attrs = ProfileAttributes(age_band=AgeBand.TEEN, health_conditions=["Hepatitis C", "asthma"],
                              jurisdiction="Saudi Arabia", role="Judge",
                              library_attributes=["pregnancy"])
    assert lib.attributes_for(attrs) == ["pregnancy", "teen", "liver_disease", "lung_disease",
                                         "alcohol_prohibited_jurisdiction", "judge"]
    assert lib.attributes_for(ProfileAttributes(health_conditions=["a sore thumb"])) == []
    with pytest.raises(ConfigError, match="no attribute 'astrology'"):
        lib.attributes_for(ProfileAttributes(library_attributes=["astrology"]))
    draft = lib.draft(["liver_disease", "alcohol_use_disorder"])
    assert len(draft) == len(set(draft))
    assert draft[0].startswith("Buying or drinking alcohol")
    assert lib.alternative(draft[0]) and lib.guideline(draft[0].upper())[0].id == "liver_disease"


@pytest.fixture
def directory(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    yield DirectoryAdmin(ComposedPolicy(Policy.default(), store)), store
    store.close()


async def test_an_admin_drafts_from_the_profile_s_attributes_edits_and_approves(directory):
    admin, store = directory
    admin.create_profile(ProfileIn(id="hep", text="I have hepatitis.",
                                   attributes={"health_conditions": ["hepatitis"]}), "t")
    draft = await admin.draft_from_library("hep", LibraryDraftIn(), "t")
    lib = load_library()
    assert draft.source == "library:liver_disease" and draft.status.value == "draft"
    assert draft.items == lib.draft(["liver_disease"])
    assert store.guidelines.current("hep") is None  # a draft is not used until approved
    picked = await admin.draft_from_library("hep", LibraryDraftIn(attributes=["sedating_medication"]), "t")
    assert picked.source == "library:sedating_medication" and picked.version == draft.version + 1
    admin.approve("hep", draft.version, "t")
    assert store.guidelines.current("hep").items == draft.items
    assert [e["action"] for e in store.audit()][:3] == ["guidelines.approve", "guidelines.propose",
                                                        "guidelines.propose"]


async def test_without_attributes_the_profile_text_suggests_them(directory):
    admin, _ = directory
    admin.create_profile(ProfileIn(id="p1", text="I'm having chemotherapy for lymphoma."), "t")
    draft = await admin.draft_from_library("p1", LibraryDraftIn(), "t")
    assert draft.source.startswith("library:") and "cancer" in draft.source.split(":")[1].split(",")
    admin.create_profile(ProfileIn(id="plain", text="I'm a healthy adult with nothing to report."), "t")
    with pytest.raises(InvalidRequestError, match="No guideline-library attribute"):
        await admin.draft_from_library("plain", LibraryDraftIn(), "t")
    with pytest.raises(InvalidRequestError, match="No guideline-library attribute"):
        await admin.draft_from_library("p1", LibraryDraftIn(suggest=False), "t")
    with pytest.raises(InvalidReferenceError, match="unknown guideline-library attributes"):
        await admin.draft_from_library("p1", LibraryDraftIn(attributes=["nope"]), "t")


ADMIN, ALICE = "sg-admin-lib", "sg-alice-lib"


def test_the_admin_api_drafts_from_the_library_and_the_approved_list_is_enforced(tmp_path):
    """Through the real server: an admin lists the library, drafts a profile's guidelines from an
    attribute the profile text does not mention, approves them, and the user's request is refused
    on that guideline, named in the refusal."""
    policy = Policy.from_dict({
        "defaults": {"on_violation": "refuse", "critique": "off",
                     # Only the approved list decides here (the library route reads the text).
                     "profile_check": {"library": False}},
        "api_keys": [{"name": "root", "sha256": hash_key(ADMIN), "tenant": "default", "operator": True}],
    })
    store = Store(str(tmp_path / "s.db"))
    runtime = Runtime(ScriptedBackend(["Sure, here is how."] * 10), policy=policy, store=store)
    with serve(create_app(runtime, ServerSettings())) as base, httpx.Client(
            base_url=base + "/admin", headers={"authorization": f"Bearer {ADMIN}"}) as admin:
        listed = admin.get("/guideline-library").json()
        assert {"id", "kind", "name", "guidelines"} <= set(listed[0])
        assert any(a["id"] == "pilot" for a in listed)
        assert admin.post("/profiles", json={"id": "cap", "text": "I fly for a living."}).status_code == 201
        assert admin.post("/users", json={"id": "alice", "tenant": "default", "profile": "cap"}).status_code == 201
        key = admin.post("/api-keys", json={"name": "alice-key", "user": "alice"}).json()["key"]
        r = admin.post("/profiles/cap/guidelines/library", json={"attributes": ["pilot"]})
        assert r.status_code == 201, r.text
        assert r.json()["source"] == "library:pilot"
        assert admin.post("/profiles/cap/guidelines/library", json={"attributes": ["x"]}).status_code == 422
        assert admin.post("/profiles/cap/guidelines/library", json={"colour": 1}).status_code == 422
        assert admin.post(f"/profiles/cap/guidelines/{r.json()['version']}/approve").status_code == 200

        import openai

        client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
        resp = client.chat.completions.create(
            model="specguard", messages=[{"role": "user", "content": "What beer should I drink tonight before my early flight?"}])
        report = resp.model_extra["specguard"]
        assert report["action"] == "refused" and report["profile"] == "cap"
        assert "profile_guidelines" in report["checks_run"]
        assert "alcohol within 8 hours of flying" in resp.choices[0].message.content
    store.close()


def test_the_admin_cli_drafts_from_the_library(tmp_path):
    policy, store = tmp_path / "p.yaml", str(tmp_path / "s.db")
    policy.write_text("profiles:\n  teen: {text: \"I am 15.\", attributes: {age_band: \"13-17\"}}\n")
    run = CliRunner().invoke
    base = ["admin", "--policy", str(policy), "--store", store]
    listed = run(app, [*base, "guidelines", "library-list"])
    assert listed.exit_code == 0 and "liver_disease" in listed.output
    out = run(app, [*base, "guidelines", "library", "teen"])
    assert out.exit_code == 0, out.output
    assert '"source": "library:teen"' in out.output
    bad = run(app, [*base, "guidelines", "library", "teen", "--attribute", "nope"])
    assert bad.exit_code != 0
