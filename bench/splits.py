"""The shared split of specguard.data, counted: per dataset, how many records fall in the
evaluation part (held_out), the validation part and the training part, and how many training or
validation records are left out of every part because they repeat an evaluation record (the
near-duplicate filter: encoder cosine at or above the recorded threshold, from the shipped
manifest specguard/data/near_duplicates.json), with how many of those repeat a record of
another dataset (AdvBench, HarmBench and JailbreakBench share behaviours).

Counts only: it reads the data and the manifest, trains nothing and encodes nothing.

    python bench/splits.py                              # docs/results/splits.json
    python bench/splits.py --smoke --out /tmp/s.json    # CI: two datasets

Then `python -m specguard.evals.scoreboard` regenerates docs/results/splits.md.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from specguard.data import (
    MULTILINGUAL_NEAR_DUPLICATE_COSINE,
    NEAR_DUPLICATE_COSINE,
    Part,
    in_part,
    load,
    record_part,
)
from specguard.data._dedupe import _manifest, manifest_status, record_key
from specguard.evals.results import Readme, Result, Table, command_line, write_result


def count(name: str) -> dict:
    records = load(name)
    parts = {p: len(in_part(records, p)) for p in Part}
    natural = Counter(record_part(r) for r in records)
    excluded = _manifest()["excluded"].get(name, {})
    keys = {record_key(r) for r in records}
    hits = [v for k, v in excluded.items() if k in keys]
    other = sum(1 for v in hits if v["nearest"].split("/", 1)[0] != name)
    left_out = natural[Part.TRAIN] + natural[Part.VALIDATION] - parts[Part.TRAIN] - parts[
        Part.VALIDATION]
    return {"records": len(records), "held_out": parts[Part.HELD_OUT],
            "validation": parts[Part.VALIDATION], "train": parts[Part.TRAIN],
            "left_out": left_out, "left_out_other_dataset": other,
            "training_side": natural[Part.TRAIN] + natural[Part.VALIDATION]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="summary path (default docs/results/splits.json)")
    ap.add_argument("--smoke", action="store_true", help="two datasets, for CI")
    args = ap.parse_args()
    t0 = time.perf_counter()
    status = manifest_status()
    names = [n for n, s in status.items() if s == "ok"]
    stale = sorted(n for n, s in status.items() if s != "ok")
    if args.smoke:
        names = [n for n in ("xstest", "jbb_artifacts") if n in names]
    counts = {n: count(n) for n in names}
    rows = []
    for n, c in counts.items():
        share = c["left_out"] / c["training_side"] if c["training_side"] else 0.0
        rows.append([n, c["records"], c["held_out"], c["validation"], c["train"], c["left_out"],
                     c["left_out_other_dataset"], f"{share:.1%}"])
    tot = {k: sum(c[k] for c in counts.values()) for k in (
        "records", "held_out", "validation", "train", "left_out", "left_out_other_dataset",
        "training_side")}
    rows.append(["all", tot["records"], tot["held_out"], tot["validation"], tot["train"],
                 tot["left_out"], tot["left_out_other_dataset"],
                 f"{tot['left_out'] / max(1, tot['training_side']):.1%}"])
    table = Table(
        id="parts", title="The shared split, per dataset (default subsets)",
        columns=["dataset", "records", "held out (evaluation)", "validation", "train",
                 "left out: near-duplicate of an evaluation record",
                 "of which another dataset's", "share of the training side left out"],
        rows=rows,
        note=f"Near-duplicate: encoder cosine >= {NEAR_DUPLICATE_COSINE} (all-MiniLM-L6-v2) or "
             f">= {MULTILINGUAL_NEAR_DUPLICATE_COSINE} (multilingual-e5-small, text that is not "
             "English) with an evaluation record of any dataset, or the same text; only the "
             "training side is ever left out, so the evaluation part is the hash split itself."
             + (f" Manifest stale or missing for: {', '.join(stale)} (not counted)."
                if stale else ""))
    readme = Readme(
        what="the shared split (evaluation / validation / train)",
        where="docs/results/splits.md",
        headline=f"{tot['held_out']:,} evaluation, {tot['validation']:,} validation and "
                 f"{tot['train']:,} training records over {len(counts)} datasets; "
                 f"{tot['left_out']:,} training-side records left out as near-duplicates of "
                 f"evaluation records ({tot['left_out_other_dataset']:,} of another dataset's)")
    result = Result(name="splits", title="The shared split of specguard.data",
                    script="bench/splits.py", command=command_line(), smoke=args.smoke,
                    readme=readme, tables=[table],
                    data={"counts": counts, "threshold": NEAR_DUPLICATE_COSINE,
                          "threshold_not_english": MULTILINGUAL_NEAR_DUPLICATE_COSINE,
                          "stale": stale, "seconds": round(time.perf_counter() - t0, 1)})
    path = write_result(result, args.out)
    print(f"wrote {path} in {time.perf_counter() - t0:.0f}s")
    print(readme.headline)


if __name__ == "__main__":
    main()
