"""Fast-tier latency per prompt: the shipped artifact one prompt at a time vs batched, and the
cost a hidden-state probe would add (the embedded model's final hidden states, one text per
llama.cpp decode vs many sequences per decode). Ratios are against the single-prompt TF-IDF
path measured in the same run.

    python bench/guard_latency.py [--n 64] [--threads 2]

Other processes may load the CPU while this runs; compare numbers within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from specguard.guard import CheckRequest, Stage, load_fast_checker
from specguard.guard.corpus import input_examples
from specguard.types import user


async def _timed(fn, *a, **kw) -> float:
    t = time.perf_counter()
    await fn(*a, **kw)
    return (time.perf_counter() - t) * 1000


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-hidden", action="store_true")
    args = ap.parse_args()
    texts = [e.text for e in input_examples() if e.split == "test"][: args.n]
    reqs = [CheckRequest(stage=Stage.INPUT, messages=[user(t)]) for t in texts]
    fast = load_fast_checker()
    await fast.check(reqs[0])  # warm up
    single = statistics.median([await _timed(fast.check, r) for r in reqs])
    batched = await _timed(fast.check_many, reqs) / len(reqs)
    rows = [("fast tier (shipped TF-IDF), one prompt per call, median", single),
            (f"fast tier (shipped TF-IDF), {len(reqs)} prompts per call", batched)]
    if not args.no_hidden:
        from specguard.backends.embedded import EmbeddedBackend
        from specguard.guard._hidden import pooled_hidden_states

        backend = EmbeddedBackend(n_threads=args.threads)
        await backend.load()
        await backend.hidden_states(texts[:2], chat=True)  # load the embedding context
        one = statistics.median([
            await _timed(backend.hidden_states, [t], chat=True) for t in texts[:16]])
        pooled_one = statistics.median([
            await _timed(pooled_hidden_states, backend, [t], chat=True) for t in texts[:16]])
        pooled_many = await _timed(pooled_hidden_states, backend, texts, chat=True) / len(texts)
        rows += [
            ("hidden states, EmbeddedBackend.hidden_states, one text per call, median", one),
            ("hidden states, pooled (empty system turn), one text per call, median", pooled_one),
            (f"hidden states, pooled, {len(texts)} texts per decode batch", pooled_many),
        ]
    print(f"{os.cpu_count()} CPUs visible; load average {os.getloadavg()[0]:.1f}")
    print(f"{'path':78s} {'ms/prompt':>10s} {'x baseline':>10s}")
    for name, ms in rows:
        print(f"{name:78s} {ms:10.2f} {ms / single:10.2f}")


if __name__ == "__main__":
    asyncio.run(main())
