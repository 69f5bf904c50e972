"""Runner overhead: the eval runner's throughput against the backend's own, on the same requests.

Baseline: `backend.complete` called in a plain loop on the suite's requests (same messages, same
generation parameters). Runner: `Runner.run()` on a fresh run directory for the same items, with
the string-match judge (no model calls), JSONL cache writes and the summary with its bootstrap.
Rounds alternate baseline and runner so that load from other processes hits both alike.
Target: runner / baseline >= 0.9.

    python bench/eval_runner.py --items 12 --max-tokens 24 --rounds 2 [--backend embedded]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

from specguard.backends import load_backend
from specguard.evals.methods import RawMethod
from specguard.evals.runner import Runner
from specguard.evals.suites import Suite


def _suite(items: int, max_tokens: int) -> Suite:
    return Suite.model_validate({
        "name": "bench",
        "datasets": [{"name": "xstest", "n": items, "seed": 0}],
        "methods": ["raw"],
        "judges": ["refusal_match"],
        "metrics": ["over_refusal_rate", "refusal_rate", "seconds_per_item"],
        "generation": {"max_tokens": max_tokens, "temperature": 0.0},
        "bootstrap": 1000,
    })


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="embedded")
    ap.add_argument("--items", type=int, default=12)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    opts = {"n_threads": args.threads} if args.threads and args.backend.startswith("embedded") \
        else {}
    backend = load_backend(args.backend, **opts)
    suite = _suite(args.items, args.max_tokens)
    probe = Runner(suite, backend, backend_name=args.backend, out_dir=tempfile.mkdtemp(),
                   progress=False)
    items = probe.items
    raw = RawMethod(backend)
    params = [probe._params(f"{it.key}::0") for it in items]
    await backend.complete(await _messages(raw, items[0]), params[0])  # warm-up: load

    base_rates, runner_rates = [], []
    for r in range(args.rounds):
        start = time.perf_counter()
        for it, p in zip(items, params, strict=True):
            await backend.complete(await _messages(raw, it), p)
        base = len(items) / (time.perf_counter() - start)
        start = time.perf_counter()
        result = await Runner(suite, backend, backend_name=args.backend,
                              out_dir=tempfile.mkdtemp(prefix="bench-run-"),
                              progress=False).run()
        run = result.computed / (time.perf_counter() - start)
        base_rates.append(base)
        runner_rates.append(run)
        print(f"round {r + 1}: backend {base:.3f} req/s, runner {run:.3f} req/s, "
              f"ratio {run / base:.3f}")
    b, rr = statistics.mean(base_rates), statistics.mean(runner_rates)
    print(f"{len(items)} requests x {args.rounds} rounds, max_tokens={args.max_tokens}, "
          f"backend={args.backend}")
    print(f"mean: backend {b:.3f} req/s, runner {rr:.3f} req/s, runner/backend = {rr / b:.3f}"
          f" (target >= 0.9)")
    await backend.aclose()


async def _messages(raw: RawMethod, item):
    from specguard.types import system, user

    return [system(raw.system_prompt), user(item.request)]


if __name__ == "__main__":
    asyncio.run(main())
