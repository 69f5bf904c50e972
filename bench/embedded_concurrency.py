"""How should concurrent requests share the embedded llama.cpp model on a small CPU?

Compares, on the same 8 concurrent requests:
  queue   one model, one worker thread, requests served in order (what EmbeddedBackend does)
  split   two models, each with its own worker thread and half the cores
  naive   two models, each with its own worker thread and all the cores (threads oversubscribed)

    python bench/embedded_concurrency.py [--requests 8] [--tokens 48]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from specguard.backends.embedded import EmbeddedBackend, _LoadedModel
from specguard.types import GenerationParams, user


async def run(backends: list[EmbeddedBackend], n: int, tokens: int) -> tuple[float, float, float]:
    params = GenerationParams(max_tokens=tokens)
    latencies: list[float] = []

    async def one(i: int):
        t = time.perf_counter()
        out = await backends[i % len(backends)].complete([user(f"Write a short note about topic {i}.")], params)
        latencies.append(time.perf_counter() - t)
        return out.usage.completion_tokens

    for b in backends:  # warm up
        await b.complete([user("hi")], GenerationParams(max_tokens=2))
    start = time.perf_counter()
    toks = sum(await asyncio.gather(*(one(i) for i in range(n))))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return toks / elapsed, latencies[len(latencies) // 2], latencies[-1]


def fresh(n_threads: int) -> EmbeddedBackend:
    b = EmbeddedBackend(n_threads=n_threads)
    # a distinct model instance per backend (the shared cache would hand back the same one)
    b._model = _LoadedModel(b.model_path, 4096, n_threads)
    return b


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=48)
    args = ap.parse_args()
    cores = os.cpu_count() or 2
    variants = {
        "queue": lambda: [fresh(cores)],
        "split": lambda: [fresh(max(1, cores // 2)), fresh(max(1, cores // 2))],
        "naive": lambda: [fresh(cores), fresh(cores)],
    }
    results = {}
    for name, make in variants.items():
        backends = make()
        results[name] = asyncio.run(run(backends, args.requests, args.tokens))
        for b in backends:
            b._model.executor.shutdown()
        del backends
    base = results["queue"][0]
    print(f"{args.requests} concurrent requests x {args.tokens} tokens, {cores} cores")
    print(f"{'variant':>8} {'tok/s':>8} {'vs queue':>9} {'p50 s':>7} {'max s':>7}")
    for name, (tps, p50, worst) in results.items():
        print(f"{name:>8} {tps:>8.1f} {tps / base:>8.2f}x {p50:>7.2f} {worst:>7.2f}")


if __name__ == "__main__":
    main()
