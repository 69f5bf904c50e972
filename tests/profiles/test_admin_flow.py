"""The admin's whole path for a profile's guidelines, through the real server: the profile picks
library attributes, gets the library's guidelines as a draft, the admin edits the draft (drops
one, adds their own) and approves the edit, and exactly the approved list is enforced; every
match names its guideline in the report and in the refusal. A capable model in the `guidelines`
role still derives a list, on the server and in the CLI.

Real parts: the guarded server on loopback (uvicorn) driven by httpx and the official openai
client, a real SQLite store, the shipped profile check and fast tier. Stand-ins: the serving
model is the project's ScriptedBackend, and the capable `guidelines` model is a small
OpenAI-compatible HTTP server on loopback (a hosted model cannot run here)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from typer.testing import CliRunner

from specguard.backends.scripted import ScriptedBackend
from specguard.cli import app as cli_app
from specguard.core import Runtime
from specguard.errors import ConfigError
from specguard.policy import Policy, hash_key
from specguard.profiles import ProfileMatch, load_library
from specguard.server import ServerSettings, create_app
from specguard.store import Store

from _loopback import serve

ADMIN = "sg-admin-flow"
PROFILE = "I'm seven months pregnant with my first child."
OWN = "Cleaning a cat's litter box or gardening without gloves"
HOSTED_ITEMS = ["Drinking alcohol", "Hot tubs and saunas", "Changing cat litter"]


def hosted_guidelines_model(seen: list[dict]) -> FastAPI:
    """A hosted capable model's OpenAI endpoint: it answers the derivation in the JSON schema."""
    api = FastAPI()

    @api.post("/v1/chat/completions")
    async def complete(request: Request):
        body = await request.json()
        seen.append({"auth": request.headers.get("authorization"), "model": body["model"],
                     "schema": body.get("response_format", {}).get("type"),
                     "prompt": body["messages"][-1]["content"]})
        text = json.dumps({"activities": HOSTED_ITEMS})
        return {"id": "g1", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}}

    return api


def _policy(guidelines_role) -> Policy:
    return Policy.from_dict({
        # Only the approved list decides here (the library route reads the profile text and
        # would refuse some of these requests by itself: tests/profiles/test_check.py).
        "defaults": {"on_violation": "refuse", "critique": "off",
                     "profile_check": {"library": False}},
        "roles": {"guard": "off", "guidelines": guidelines_role},
        "api_keys": [{"name": "root", "sha256": hash_key(ADMIN), "tenant": "default",
                      "operator": True}],
    })


def _ask(client: openai.OpenAI, text: str):
    resp = client.chat.completions.create(model="specguard",
                                          messages=[{"role": "user", "content": text}])
    return resp.choices[0].message.content, resp.model_extra["specguard"]


def _profile_verdict(report: dict) -> dict:
    return next(v for v in report["verdicts"] if v["checker"] == "profile_guidelines")


