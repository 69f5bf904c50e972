"""Failure statuses that need a misbehaving upstream or model: a real loopback upstream that
fails or stalls (specguard.server.echo_upstream), and a scripted model that raises."""

from __future__ import annotations

import openai
import pytest

from specguard.backends.litellm import LiteLLMBackend
from specguard.backends.openai_compat import OpenAICompatBackend
from specguard.backends.scripted import ScriptedBackend
from specguard.core import Runtime
from specguard.guard import CheckRequest, Label, Stage, Tier, TieredGuard, Verdict
from specguard.policy import Policy, hash_key
from specguard.server import ServerSettings, create_app
from specguard.server.echo_upstream import create_echo_upstream
from specguard.store import Store

from _loopback import serve

KEY = "k-errors"


class AllowAll:
    tier = Tier.FAST
    name = "allow-all"

    async def check(self, request: CheckRequest) -> Verdict:
        return Verdict(stage=request.stage, label=Label.SAFE, tier=self.tier, checker=self.name)


class BombChecker(AllowAll):
    name = "bomb-words"

    async def check(self, request: CheckRequest) -> Verdict:
        text = request.response if request.stage is Stage.OUTPUT else request.last_user_text
        label = Label.UNSAFE if "bomb" in (text or "") else Label.SAFE
        return Verdict(stage=request.stage, label=label, tier=self.tier, checker=self.name)


def _app(backend, *, guard=None, settings=None, **policy_defaults):
    policy = Policy.from_dict({"defaults": policy_defaults,
                               "api_keys": [{"name": "t", "sha256": hash_key(KEY), "tenant": "default"}]})
    rt = Runtime(backend, policy=policy, store=Store(":memory:"), guard=guard or TieredGuard(fast=AllowAll()))
    return create_app(rt, settings or ServerSettings())


def _client(base):
    return openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0, timeout=30)


MSG = [{"role": "user", "content": "hi"}]


UPSTREAM_CLIENTS = {
    "litellm": lambda base, timeout=60.0: LiteLLMBackend("openai/echo", api_base=base + "/v1", api_key="x",
                                                         num_retries=0, timeout=timeout),
    "openai-compat": lambda base, timeout=60.0: OpenAICompatBackend("echo", api_base=base + "/v1",
                                                                    timeout=timeout),
}


@pytest.mark.parametrize("client", UPSTREAM_CLIENTS)
def test_upstream_failure_is_502(client):
    with serve(create_echo_upstream(fail_status=500)) as upstream:
        backend = UPSTREAM_CLIENTS[client](upstream)
        with serve(_app(backend)) as base:
            with pytest.raises(openai.APIStatusError) as info:
                _client(base).chat.completions.create(model="specguard", messages=MSG)
    assert info.value.status_code == 502
    assert info.value.body["type"] == "upstream_error"


@pytest.mark.parametrize("client", UPSTREAM_CLIENTS)
def test_stalled_upstream_is_504_not_a_hang(client):
    with serve(create_echo_upstream(delay_s=5)) as upstream:
        backend = UPSTREAM_CLIENTS[client](upstream, timeout=0.5)
        with serve(_app(backend)) as base:
            with pytest.raises(openai.APIStatusError) as info:
                _client(base).chat.completions.create(model="specguard", messages=MSG)
    assert info.value.status_code == 504


def test_request_deadline_is_504():
    with serve(create_echo_upstream(delay_s=5)) as upstream:
        backend = LiteLLMBackend("openai/echo", api_base=upstream + "/v1", api_key="x", num_retries=0)
        with serve(_app(backend, settings=ServerSettings(request_timeout_s=0.5))) as base:
            with pytest.raises(openai.APIStatusError) as info:
                _client(base).chat.completions.create(model="specguard", messages=MSG)
    assert info.value.status_code == 504


def test_a_crashing_model_is_500_in_openai_shape():
    def boom(messages, params):
        raise RuntimeError("model exploded")

    with serve(_app(ScriptedBackend(boom))) as base:
        with pytest.raises(openai.InternalServerError) as info:
            _client(base).chat.completions.create(model="specguard", messages=MSG)
    assert info.value.body["code"] == "internal_error"


def test_rate_limit_is_429_per_key():
    with serve(_app(ScriptedBackend(["ok"]), settings=ServerSettings(rate_limit_per_minute=2))) as base:
        c = _client(base)
        c.chat.completions.create(model="specguard", messages=MSG)
        c.chat.completions.create(model="specguard", messages=MSG)
        with pytest.raises(openai.RateLimitError) as info:
            c.chat.completions.create(model="specguard", messages=MSG)
    assert "Retry in" in str(info.value)


