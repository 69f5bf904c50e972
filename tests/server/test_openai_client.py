"""The official openai client against a real uvicorn on loopback serving the real embedded
model through the guarded runtime."""

from __future__ import annotations

import httpx
import openai
import pytest

from specguard.core import Runtime
from specguard.policy import Policy, hash_key
from specguard.server import ServerSettings, create_app
from specguard.store import Store

from _loopback import serve

pytestmark = pytest.mark.model

KEY = "sg-test-key"


@pytest.fixture(scope="module")
def base_url(embedded_backend, tmp_path_factory):
    policy = Policy.from_dict({
        "defaults": {"max_tokens": 24},
        "tenants": {"default": {}},
        "api_keys": [{"name": "tests", "sha256": hash_key(KEY), "tenant": "default"}],
    })
    store = Store(str(tmp_path_factory.mktemp("store") / "specguard.db"))
    runtime = Runtime(embedded_backend, policy=policy, store=store)
    with serve(create_app(runtime, ServerSettings()), ready_path="/readyz") as base:
        yield base + "/v1"


@pytest.fixture
def client(base_url):
    return openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=300)


def _check_report(report: dict):
    assert report["request_id"].startswith("sg-")
    assert report["action"] in {"allowed", "revised", "refused"}
    assert report["specs"][0]["name"] == "general" and report["specs"][0]["version"] >= 1
    assert report["decisions"] and report["decisions"][0]["stage"] == "input"
    assert report["checks_run"]
    assert report["steps"] and all(s["ms"] >= 0 for s in report["steps"])
    assert report["total_ms"] > 0
    assert isinstance(report["model_calls"], int)


def test_chat_completion_carries_the_safety_report_in_body_and_headers(client):
    raw = client.chat.completions.with_raw_response.create(
        model="specguard", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=16
    )
    resp = raw.parse()
    assert resp.object == "chat.completion"
    assert isinstance(resp.choices[0].message.content, str) and resp.choices[0].message.content
    report = resp.model_extra["specguard"]
    _check_report(report)
    assert raw.headers["x-specguard-request-id"] == report["request_id"] == resp.id
    assert raw.headers["x-specguard-action"] == report["action"]
    assert raw.headers["x-specguard-specs"].startswith("general@global#v")
    assert raw.headers["x-specguard-input-verdict"] in {"safe", "unsafe"}
    assert int(raw.headers["x-specguard-model-calls"]) == report["model_calls"]
    assert resp.usage.total_tokens == report["prompt_tokens"] + report["completion_tokens"]


def test_streaming_sends_text_then_the_report_and_usage(client):
    stream = client.chat.completions.create(
        model="specguard", messages=[{"role": "user", "content": "Say hello."}], max_tokens=16,
        stream=True, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1
    _check_report(final[0].model_extra["specguard"])
    assert final[0].model_extra["specguard"]["stream_protection"] == "buffer"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert chunks[0].choices[0].delta.role == "assistant"


def test_models_lists_the_alias_and_the_backend(client):
    ids = [m.id for m in client.models.list().data]
    assert "specguard" in ids and any(i.startswith("embedded:") for i in ids)


def test_wrong_or_missing_key_is_401(base_url):
    bad = openai.OpenAI(base_url=base_url, api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="specguard", messages=[{"role": "user", "content": "hi"}])
    r = httpx.post(base_url + "/chat/completions", json={"model": "specguard", "messages": []})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert r.headers["www-authenticate"] == "Bearer"


def test_unknown_model_is_404_and_names_the_models(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert "specguard" in str(info.value)


def test_bad_bodies_are_422_or_400_with_the_field(base_url, client):
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.chat.completions.create(model="specguard", temperature=7,
                                       messages=[{"role": "user", "content": "hi"}])
    assert "temperature" in str(info.value)
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="specguard", n=3, messages=[{"role": "user", "content": "hi"}])
    r = httpx.post(base_url + "/chat/completions", content=b"{not json",
                   headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(base_url + "/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                   json={"model": "specguard", "messages": [{"role": "assistant", "content": "x"}]})
    assert r.status_code == 400 and "user" in r.json()["error"]["message"]


def test_oversized_body_is_413(base_url):
    big = "x" * 1_100_000
    r = httpx.post(base_url + "/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                   json={"model": "specguard", "messages": [{"role": "user", "content": big}]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_health_and_readiness(base_url):
    root = base_url.removesuffix("/v1")
    assert httpx.get(root + "/healthz").json() == {"status": "ok"}
    assert httpx.get(root + "/readyz").json()["status"] == "ready"
