"""Fast-tier latency on this machine, against its TF-IDF member measured in the same run.

Per input check (one request per call, the way a chat request is checked): a 256-token
prompt, held-out prompts of ordinary length, and a prompt in another language (the e5 route);
and checks per second when a batch of 64 requests is checked in one call (/v1/moderations, the
eval harness). Rows: the shipped artifact as served (cascade: TF-IDF decides alone when it is
sure), the same without the cascade (the encoder on every text), and TF-IDF alone. Each call
starts with the checker's memory emptied, so these rows measure texts never seen before, with
the served defaults (one thread per encoder session, a call's rows spread over the cores).

A second table follows a chat as it grows (a long system prompt, then ten user turns, each
request carrying the whole conversation, as chat clients send it): per-request check time
with the unit-score cache, against the same checker without it, in the same run.

    python bench/guard_latency.py [--n 200]          # ~3 min on 2 cores
    python bench/guard_latency.py --smoke            # CI

Writes docs/results/guard_latency.json. Other processes may load the CPU while this runs: the
machine's load average is recorded; compare rows within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def chat_table(prompts: list[str], *, n_turns: int, chats: int) -> tuple[list[list[str]], dict]:
    """Chats of a ~500-token system prompt and `n_turns` user turns (held-out prompts, with a
    short answer between them); every request carries the conversation so far. The shipped
    checker with its unit-score cache against the same checker without it."""
    from specguard.guard import CheckRequest, Stage, load_fast_checker
    from specguard.guard.placement import BENIGN_DOCUMENT
    from specguard.types import assistant, system, user

    sys_prompt = "You are the support assistant of a hardware store. " + BENIGN_DOCUMENT
    results = {}
    for name, size in (("shipped, unit-score cache", None), ("shipped, no cache", 0)):
        checker = load_fast_checker()
        if size is not None:
            checker.cache_size = size
        checker.warm()
        per_req, last, units = [], [], []
        for c in range(chats):
            # Each chat opens with its own system prompt (a tenant's), so no chat reuses
            # another's scores.
            messages = [system(f"[tenant {c}] {sys_prompt}")]
            for t in range(n_turns):
                messages.append(user(prompts[(c * n_turns + t) % len(prompts)]))
                misses = checker.cache_misses
                start = time.perf_counter()
                checker.verdicts([CheckRequest(stage=Stage.INPUT, messages=list(messages))])
                ms = (time.perf_counter() - start) * 1000
                per_req.append(ms)
                units.append(checker.cache_misses - misses)
                if t == n_turns - 1:
                    last.append(ms)
                messages.append(assistant("Sure, here is what I can tell you about that."))
        results[name] = {"p50_ms": statistics.median(per_req), "p99_ms": _pct(per_req, 0.99),
                         "mean_ms": statistics.fmean(per_req),
                         "p50_last_turn_ms": statistics.median(last),
                         # Without the cache every unit of the conversation is scored again.
                         "units_scored_per_request": statistics.fmean(units) if size is None
                         else None}
    base = results["shipped, no cache"]["mean_ms"]
    rows = [[name, f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}", f"{r['p50_last_turn_ms']:.1f}",
             "all" if r["units_scored_per_request"] is None
             else f"{r['units_scored_per_request']:.1f}", f"{r['mean_ms'] / base:.2f}x"]
            for name, r in results.items()]
    note = (f"{chats} chats x {n_turns} user turns; system prompt ~500 tokens; user turns are "
            "held-out prompts (ToxicChat, XSTest, HarmBench, OpenAI moderation)")
    return rows, {"note": note, "rows": results}


def main() -> int:
    from specguard.data import Part
    from specguard.evals.results import Readme, Result, Table, command_line, write_result
    from specguard.guard import CheckRequest, FastChecker, Stage, load_fast_checker
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
    # What naming a flagged text's categories from its nearest exemplars costs: the same
    # checker with the TF-IDF head naming them (SPECGUARD_GUARD_CATEGORIES=head).
    checkers = {**dict(list(checkers.items())[:1]),
                "shipped, head names categories": FastChecker(
                    checkers["shipped (cascade)"].artifact, categories="head"),
                **dict(list(checkers.items())[1:])}
    # These rows measure what a text never seen before costs, as served: each call starts
    # with the checker's memory emptied (forget(), outside the timing), so nothing is reused
    # from an earlier call (a long text's first window repeats across texts that differ at the
    # end), but within a call a flagged text's vector computed for scoring is reused to name its
    # categories, as in serving. The chat table measures what the memory saves across calls.

    def one_per_call(checker, texts: list[str]) -> list[float]:
        checker.verdicts([CheckRequest(stage=Stage.INPUT, messages=[user(texts[0] + " (warm)")])])
        out = []
        for t in texts:
            checker.forget()
            start = time.perf_counter()
            checker.verdicts([CheckRequest(stage=Stage.INPUT, messages=[user(t)])])
            out.append((time.perf_counter() - start) * 1000)
        return out

    def batched(checker, texts: list[str]) -> float:
        reqs = [CheckRequest(stage=Stage.INPUT, messages=[user(t)]) for t in texts]
        spent = 0.0
        for i in range(0, len(reqs), 64):
            checker.forget()
            start = time.perf_counter()
            checker.verdicts(reqs[i:i + 64])
            spent += time.perf_counter() - start
        return len(reqs) / spent

    data: dict[str, dict[str, float]] = {}
    for name, checker in checkers.items():
        t256 = one_per_call(checker, [long_prompt + f" ({i})" for i in range(n)])
        tfree = one_per_call(checker, held)
        tforeign = one_per_call(checker, [foreign + f" ({i})" for i in range(max(4, n // 4))])
        data[name] = {
            "p50_256_tokens_ms": statistics.median(t256), "p99_256_tokens_ms": _pct(t256, 0.99),
            "p50_held_out_ms": statistics.median(tfree), "p99_held_out_ms": _pct(tfree, 0.99),
            "p50_other_language_ms": statistics.median(tforeign),
            # distinct texts: a repeated one would reuse its remembered windows (textcache)
            # the median of three passes: one pass is a few seconds, and moved 20% between runs
            "checks_per_s_batched": statistics.median(
                batched(checker, [f"{t} ({i})" for i, t in enumerate((held * 4)[: max(64, n)])])
                for _ in range(1 if args.smoke else 3)),
        }
    chat_rows, chat_data = chat_table(held, n_turns=4 if args.smoke else 10,
                                      chats=2 if args.smoke else 10)
    base = data["TF-IDF member alone"]
    cols = ["fast tier", "256-token prompt p50 / p99 ms", "held-out prompts p50 / p99 ms",
            "other language p50 ms", "checks/s batched (64 per call, median of 3)",
            "p50 256-token vs TF-IDF"]
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
                      "XSTest, HarmBench and OpenAI moderation (held-out part)"),
                Table(id="conversation", title="A growing chat, each request checked whole",
                      columns=["checker", "per request p50 / p99 ms",
                               "at the last turn p50 ms", "units scored per request",
                               "mean vs no cache"],
                      rows=chat_rows, note=chat_data["note"])],
        data={"n": n, "rows": data, "conversation": chat_data})
    path = write_result(result, args.out)
    print(f"wrote {path}")
    for r in rows:
        print(" | ".join(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
