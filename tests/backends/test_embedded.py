from __future__ import annotations

import asyncio
import json
import time

import pytest

from specguard.types import GenerationParams, user

pytestmark = pytest.mark.model


async def test_complete_is_greedy_and_reproducible(embedded_backend):
    params = GenerationParams(max_tokens=12)
    a = await embedded_backend.complete([user("Name three fruits.")], params)
    b = await embedded_backend.complete([user("Name three fruits.")], params)
    assert a.text and a.text == b.text
    assert a.usage.prompt_tokens > 5 and 0 < a.usage.completion_tokens <= 12
    assert "<|im_end|>" not in a.text


async def test_stream_yields_the_same_text_as_complete(embedded_backend):
    params = GenerationParams(max_tokens=12)
    full = await embedded_backend.complete([user("Say hello to Ana.")], params)
    chunks = [c async for c in embedded_backend.stream([user("Say hello to Ana.")], params)]
    assert "".join(c.text for c in chunks) == full.text
    assert chunks[-1].finish_reason in {"stop", "length"}
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens


async def test_json_schema_constrains_the_output(embedded_backend):
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": ["safe", "unsafe"]}},
              "required": ["label"]}
    out = await embedded_backend.complete([user("Is baking bread safe?")],
                                          GenerationParams(max_tokens=20, json_schema=schema))
    assert json.loads(out.text)["label"] in {"safe", "unsafe"}


async def test_logprobs_cover_each_token_with_alternatives(embedded_backend):
    out = await embedded_backend.complete([user("Say yes.")],
                                          GenerationParams(max_tokens=4, logprobs=True, top_logprobs=3))
    assert out.logprobs and len(out.logprobs) == out.usage.completion_tokens
    first = out.logprobs[0]
    assert first.logprob <= 0 and len(first.top) == 3
    assert max(first.top.values()) >= first.logprob - 1e-6  # greedy picks the top token


async def test_concurrent_requests_are_served_and_the_loop_stays_free(embedded_backend):
    params = GenerationParams(max_tokens=16)
    ticks = 0
    done = asyncio.Event()

    async def ticker():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    t = asyncio.create_task(ticker())
    start = time.perf_counter()
    outs = await asyncio.gather(*(embedded_backend.complete([user(f"Count to {i}.")], params) for i in range(3, 7)))
    elapsed = time.perf_counter() - start
    done.set()
    await t
    assert all(o.text for o in outs)
    # the loop kept ticking while llama.cpp worked on its own thread
    assert ticks >= 0.5 * elapsed / 0.01


async def test_hidden_states_have_the_model_width(embedded_backend):
    hs = await embedded_backend.hidden_states(["hello", "how are you"], chat=True)
    assert len(hs) == 2 and len(hs[0]) == len(hs[1]) == 576
    assert hs[0] != hs[1]


def test_missing_model_file_says_what_to_do(tmp_path):
    from specguard.backends.embedded import EmbeddedBackend
    from specguard.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        EmbeddedBackend(tmp_path / "missing.gguf")
