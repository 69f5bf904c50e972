"""A detoxified stream on the embedded model: the policy asks for Goodtriever decoding, tokens
stream as generated (out of the real server), the report names the datastores, and a flag
after the stream is reported as what happened."""

from __future__ import annotations

import asyncio

import openai
import pytest

pytest.importorskip("faiss")
pytest.importorskip("torch")

from _loopback import serve  # noqa: E402

from specguard.core import Runtime  # noqa: E402
from specguard.decoding import Datastore, EmbeddedKeyEncoder  # noqa: E402
from specguard.guard import CheckRequest, Label, Stage, Tier, TieredGuard, Verdict  # noqa: E402
from specguard.policy import Policy, hash_key  # noqa: E402
from specguard.server import create_app  # noqa: E402
from specguard.report import Action  # noqa: E402
from specguard.store import Store  # noqa: E402
from specguard.types import user  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.slow]
KEY = "k-detox"


@pytest.fixture(scope="module")
def stores(tmp_path_factory, embedded_backend):
    encoder = EmbeddedKeyEncoder(embedded_backend)
    root = tmp_path_factory.mktemp("detox")
    paths = {}
    for label, texts in {"toxic": ["You are a stupid worthless idiot and I hate you."],
                         "nontoxic": ["Thank you so much, you have been very kind and helpful."]}.items():
        encoded = asyncio.run(encoder.encode(texts))
        store = Datastore.create(root / label, encoder.key_space(), label=label)
        for i, (keys, nxt) in enumerate(encoded):
            store.add(f"{label}-{i}", keys, nxt)
        store.save()
        paths[label] = str(root / label)
    return paths


def test_detox_policy_streams_tokens_and_reports_the_decoding(embedded_backend, stores):
    policy = Policy.from_dict({
        "defaults": {"stream_protection": "detox", "max_tokens": 16, "critique": "off",
                     "detox": {"toxic": [stores["toxic"]], "nontoxic": [stores["nontoxic"]],
                               "alpha": 2.0, "k": 8}},
        "api_keys": [{"name": "t", "sha256": hash_key(KEY), "tenant": "default"}],
    })
    rt = Runtime(embedded_backend, policy=policy, store=Store(":memory:"))
    with serve(create_app(rt)) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0, timeout=300)
        chunks = list(client.chat.completions.create(
            model="specguard", stream=True, messages=[{"role": "user", "content": "Tell me about your day."}]))
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][0]
    report = final.model_extra["specguard"]
    if report["action"] == "refused":
        pytest.skip("the input check refused this prompt; nothing was decoded")
    assert len(texts) > 1  # token by token, not one buffered piece
    assert report["stream_protection"] == "detox"
    decoding = report["decoding"]
    assert decoding["method"] == "goodtriever" and decoding["alpha"] == 2.0 and decoding["k"] == 8
    assert decoding["toxic_datastores"] and decoding["nontoxic_datastores"]


class FlagsEveryAnswer:
    """A guard tier that finds every answer unsafe and every request safe (a stand-in for a
    trained guard, so the post-stream check is sure to flag)."""

    tier = Tier.FAST
    name = "flags-answers"

    async def check(self, request: CheckRequest) -> Verdict:
        label = Label.UNSAFE if request.stage is Stage.OUTPUT else Label.SAFE
        return Verdict(stage=request.stage, label=label, tier=self.tier, checker=self.name)


async def test_detox_flag_after_the_stream_is_reported_as_what_happened(embedded_backend, stores):
    policy = Policy.from_dict({"defaults": {
        "stream_protection": "detox", "max_tokens": 12, "critique": "off",
        "detox": {"toxic": [stores["toxic"]], "nontoxic": [stores["nontoxic"]], "k": 8}}})
    rt = Runtime(embedded_backend, policy=policy, store=Store(":memory:"),
                 guard=TieredGuard(fast=FlagsEveryAnswer()))
    events = [e async for e in rt.stream([user("Tell me about your day.")])]
    texts = [e.text for e in events if e.text]
    final = events[-1]
    report = final.report
    # every token went out as generated; then the check flagged, and the refusal followed it
    assert len(texts) > 2
    refusal = policy.resolve("default").settings.refusal_message
    streamed = "".join(texts)
    assert streamed.endswith("\n\n" + refusal) and len(streamed) > len(refusal) + 2
    assert report.action is Action.REFUSED and report.flagged_after_release
    assert final.finish_reason == "content_filter"
    assert any("already received" in n for n in report.notes)
    assert report.decoding["method"] == "goodtriever"
