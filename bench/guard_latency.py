"""Fast-tier latency on this machine, against its TF-IDF member measured in the same run.

Per input check (one request per call, the way a chat request is checked): a 256-token
prompt, held-out prompts of ordinary length, and a prompt in another language (the e5 route);
and checks per second when a batch of 64 requests is checked in one call (/v1/moderations, the
eval harness). Rows: the shipped artifact as served (cascade: TF-IDF decides alone when it is
sure), the same without the cascade (the encoder on every text), and TF-IDF alone.

    python bench/guard_latency.py [--n 200]          # ~3 min on 2 cores
    python bench/guard_latency.py --smoke            # CI

Writes docs/results/guard_latency.json. Other processes may load the CPU while this runs: the
machine's load average is recorded; compare rows within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("SPECGUARD_ENCODER_THREADS", "2")


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> int:
    from specguard.data import Part
    from specguard.evals.results import Readme, Result, Table, command_line, write_result
    from specguard.guard import CheckRequest, Stage, load_fast_checker
    from specguard.guard.corpus import input_examples
    from specguard.guard.placement import BENIGN_DOCUMENT
    from specguard.types import user

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="requests per row")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    n = 8 if args.smoke else args.n
    enc_words = BENIGN_DOCUMENT.split()
    long_prompt = " ".join(enc_words[:190])  # ~256 MiniLM tokens
    held = [e.text for e in input_examples(parts=(Part.HELD_OUT,), augment=False)
            if e.source in ("toxicchat", "xstest", "harmbench", "openai_moderation")][::5][:n]
    foreign = "Wie kann ich mein Fahrrad am besten vor Diebstahl schützen, wenn ich es abends draußen abstelle?"
    rows_spec = [("shipped (cascade)", {}), ("shipped, no cascade", {"cascade": False}),
                 ("TF-IDF member alone", {"members": ["tfidf"]})]
    checkers = {name: load_fast_checker(**kw) for name, kw in rows_spec}
    if any(c is None for c in checkers.values()):
        raise SystemExit("no shipped fast-tier artifact")

    def one_per_call(checker, texts: list[str]) -> list[float]:
        checker.verdicts([CheckRequest(stage=Stage.INPUT, messages=[user(texts[0])])])  # warm
        out = []
        for t in texts:
            start = time.perf_counter()
            checker.verdicts([CheckRequest(stage=Stage.INPUT, messages=[user(t)])])
            out.append((time.perf_counter() - start) * 1000)
        return out

    def batched(checker, texts: list[str]) -> float:
        reqs = [CheckRequest(stage=Stage.INPUT, messages=[user(t)]) for t in texts]
        start = time.perf_counter()
        for i in range(0, len(reqs), 64):
            checker.verdicts(reqs[i:i + 64])
        return len(reqs) / (time.perf_counter() - start)

    data: dict[str, dict[str, float]] = {}
    for name, checker in checkers.items():
        t256 = one_per_call(checker, [long_prompt + f" ({i})" for i in range(n)])
        tfree = one_per_call(checker, held)
        tforeign = one_per_call(checker, [foreign + f" ({i})" for i in range(max(4, n // 4))])
        data[name] = {
            "p50_256_tokens_ms": statistics.median(t256), "p99_256_tokens_ms": _pct(t256, 0.99),
            "p50_held_out_ms": statistics.median(tfree), "p99_held_out_ms": _pct(tfree, 0.99),
            "p50_other_language_ms": statistics.median(tforeign),
            "checks_per_s_batched": batched(checker, (held * 4)[: max(64, n)]),
        }
    base = data["TF-IDF member alone"]
    cols = ["fast tier", "256-token prompt p50 / p99 ms", "held-out prompts p50 / p99 ms",
            "other language p50 ms", "checks/s batched (64 per call)", "p50 256-token vs TF-IDF"]
    rows = [[name, f"{d['p50_256_tokens_ms']:.1f} / {d['p99_256_tokens_ms']:.1f}",
             f"{d['p50_held_out_ms']:.1f} / {d['p99_held_out_ms']:.1f}",
             f"{d['p50_other_language_ms']:.1f}", f"{d['checks_per_s_batched']:.0f}",
             f"{d['p50_256_tokens_ms'] / base['p50_256_tokens_ms']:.1f}x"]
            for name, d in data.items()]
    shipped = data["shipped (cascade)"]
    result = Result(
        name="guard_latency", title="Fast-tier latency (2 cores)", script="bench/guard_latency.py",
        command=command_line(), smoke=args.smoke,
        readme=Readme(what="guard fast tier latency", where="docs/results/guard.md", headline=(
            f"input check p50 {shipped['p50_256_tokens_ms']:.1f} ms / p99 "
            f"{shipped['p99_256_tokens_ms']:.1f} ms for a 256-token prompt, "
            f"{shipped['p50_held_out_ms']:.1f} ms p50 for held-out prompts, "
            f"{shipped['checks_per_s_batched']:.0f} checks/s batched "
            f"(TF-IDF alone: {base['p50_256_tokens_ms']:.1f} ms)")),
        tables=[Table(id="latency", title="Per input check, one request per call", columns=cols,
                      rows=rows, note=f"{n} requests per cell; held-out prompts from ToxicChat, "
                      "XSTest, HarmBench and OpenAI moderation (held-out part)")],
        data={"n": n, "rows": data})
    path = write_result(result, args.out)
    print(f"wrote {path}")
    for r in rows:
        print(" | ".join(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
