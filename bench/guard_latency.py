"""Fast-tier latency per prompt, one prompt per call vs a batch per call, for each shipped
artifact: the model-free TF-IDF classifier (`fast_tfidf`) and the embedded model's probe
(`fast_default`: TF-IDF fused with a hidden-state probe, one llama.cpp pass per batch). Ratios
are against the single-prompt TF-IDF path measured in the same run. The embedded backend is
built as a user gets it (a pool of single-thread workers).

    python bench/guard_latency.py [--n 64]

Other processes may load the CPU while this runs; compare numbers within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from specguard.guard import CheckRequest, Stage, load_fast_checker
from specguard.guard.corpus import input_examples, output_examples
from specguard.types import user


async def _timed(fn, *a, **kw) -> float:
    t = time.perf_counter()
    await fn(*a, **kw)
    return (time.perf_counter() - t) * 1000


async def measure(checker, reqs) -> tuple[float, float, float]:
    """(median and mean ms of one prompt per call, mean ms per prompt of one batched call)."""
    await checker.check(reqs[0])  # warm up (loads the embedding context for a probe)
    times = [await _timed(checker.check, r) for r in reqs]
    batched = await _timed(checker.check_many, reqs) / len(reqs)
    return statistics.median(times), statistics.mean(times), batched


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--artifacts", nargs="+", default=["fast_tfidf", "fast_default"])
    ap.add_argument("--deliberative", type=int, default=8,
                    help="prompts for the deliberative tier's rows (label only vs with critique)")
    args = ap.parse_args()
    texts = [e.text for e in input_examples() if e.split == "test"][:: 7][: args.n]
    reqs = [CheckRequest(stage=Stage.INPUT, messages=[user(t)]) for t in texts]
    # Output checks read prompt + answer: held-out pairs, split back into their two parts.
    pairs = [e.text for e in output_examples() if e.split == "test"][:: 5][: args.n]
    out_reqs = []
    for p in pairs:
        prompt, _, answer = p.removeprefix("User: ").partition("\nAssistant: ")
        out_reqs.append(CheckRequest(stage=Stage.OUTPUT, messages=[user(prompt)], response=answer))
    backend = None
    rows = []
    for name in args.artifacts:
        checker = load_fast_checker(None, name) if name == "fast_tfidf" else None
        if checker is None:
            if backend is None:
                from specguard.backends.embedded import EmbeddedBackend

                backend = EmbeddedBackend()
                await backend.load()
            checker = load_fast_checker(backend, name)
        label = checker.artifact.record.get("label", name)
        for stage, rs in (("input check", reqs), ("output check (prompt + answer)", out_reqs)):
            median, mean, batched = await measure(checker, rs)
            rows += [(f"{name} ({label}), {stage}, one per call, median", median),
                     (f"{name}, {stage}, one per call, mean", mean),
                     (f"{name}, {stage}, {len(rs)} per call, mean", batched)]
    if args.deliberative:
        from specguard.guard import DeliberativeChecker

        if backend is None:
            from specguard.backends.embedded import EmbeddedBackend

            backend = EmbeddedBackend()
            await backend.load()
        delib = DeliberativeChecker(backend)  # ThinkGuard format, JSON schema, label-token score
        # Different prompts for the two rows: llama.cpp would reuse a repeated prompt's cache.
        some, others = reqs[: args.deliberative], reqs[args.deliberative: 2 * args.deliberative]
        label_only = [await _timed(delib.check, r, label_only=True) for r in some]
        full = [await _timed(delib.check, r) for r in others]
        rows += [(f"deliberative (embedded, thinkguard), label only, median of {len(some)}",
                  statistics.median(label_only)),
                 (f"deliberative, label + categories + critique, median of {len(some)}",
                  statistics.median(full))]
    base = rows[0][1]
    print(f"{os.cpu_count()} CPUs visible; load average {os.getloadavg()[0]:.1f}; "
          f"{len(texts)} held-out prompts, mean {statistics.mean(len(t) for t in texts):.0f} chars")
    print(f"| {'path':90s} | ms per prompt | x {rows[0][0].split(' ')[0]} single |")
    print("|---|---|---|")
    for name, ms in rows:
        print(f"| {name:90s} | {ms:.2f} | {ms / base:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
