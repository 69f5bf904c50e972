"""How should concurrent requests share the embedded llama.cpp model on a small CPU?

Compares, on the same 8 concurrent requests:
  queue   one model with all the cores, one worker thread, requests served in order
  split   one single-thread model per core, each request to the least busy one
          (what EmbeddedBackend does by default)
  naive   one model per core, each with all the cores (threads oversubscribed)

    python bench/embedded_concurrency.py [--requests 8] [--tokens 48]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from specguard.backends.embedded import EmbeddedBackend
from specguard.types import GenerationParams, user


async def run(backend: EmbeddedBackend, n: int, tokens: int) -> tuple[float, float, float]:
    params = GenerationParams(max_tokens=tokens)
    latencies: list[float] = []

    async def one(i: int):
        t = time.perf_counter()
        out = await backend.complete([user(f"Write a short note about topic {i}.")], params)
        latencies.append(time.perf_counter() - t)
        return out.usage.completion_tokens

    for m in backend.pool:  # load and warm up every worker
        m.busy = -1  # route the next request here
        await backend.complete([user("hi")], GenerationParams(max_tokens=2))
        m.busy = 0
    start = time.perf_counter()
    toks = sum(await asyncio.gather(*(one(i) for i in range(n))))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return toks / elapsed, latencies[len(latencies) // 2], latencies[-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=48)
    args = ap.parse_args()
    cores = os.cpu_count() or 2
    variants = {
        "queue": dict(workers=1, n_threads=cores),
        "split": dict(workers=cores, n_threads=1),
        "naive": dict(workers=cores, n_threads=cores),
    }
    results = {}
    for name, options in variants.items():
        results[name] = asyncio.run(run(EmbeddedBackend(**options), args.requests, args.tokens))
    base = results["queue"][0]
    print(f"{args.requests} concurrent requests x {args.tokens} tokens, {cores} cores")
    print(f"{'variant':>8} {'tok/s':>8} {'vs queue':>9} {'p50 s':>7} {'max s':>7}")
    for name, (tps, p50, worst) in results.items():
        print(f"{name:>8} {tps:>8.1f} {tps / base:>8.2f}x {p50:>7.2f} {worst:>7.2f}")


if __name__ == "__main__":
    main()