def test_attributes_draft_edit_approve_and_exactly_the_approved_list_is_enforced(tmp_path, monkeypatch):
    seen: list[dict] = []
    monkeypatch.setenv("GUIDELINES_KEY", "sk-guide-1")
    lib = load_library()
    draft_items = lib.draft(["pregnancy"])
    dropped = next(g for g in draft_items if g.startswith("Hot tubs"))
    store = Store(str(tmp_path / "s.db"))
    with serve(hosted_guidelines_model(seen), ready_path="/docs") as hosted:
        role = {"model": "openai:capable-guidelines", "api_base": hosted + "/v1",
                "api_key_env": "GUIDELINES_KEY", "timeout_s": 10, "retries": 0}
        runtime = Runtime(ScriptedBackend(["Sure, here is how."] * 20), policy=_policy(role),
                          store=store)
        with serve(create_app(runtime, ServerSettings())) as base, httpx.Client(
                base_url=base + "/admin", headers={"authorization": f"Bearer {ADMIN}"}) as admin:
            # The profile picks a library attribute; the user and key are bound server-side.
            r = admin.post("/profiles", json={"id": "mum", "text": PROFILE,
                                              "attributes": {"library_attributes": ["pregnancy"]}})
            assert r.status_code == 201, r.text
            assert admin.post("/users", json={"id": "mia", "tenant": "default",
                                              "profile": "mum"}).status_code == 201
            key = admin.post("/api-keys", json={"name": "mia-key", "user": "mia"}).json()["key"]
            client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=60)

            # The draft is the library's guidelines for the picked attribute, and unused until approved.
            r = admin.post("/profiles/mum/guidelines/library", json={})
            assert r.status_code == 201, r.text
            draft = r.json()
            assert draft["source"] == "library:pregnancy" and draft["status"] == "draft"
            assert draft["items"] == draft_items
            answer, report = _ask(client, "Which red wine should I open tonight?")
            assert report["action"] == "allowed"

            # The admin edits the draft (one guideline dropped, one of their own added), approves it.
            edited = [g for g in draft_items if g != dropped] + [OWN]
            r = admin.post("/profiles/mum/guidelines", json={"items": edited})
            assert r.status_code == 201 and r.json()["source"] == "admin"
            version = r.json()["version"]
            assert version == draft["version"] + 1
            r = admin.post(f"/profiles/mum/guidelines/{version}/approve")
            assert r.status_code == 200 and r.json()["status"] == "approved"
            history = admin.get("/profiles/mum/guidelines").json()
            assert {h["version"]: h["status"] for h in history}[draft["version"]] == "draft"

            # A kept library guideline: refused; the report and the refusal name it, the
            # refusal gives its reason and safe alternative.
            answer, report = _ask(client, "Which red wine should I open tonight?")
            assert report["action"] == "refused" and report["profile"] == "mum"
            verdict = _profile_verdict(report)
            match = ProfileMatch.model_validate_json(verdict["raw"])
            assert match.guideline == "Drinking alcohol in any amount"
            assert match.guideline in verdict["explanation"] and verdict["label"] == "unsafe"
            found = lib.guideline(match.guideline)[1]
            assert match.guideline in answer and found.why in answer and found.alternative in answer
            assert PROFILE in answer

            # The admin's own guideline: matched by meaning ("litter box" vs "cat's litter"), named.
            answer, report = _ask(client, "What's the quickest way to clean my cat's litter box?")
            assert report["action"] == "refused"
            assert ProfileMatch.model_validate_json(_profile_verdict(report)["raw"]).guideline == OWN
            assert OWN in answer

            # The dropped guideline no longer applies; an unrelated request is answered.
            for text in ("Find me a hot yoga class near me.", "How do I repot an orchid?"):
                answer, report = _ask(client, text)
                assert report["action"] == "allowed", (text, report["verdicts"])
                assert _profile_verdict(report)["label"] == "safe"
                assert answer == "Sure, here is how."

            # A capable model in the guidelines role still derives a list (a new draft).
            r = admin.post("/profiles/mum/guidelines/derive")
            assert r.status_code == 201, r.text
            derived = r.json()
            assert derived["source"] == "model:openai:capable-guidelines", derived["source"]
            assert derived["items"] == HOSTED_ITEMS and derived["status"] == "draft"
    store.close()
    assert [s["model"] for s in seen] == ["capable-guidelines"]
    assert seen[0]["auth"] == "Bearer sk-guide-1" and seen[0]["schema"] == "json_schema"
    assert PROFILE in seen[0]["prompt"]


def test_with_the_guidelines_role_off_derive_says_to_use_the_library(tmp_path):
    store = Store(str(tmp_path / "s.db"))
    runtime = Runtime(ScriptedBackend(["x"]), policy=_policy("off"), store=store)
    with serve(create_app(runtime, ServerSettings())) as base, httpx.Client(
            base_url=base + "/admin", headers={"authorization": f"Bearer {ADMIN}"}) as admin:
        assert admin.post("/profiles", json={"id": "mum", "text": PROFILE}).status_code == 201
        r = admin.post("/profiles/mum/guidelines/derive")
        assert r.status_code == 400
        err = r.json()["error"]
        assert "guidelines role is off" in err["message"]
        assert "/guidelines/library" in json.dumps(err)
        # The library path still works without any model.
        assert admin.post("/profiles/mum/guidelines/library", json={}).status_code == 201
    store.close()


def test_the_cli_derives_with_the_policy_file_s_guidelines_role(tmp_path, monkeypatch):
    seen: list[dict] = []
    monkeypatch.setenv("GUIDELINES_KEY", "sk-guide-2")
    store = str(tmp_path / "s.db")
    run = CliRunner().invoke
    with serve(hosted_guidelines_model(seen), ready_path="/docs") as hosted:
        policy = tmp_path / "p.yaml"
        policy.write_text(
            f'profiles:\n  mum: {{text: "{PROFILE}"}}\n'
            "roles:\n  guidelines: {model: 'openai:capable-guidelines', "
            f"api_base: '{hosted}/v1', api_key_env: GUIDELINES_KEY, retries: 0}}\n")
        base = ["admin", "--policy", str(policy), "--store", store]
        out = run(cli_app, [*base, "guidelines", "derive", "mum"])
        assert out.exit_code == 0, out.output
        assert '"source": "model:openai:capable-guidelines"' in out.output
        assert "Changing cat litter" in out.output
        off = run(cli_app, [*base, "guidelines", "derive", "mum", "--role", "guidelines=off"])
    assert off.exit_code != 0 and isinstance(off.exception, ConfigError)
    assert "guidelines role is off (--role)" in str(off.exception)
    assert len(seen) == 1 and seen[0]["auth"] == "Bearer sk-guide-2"


@pytest.fixture(autouse=True)
def _quiet_litellm(monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
