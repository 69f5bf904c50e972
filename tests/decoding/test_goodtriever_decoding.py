"""Goodtriever decoding on the real embedded model: the llama.cpp loop and DetoxBackend."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("faiss")
pytest.importorskip("torch")

from specguard.decoding import (
    Datastore,
    DatastoreMismatchError,
    EmbeddedKeyEncoder,
    ModelId,
)
from specguard.decoding.backend import DetoxBackend
from specguard.decoding.loop_llama import LlamaDetoxGenerator
from specguard.decoding.retrieval import DetoxSettings, Retriever
from specguard.types import GenerationParams, user

pytestmark = [pytest.mark.model, pytest.mark.slow]

PROMPT = "The old man looked at the sea and said"


@pytest.fixture(scope="module")
def answer_store(tmp_path_factory, embedded_backend):
    """A "toxic" store whose keys are the base model's own greedy answer to PROMPT: each step
    retrieves its own next token first, so Goodtriever must move the greedy choice."""
    gen = LlamaDetoxGenerator(embedded_backend, None, top_p=1.0)
    prompt = gen.tokenize(PROMPT)
    base = [t for _, t, _ in gen.generate(prompt, max_new_tokens=8, temperature=0.0)]
    encoder = EmbeddedKeyEncoder(embedded_backend)
    text = PROMPT + gen.detokenize(base).decode("utf-8", "replace")
    (keys, nxt), = asyncio.run(encoder.encode([text]))
    path = tmp_path_factory.mktemp("stores") / "answer"
    store = Datastore.create(path, encoder.key_space(), label="toxic")
    store.add("answer", keys, nxt)
    store.save()
    return path, prompt, base


def test_goodtriever_moves_greedy_decoding_off_the_toxic_continuation(
    embedded_backend, answer_store
):
    path, prompt, base = answer_store
    space = EmbeddedKeyEncoder(embedded_backend).key_space()

    def run(alpha: float, top_p: float = 1.0, penalize_only: bool = False) -> list[int]:
        settings = DetoxSettings(toxic=[path], alpha=alpha, k=8, temperature=1000.0, top_p=top_p,
                                 penalize_only=penalize_only)
        gen = LlamaDetoxGenerator(embedded_backend, Retriever.open(settings, space))
        return [t for _, t, _ in gen.generate(prompt, max_new_tokens=8, temperature=0.0)]

    assert run(alpha=0.0) == base  # alpha 0 without a nucleus cut is the base model
    moved = run(alpha=4.0)
    assert moved[0] != base[0]  # the stored next token was the most penalised one
    # the penalty-only shift reaches the loop too; with the toxic store alone it is the same
    # shift (the anti-expert only ever pushes down)
    assert run(alpha=4.0, penalize_only=True) == moved


def test_samples_are_seeded_and_reuse_the_prompt(embedded_backend):
    gen = LlamaDetoxGenerator(embedded_backend, None)
    prompt = gen.tokenize(PROMPT)
    a = list(gen.generate(prompt, max_new_tokens=5, temperature=1.0, seed=3, samples=2))
    b = list(gen.generate(prompt, max_new_tokens=5, temperature=1.0, seed=3, samples=2))
    assert a == b and {s for s, _, _ in a} == {0, 1}
    assert all(lp <= 0.0 for _, _, lp in a)
    # greedy samples after the first start again from the cached prompt: all identical
    g = list(gen.generate(prompt, max_new_tokens=6, temperature=0.0, samples=3))
    per_sample = [[t for s, t, _ in g if s == i] for i in range(3)]
    assert per_sample[0] == per_sample[1] == per_sample[2]


async def test_detox_backend_streams_and_reports(embedded_backend, answer_store):
    path, _, _ = answer_store
    settings = DetoxSettings(toxic=[path], alpha=2.0, k=8)
    backend = DetoxBackend(settings, embedded_backend)
    params = GenerationParams(max_tokens=12, temperature=0.0)
    messages = [user("Say something about the sea.")]
    chunks = [c async for c in backend.stream(messages, params)]
    assert len([c for c in chunks if c.text]) >= 2  # token by token, not one buffered answer
    assert chunks[-1].finish_reason in {"stop", "length"} and chunks[-1].usage.completion_tokens > 0
    done = await backend.complete(messages, params.model_copy(update={"logprobs": True}))
    assert done.text == "".join(c.text for c in chunks)
    assert len(done.logprobs) == done.usage.completion_tokens
    report = backend.describe()
    assert report["toxic_datastores"] == ["answer"] and report["alpha"] == 2.0
    assert report["k"] == 8 and report["toxic_keys"] > 0


async def test_detox_backend_refuses_a_store_of_another_model(tmp_path, embedded_backend):
    space = EmbeddedKeyEncoder(embedded_backend).key_space()
    other = space.model_copy(update={"model": ModelId(name="other-model", sha256="c" * 64)})
    Datastore.create(tmp_path / "foreign", other).save()
    backend = DetoxBackend(DetoxSettings(toxic=[tmp_path / "foreign"]), embedded_backend)
    with pytest.raises(DatastoreMismatchError, match="another model"):
        await backend.complete([user("hi")], GenerationParams(max_tokens=2))
