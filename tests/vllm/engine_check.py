"""Run by test_vllm_engine.py inside the vLLM venv (vllm cannot be imported in the main one):
drives VLLMEngineBackend through the Backend protocol and prints what it got as JSON."""

from __future__ import annotations

import asyncio
import json
import sys
import time


async def main(model: str) -> dict:
    from specguard.backends import load_backend
    from specguard.types import GenerationParams, user

    start = time.monotonic()
    backend = load_backend(
        f"vllm:engine:{model}", dtype="float32", enforce_eager=True, max_model_len=2048,
        max_num_seqs=16,
    )
    await backend.load()
    started = time.monotonic() - start
    greedy = GenerationParams(max_tokens=12, temperature=0.0)
    question = [user("Name the capital of France in one short sentence.")]
    try:
        one = await backend.complete(question, greedy)
        chunks = [c async for c in backend.stream(question, greedy)]
        batch = await backend.complete_batch(
            [question, [user("Say hello.")], [user("What is 2 + 2?")]], greedy
        )
        with_lp = await backend.complete(
            question, greedy.model_copy(update={"logprobs": True, "top_logprobs": 2})
        )
        text = "The capital of France is"
        hidden = await backend.hidden_states([text])
    finally:
        await backend.aclose()
    return {
        "start_s": started,
        "complete": one.model_dump(mode="json"),
        "stream_text": "".join(c.text for c in chunks),
        "stream_last": chunks[-1].model_dump(mode="json"),
        "batch": [c.text for c in batch],
        "logprobs": [lp.model_dump(mode="json") for lp in with_lp.logprobs or []],
        "hidden_text": text,
        "hidden": hidden[0],
    }


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1]))
    print("ENGINE_CHECK " + json.dumps(result))
