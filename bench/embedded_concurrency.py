"""How should concurrent requests share the embedded llama.cpp model on a small CPU?

Compares, on the same 8 concurrent requests:
  queue   one model with all the cores, one worker thread, requests served in order
  split   one single-thread model per core, each request to the least busy one
          (what EmbeddedBackend does by default)
  naive   one model per core, each with all the cores (threads oversubscribed)

    python bench/embedded_concurrency.py [--requests 8] [--tokens 48]   # docs/results/
    python bench/embedded_concurrency.py --smoke --out /tmp/x.json          # CI: tiny

Writes docs/results/embedded_concurrency.json (tables in docs/results/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from specguard.backends.embedded import EmbeddedBackend
from specguard.evals.results import Readme, Result, Table, command_line, write_result
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
    ap.add_argument("--out", default=None, help="summary path (default docs/results/)")
    ap.add_argument("--smoke", action="store_true", help="2 requests x 4 tokens, for CI")
    args = ap.parse_args()
    if args.smoke:
        args.requests, args.tokens = 2, 4
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
    split = results["split"][0] / base
    table = Table(
        id="variants", title=f"{args.requests} concurrent requests x {args.tokens} tokens, "
        f"{cores} cores", columns=["variant", "workers x threads", "tokens/s", "vs queue",
                                   "p50 s", "max s"],
        rows=[[name, f"{variants[name]['workers']} x {variants[name]['n_threads']}",
               round(tps, 1), f"{tps / base:.2f}x", round(p50, 2), round(worst, 2)]
              for name, (tps, p50, worst) in results.items()],
        note="queue: one model with all cores serving requests in turn (the baseline); split: "
             "one single-thread model per core (EmbeddedBackend's default); naive: one model "
             "per core, each with all cores.")
    path = write_result(Result(
        name="embedded_concurrency", title="Embedded model under concurrency",
        script="bench/embedded_concurrency.py", command=command_line(), smoke=args.smoke,
        readme=Readme(what="embedded model under concurrency",
                      where="docs/results/performance.md",
                      headline=f"a single-thread worker per core: {split:.2f}x the tokens/s of "
                               f"one {cores}-thread model at {args.requests} concurrent "
                               "requests"),
        tables=[table], data={"results": {k: list(v) for k, v in results.items()},
                              "requests": args.requests, "tokens": args.tokens}), args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