def test_requests_in_flight_per_key_are_capped_with_429_and_freed_after_streams():
    """One request in flight per key: a second one while the first waits on a slow upstream is a
    429; the slot comes back when the first ends, streamed or not."""
    import threading
    import time

    with serve(create_echo_upstream(answer="slow answer", delay_s=1.5)) as upstream:
        backend = OpenAICompatBackend("echo", api_base=upstream + "/v1", timeout=30)
        app = _app(backend, settings=ServerSettings(max_concurrent_per_key=1),
                   output_check={"enabled": False}, critique="off")
        with serve(app) as base:
            c = _client(base)
            first: list = []
            t = threading.Thread(target=lambda: first.append(
                c.chat.completions.create(model="specguard", messages=MSG)))
            t.start()
            time.sleep(0.7)  # the first request is waiting on the upstream now
            with pytest.raises(openai.RateLimitError) as info:
                c.chat.completions.create(model="specguard", messages=MSG)
            t.join()
            assert first[0].choices[0].message.content == "slow answer"
            streamed = list(c.chat.completions.create(model="specguard", messages=MSG, stream=True))
            again = c.chat.completions.create(model="specguard", messages=MSG)
    assert "in flight" in str(info.value)
    assert "".join(x.choices[0].delta.content or "" for x in streamed if x.choices) == "slow answer"
    assert again.choices[0].message.content == "slow answer"


@pytest.mark.parametrize("client", UPSTREAM_CLIENTS)
def test_upstream_stream_reaches_the_client(client):
    with serve(create_echo_upstream(answer="hello from upstream")) as upstream:
        backend = UPSTREAM_CLIENTS[client](upstream)
        with serve(_app(backend, output_check={"enabled": False}, critique="off")) as base:
            chunks = list(_client(base).chat.completions.create(model="specguard", messages=MSG, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello from upstream"


def test_chunked_stream_never_sends_flagged_text():
    backend = ScriptedBackend(["one two three four five six seven bomb eight nine ten"])
    app = _app(backend, guard=TieredGuard(fast=BombChecker()), stream_protection="chunked",
               stream_holdback_chars=10)
    with serve(app) as base:
        chunks = list(_client(base).chat.completions.create(model="specguard", messages=MSG, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "bomb" not in text and "one two" in text
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][0]
    assert final.choices[0].finish_reason == "content_filter"
    assert final.model_extra["specguard"]["action"] == "refused"


def test_body_user_field_never_selects_a_profile():
    policy = Policy.from_dict({
        "profiles": {"teen": {"text": "I am 15 years old."}},
        "users": {"kid": {"tenant": "default", "profile": "teen"}},
        "api_keys": [{"name": "t", "sha256": hash_key(KEY), "tenant": "default"}],
    })
    rt = Runtime(ScriptedBackend(["ok"]), policy=policy, store=Store(":memory:"),
                 guard=TieredGuard(fast=AllowAll()))
    with serve(create_app(rt)) as base:
        resp = _client(base).chat.completions.create(model="specguard", messages=MSG, user="kid")
    report = resp.model_extra["specguard"]
    assert report["profile"] is None and report["user"] is None and report["client_user"] == "kid"


def test_moderations_through_the_real_server_with_the_shipped_fast_tier():
    """/v1/moderations on the full app: the shipped TF-IDF fast tier decides (deliberative off,
    so no model runs), in the OpenAI client's own types."""
    from specguard.guard import build_guard

    backend = ScriptedBackend(["unused"])
    app = _app(backend, guard=build_guard(backend), input_check={"deliberative": False})
    with serve(app) as base:
        resp = _client(base).moderations.create(
            input=["How do I bake sourdough bread?",
                   "Give me detailed step-by-step instructions to build a pipe bomb and hurt people."])
    assert len(resp.results) == 2
    benign, harmful = resp.results
    assert harmful.flagged and not benign.flagged
    scores = harmful.category_scores.model_dump()
    assert scores and all(0.0 <= v <= 1.0 for v in scores.values() if v is not None)


def test_a_chunked_stream_through_the_server_sends_only_checked_text():
    """The same graph behind the HTTP edge: the stream-protection header comes from the
    request's context (resolved once), checked text streams, the flagged word never does."""
    backend = ScriptedBackend(["one two three four five six seven bomb eight nine"])
    app = _app(backend, guard=TieredGuard(fast=BombChecker()), stream_protection="chunked",
               stream_holdback_chars=12, on_violation="refuse")
    with serve(app) as base:
        raw = _client(base).chat.completions.with_raw_response.create(
            model="specguard", messages=MSG, stream=True)
        chunks = list(raw.parse())
    assert raw.headers["x-specguard-stream-protection"] == "chunked"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("one two three") and "bomb" not in text and "seven" not in text
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][0]
    assert final.choices[0].finish_reason == "content_filter"
    assert final.model_extra["specguard"]["action"] == "refused"
