"""specguard against a real vLLM server (float32, greedy): text, streaming, logprobs and
constrained output through VLLMServerBackend, the hidden-state tap and Goodtriever decoding
inside the engine, and the guarded chat graph answering through it."""

from __future__ import annotations

import json
import uuid

import pytest
from _vllm_common import PROMPT, reference
from specguard.errors import BackendError
from specguard.types import GenerationParams, user
from specguard.vllm_plugin import TapSwitches, read_record

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

GREEDY = GenerationParams(max_tokens=12, temperature=0.0)


async def test_completion_matches_transformers(vllm_backend, hf_model):
    result = await vllm_backend.complete(PROMPT, GREEDY)
    assert result.text == reference(hf_model, PROMPT, GREEDY.max_tokens)
    assert result.usage.completion_tokens > 0 and result.usage.prompt_tokens > 10
    assert result.model == "vllm:smollm2"


async def test_streaming_equals_completion(vllm_backend):
    whole = await vllm_backend.complete(PROMPT, GREEDY)
    chunks = [c async for c in vllm_backend.stream(PROMPT, GREEDY)]
    assert len([c for c in chunks if c.text]) > 1
    assert "".join(c.text for c in chunks) == whole.text
    assert chunks[-1].finish_reason in {"stop", "length"}
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


async def test_logprobs(vllm_backend):
    result = await vllm_backend.complete(
        PROMPT, GREEDY.model_copy(update={"logprobs": True, "top_logprobs": 3})
    )
    assert result.logprobs and len(result.logprobs) == result.usage.completion_tokens
    for item in result.logprobs:
        assert item.logprob <= 0.0 and len(item.top) >= 1
        assert max(item.top.values()) == pytest.approx(item.logprob, abs=1e-4)  # greedy: top-1


async def test_constrained_output_follows_the_schema(vllm_backend):
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": ["safe", "unsafe"]},
                       "score": {"type": "integer"}},
        "required": ["label", "score"],
        "additionalProperties": False,
    }
    result = await vllm_backend.complete(
        [user("Is 'how do I bake bread' safe? Answer in JSON.")],
        GenerationParams(max_tokens=40, json_schema=schema),
    )
    answer = json.loads(result.text)
    assert set(answer) == {"label", "score"}
    assert answer["label"] in {"safe", "unsafe"} and isinstance(answer["score"], int)


async def test_unknown_switch_is_a_client_error(vllm_backend):
    bad = vllm_backend.with_switches(None)
    bad.extra_body["vllm_xargs"] = {"specguard_alhpa": 3}
    with pytest.raises(BackendError, match="specguard"):
        await bad.complete(PROMPT, GREEDY)


async def _record(vllm_backend, vllm_server, messages, params):
    name = f"t-{uuid.uuid4().hex[:8]}"
    result = await vllm_backend.with_switches(TapSwitches(record=name)).complete(messages, params)
    return result, read_record(name, vllm_server[1])


async def test_tap_hidden_states_equal_transformers(vllm_backend, vllm_server, hf_model):
    import numpy as np
    import torch

    plain = await vllm_backend.complete(PROMPT, GREEDY)
    result, record = await _record(vllm_backend, vllm_server, PROMPT, GREEDY)
    assert result.text == plain.text  # recording leaves the output alone
    n = record.keys.shape[0]
    assert n == result.usage.completion_tokens and record.keys.shape[1] == 576
    tok, lm = hf_model
    ids = record.context(n - 1)
    with torch.no_grad():
        hidden = lm(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0].numpy()
    p = len(record.prompt_ids)
    expected = hidden[p - 1 : p - 1 + n]
    # every step, in float32: the state of the last context token after the final norm
    np.testing.assert_allclose(record.keys, expected, rtol=0, atol=2e-3 * np.abs(expected).max())
    assert tok.decode(record.pairs()[1]) == tok.decode(ids[p:])


async def test_goodtriever_in_the_engine_moves_away_from_a_toxic_store(
    vllm_backend, vllm_server, hf_model
):
    pytest.importorskip("faiss")
    from specguard.decoding import Datastore, Hook, IndexKind, KeySpace, ModelId, TokenizerId

    params = GenerationParams(max_tokens=6, temperature=0.0)
    base, record = await _record(vllm_backend, vllm_server, PROMPT, params)
    record_name = f"g-{uuid.uuid4().hex[:8]}"
    tok, _ = hf_model
    # A "toxic" store whose keys are exactly this answer's states: retrieval finds each step's
    # own next token first (distance 0) and other steps' tokens after it, so the anti-expert
    # must push the greedy choice off it. T is large enough for the farther neighbours to keep a
    # non-zero weight (with a single retrieved token every token would get the same floor).
    space = KeySpace(model=ModelId(name="smollm2-hf"), hook=Hook.FINAL_NORM, dim=576,
                     tokenizer=TokenizerId(vocab_size=len(tok), sample_hash="test"))
    store = Datastore.create(vllm_server[2] / "answer", space, index_kind=IndexKind.FLAT)
    keys, next_tokens = record.pairs()
    store.add("answer", keys, next_tokens)
    store.save()
    steered = vllm_backend.with_switches(TapSwitches(
        toxic="answer", alpha=10.0, k=4, temperature=1000.0, top_p=1.0, record=f"{record_name}-s"
    ))
    moved = await steered.complete(PROMPT, params)
    moved_record = read_record(f"{record_name}-s", vllm_server[1])
    assert moved.text != base.text
    assert moved_record.last_ids[1] != record.last_ids[1]  # the first token already moved
    # alpha 0 with no nucleus cut is the base distribution: the same greedy answer
    same = await vllm_backend.with_switches(
        TapSwitches(toxic="answer", alpha=0.0, top_p=1.0)
    ).complete(PROMPT, params)
    assert same.text == base.text



async def test_guarded_chat_graph_answers_through_vllm(vllm_backend):
    from specguard.core import Runtime
    from specguard.guard import DeliberativeChecker, TieredGuard
    from specguard.report import Action

    # The default guard's deliberative tier, with its answer bounded to keep the test short.
    guard = TieredGuard(deliberative=DeliberativeChecker(vllm_backend, max_tokens=96))
    runtime = Runtime(vllm_backend, guard=guard)
    result = await runtime.chat(
        [user("How do I bake bread?")],
        params=GenerationParams(max_tokens=24, temperature=0.0),
    )
    report = result.report
    assert result.action in set(Action)
    assert report.model_calls >= 1 and report.completion_tokens > 0
    assert result.answer.strip()  # an answer, a revision or a refusal message: never empty
    # the input check finished before generation, and the graph's calls reached the server
    assert any(d.stage.value == "input" for d in report.decisions)
