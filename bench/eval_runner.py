"""Runner overhead: the eval runner's throughput against the backend's own, on the same requests.

Baseline: `backend.complete` called in a plain loop on the suite's requests (same messages, same
generation parameters). Runner: `Runner.run()` on a fresh run directory for the same items, with
the string-match judge (no model calls), JSONL cache writes and the summary with its bootstrap.
Rounds alternate baseline and runner so that load from other processes hits both alike. Both
wall-clock and process CPU time (all threads, llama.cpp's included) are measured: on a machine
shared with other jobs the wall-clock ratio is noisy, while the CPU-time ratio still shows what
the runner itself adds (run the embedded backend with --threads 1 so that no thread spins).
Target: runner / baseline >= 0.9.

    python bench/eval_runner.py --items 12 --max-tokens 24 --rounds 2 [--backend embedded]
    python bench/eval_runner.py --smoke --out /tmp/x.json      # CI: 2 items x 4 tokens, 1 round

Writes docs/results/eval_runner.json (tables in docs/results/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

from specguard.backends import load_backend
from specguard.evals.methods import RawMethod
from specguard.evals.results import Readme, Result, Table, command_line, write_result
from specguard.evals.runner import Runner
from specguard.evals.suites import Suite


def _suite(items: int, max_tokens: int) -> Suite:
    return Suite.model_validate({
        "name": "bench",
        "datasets": [{"name": "xstest", "n": items, "seed": 0, "part": "held_out"}],
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
    ap.add_argument("--out", default=None, help="summary path (default docs/results/)")
    ap.add_argument("--smoke", action="store_true", help="2 items x 4 tokens, 1 round, for CI")
    args = ap.parse_args()
    if args.smoke:
        args.items, args.max_tokens, args.rounds = 2, 4, 1
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

    wall = {"backend": [], "runner": []}
    cpu = {"backend": [], "runner": []}
    for r in range(args.rounds):
        w0, c0 = time.perf_counter(), time.process_time()
        for it, p in zip(items, params, strict=True):
            await backend.complete(await _messages(raw, it), p)
        w1, c1 = time.perf_counter(), time.process_time()
        result = await Runner(suite, backend, backend_name=args.backend,
                              out_dir=tempfile.mkdtemp(prefix="bench-run-"),
                              progress=False).run()
        w2, c2 = time.perf_counter(), time.process_time()
        assert result.computed == len(items)
        wall["backend"].append(w1 - w0)
        wall["runner"].append(w2 - w1)
        cpu["backend"].append(c1 - c0)
        cpu["runner"].append(c2 - c1)
        print(f"round {r + 1}: wall backend {w1 - w0:.1f}s runner {w2 - w1:.1f}s "
              f"(ratio {(w1 - w0) / (w2 - w1):.3f}); cpu backend {c1 - c0:.1f}s runner "
              f"{c2 - c1:.1f}s (ratio {(c1 - c0) / (c2 - c1):.3f})", flush=True)
    n = len(items)
    print(f"{n} requests x {args.rounds} rounds, max_tokens={args.max_tokens}, "
          f"backend={args.backend}, threads={args.threads}")
    rows = []
    ratios = {}
    for name, t in (("wall", wall), ("cpu", cpu)):
        b, rr = n / statistics.mean(t["backend"]), n / statistics.mean(t["runner"])
        ratios[name] = rr / b
        print(f"{name}: backend {b:.3f} req/s, runner {rr:.3f} req/s, runner/backend = "
              f"{rr / b:.3f} (target >= 0.9)")
        rows.append([name, round(b, 3), round(rr, 3), f"{rr / b:.3f}"])
    await backend.aclose()
    path = write_result(Result(
        name="eval_runner", title="Eval runner overhead", script="bench/eval_runner.py",
        command=command_line(), smoke=args.smoke,
        readme=Readme(what="eval runner overhead", where="docs/results/performance.md",
                      headline=f"runner / plain backend loop = {ratios['cpu']:.3f} in CPU time, "
                               f"{ratios['wall']:.3f} in wall time (target >= 0.9)"),
        tables=[Table(id="throughput", title=f"{n} requests x {args.rounds} rounds, "
                      f"max_tokens={args.max_tokens}, backend {args.backend}",
                      columns=["clock", "backend req/s", "runner req/s", "runner / backend"],
                      rows=rows, note="Baseline: backend.complete in a plain loop on the same "
                      "requests, rounds alternating with the runner.")],
        data={"wall": wall, "cpu": cpu}), args.out)
    print(f"wrote {path}")


async def _messages(raw: RawMethod, item):
    from specguard.types import system, user

    return [system(raw.system_prompt), user(item.request)]


if __name__ == "__main__":
    asyncio.run(main())
