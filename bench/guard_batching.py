"""Batched fast-tier checks (/v1/moderations, the eval harness): how the fine-tuned MiniLM
member groups the texts it scores.

Every row of an ONNX call is padded to the widest row of its batch, and the int8 graph
quantizes its activations over the whole call. Three ways, on the same checker:
- fixed batches (before): the length-sorted texts in runs of 32. A batch of 64 requests sends
  only the ~30 units TF-IDF is unsure of, so one call held them all, and one 254-token jailbreak
  padded the 11-token questions to 256;
- length buckets of up to 32 (encoders.length_batches): a batch closes before its widest row
  passes 1.25x its narrowest (+8 tokens); training encodes this way;
- each row alone, on the calling thread: no padding, and a text's score does not depend on
  its batch mates;
- each row alone, the rows spread over the cores (served: features.spread_rows, one thread per
  core, SPECGUARD_ENCODER_WORKERS): the same scores, side by side.

Baseline measured in the same run, interleaved round by round. Held-out prompts (ToxicChat,
XSTest, HarmBench, OpenAI moderation), each request made distinct so no cache answers it, 64
requests per call. Also reported: how far the scores move against each text checked alone.

    python bench/guard_batching.py [--requests 256 --rounds 3]   # on a quiet machine
    python bench/guard_batching.py --smoke --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import contextmanager

import numpy as np
from specguard import encoders
from specguard.data import Part
from specguard.evals.results import Readme, Result, Table, command_line, write_result
from specguard.guard import CheckRequest, FastChecker, Stage, load_fast_checker
from specguard.guard.corpus import input_examples
from specguard.guard.features import row_workers
from specguard.types import user

SOURCES = ("toxicchat", "xstest", "harmbench", "openai_moderation")


def fixed_batches(lengths, batch_size: int = 32, **_):
    """The grouping before: the length-sorted rows in fixed runs of `batch_size`."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[b:b + batch_size] for b in range(0, len(order), batch_size)]


@contextmanager
def grouping(fn):
    shipped = encoders.length_batches
    encoders.length_batches = fn
    try:
        yield
    finally:
        encoders.length_batches = shipped


@contextmanager
def counting_padding(totals: dict[str, int]):
    """Counts the real and the padded tokens of every MiniLM call of the grouping in force."""
    inner = encoders.length_batches

    def counted(lengths, batch_size=32, **kw):
        batches = inner(lengths, batch_size, **kw)
        for b in batches:
            totals["real"] += sum(lengths[i] for i in b)
            totals["padded"] += len(b) * max(lengths[i] for i in b)
        return batches

    with grouping(counted):
        yield


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=256, help="distinct requests per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64, help="requests per verdicts() call")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default=None, help="the JSON summary (default docs/results/)")
    args = ap.parse_args()
    n, rounds = (32, 1) if args.smoke else (args.requests, args.rounds)

    shipped = load_fast_checker()
    if shipped is None:
        raise SystemExit("no fast-tier artifact shipped in specs/guard/")
    # The checker's memory on, as served, and emptied (forget(), outside the timing) before
    # each pass: every pass scores texts never seen, and a flagged one is encoded once.
    checker = FastChecker(shipped.artifact)
    held = [e.text for e in input_examples(parts=(Part.HELD_OUT,), augment=False)
            if e.source in SOURCES][::5]
    if not held:
        raise SystemExit("no held-out prompts: is the data directory there?")
    texts = [f"{t} ({i})" for i, t in enumerate((held * (1 + n // len(held)))[:n])]
    requests = [CheckRequest(stage=Stage.INPUT, messages=[user(t)]) for t in texts]

    def run() -> tuple[float, list[float]]:
        checker.forget()
        start = time.perf_counter()
        scores = []
        for i in range(0, len(requests), args.batch):
            scores += [v.score for v in checker.verdicts(requests[i:i + args.batch])]
        return len(requests) / (time.perf_counter() - start), scores

    checker.verdicts(requests[:4])  # load the members
    workers = row_workers()
    spread = f"each row alone, spread over {workers} threads (served)"
    ways = {"fixed batches of 32 (before)": (fixed_batches, False, 1),
            "length buckets of up to 32": (encoders.length_batches, False, 1),
            "each row alone, one thread": (encoders.length_batches, True, 1),
            spread: (encoders.length_batches, True, workers)}
    rates: dict[str, list[float]] = {name: [] for name in ways}
    scores: dict[str, list[float]] = {}
    padding: dict[str, dict[str, int]] = {}
    for _ in range(rounds):
        for name, (fn, alone, threads) in ways.items():
            for feat in checker._featurizers.values():
                feat.row_alone, feat.workers = alone, threads
            totals = {"real": 0, "padded": 0}
            with grouping(fn), counting_padding(totals):
                rate, s = run()
            rates[name].append(rate)
            scores[name], padding[name] = s, totals
    alone = []
    for r in requests:
        checker.forget()
        alone.append(checker.verdicts([r])[0].score)
    threshold = checker.threshold(Stage.INPUT)

    rows = []
    base = statistics.median(rates["fixed batches of 32 (before)"])
    for name in ways:
        d = np.abs(np.array(scores[name]) - np.array(alone))
        flips = sum((a >= threshold) != (b >= threshold)
                    for a, b in zip(scores[name], alone, strict=True))
        pad = padding[name]
        rows.append([name, round(statistics.median(rates[name]), 1),
                     f"{statistics.median(rates[name]) / base:.2f}x",
                     round(pad["padded"] / max(1, pad["real"]), 2),
                     round(float(np.median(d)), 5), round(float(d.max()), 4), flips])
        print(rows[-1])
    one = statistics.median(rates["each row alone, one thread"])
    served = statistics.median(rates[spread])
    path = write_result(Result(
        name="guard_batching", title="Batched checks: how the MiniLM member groups its texts",
        script="bench/guard_batching.py", command=command_line(), smoke=args.smoke,
        tables=[Table(
            id="batching", title=f"fast_default, {n} held-out requests, {args.batch} per call",
            columns=["MiniLM calls", "checks/s (median of rounds)", "vs fixed batches",
                     "padded / real tokens", "median |score - checked alone|",
                     "max |score - checked alone|", "decisions unlike checked alone"],
            rows=rows,
            note=f"{rounds} round(s), interleaved; one thread per encoder (the default); "
                 f"balanced threshold {threshold:.3f}; scores from the last round; "
                 f"{os.cpu_count()} CPUs, {workers} row threads.")],
        readme=Readme(what="batched guard checks (MiniLM calls)", where="docs/results/guard.md",
                      headline=f"rows alone, spread over {workers} threads: {served / base:.2f}x "
                               f"the batched checks/s of fixed batches of 32 and {served / one:.2f}x "
                               f"one thread, scores equal to each text checked alone"),
        data={"requests": n, "rounds": rounds, "rates": rates, "padding": padding,
              "threshold": threshold}), args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
