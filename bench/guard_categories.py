"""Which harm the fast tier names: per-category precision and recall of its category head on
held-out harmful items, under the rule the checker applies (a category is named when its
one-vs-rest head is at least 50% sure, at most three, most likely first).

An item counts for a category when its dataset's own label maps onto that category of the
artifact's taxonomy (specs/guard/category_map.yaml); items whose label maps nowhere are left
out. The head is read on every such item, flagged or not: what a refusal would name. The
summary splits requests to an assistant from the toxicity corpora (almost all hate speech).

    python bench/guard_categories.py            # ~2 min on 2 cores
    python bench/guard_categories.py --smoke    # CI

Writes docs/results/guard_categories.json.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("SPECGUARD_ENCODER_THREADS", "2")


def main() -> int:
    from specguard.data import Part
    from specguard.evals.results import Readme, Result, Table, command_line, write_result
    from specguard.guard import Stage, load_fast_checker
    from specguard.guard.fast import CATEGORY_CONFIDENCE, CATEGORY_TOP
    from specguard.guard.corpus import REQUESTS, category_map, input_examples, mapped_categories

    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    fast = load_fast_checker()
    if fast is None:
        raise SystemExit("no shipped fast-tier artifact")
    heads = fast.heads(Stage.INPUT)
    if not heads.category_ids:
        raise SystemExit("the shipped artifact has no category head")
    mapping = category_map().get(fast.artifact.taxonomy, {})
    items = []
    for e in input_examples(parts=(Part.HELD_OUT,), augment=False):
        cats = mapped_categories(e, mapping) if e.harmful else []
        if cats:
            items.append((e.text, set(cats), e.domain == REQUESTS))
    if args.smoke:
        items = items[::25]
    probs = [s.categories for s in fast.score_units([t for t, *_ in items], Stage.INPUT)]

    def rate(num: int, den: int) -> float | None:
        return num / den if den else None

    names = [[c for c, v in sorted(q.items(), key=lambda kv: -kv[1])
              if v >= CATEGORY_CONFIDENCE][:CATEGORY_TOP] for q in probs]
    rows, data = [], {"n_items": len(items), "categories": {}}
    for cid in heads.category_ids:
        truth = [cid in cats for _, cats, _ in items]
        said = [cid in ns for ns in names]
        hits = sum(s and t for s, t in zip(said, truth, strict=True))
        row = {"n": sum(truth), "named": sum(said), "precision": rate(hits, sum(said)),
               "recall": rate(hits, sum(truth))}
        data["categories"][cid] = row
        rows.append([cid, row["n"], row["named"], _f(row["precision"]), _f(row["recall"])])
    summary_rows = []
    for group, keep in (("requests", lambda r: r), ("toxicity corpora", lambda r: not r),
                        ("all", lambda r: True)):
        pairs = [(ns, cats) for ns, (_, cats, req) in zip(names, items, strict=True) if keep(req)]
        n = len(pairs)
        if not n:
            continue
        right = sum(bool(set(ns) & cats) for ns, cats in pairs) / n
        wrong_only = sum(bool(ns) and not set(ns) & cats for ns, cats in pairs) / n
        none = sum(not ns for ns, _ in pairs) / n
        data[group] = {"n": n, "names_a_right_one": right, "names_only_wrong": wrong_only,
                       "names_none": none}
        summary_rows.append([group, n, f"{right:.1%}", f"{wrong_only:.1%}", f"{none:.1%}"])
    req = data.get("requests", {})
    result = Result(
        name="guard_categories", title="Which harm the fast tier names",
        script="bench/guard_categories.py", command=command_line(), smoke=args.smoke,
        readme=Readme(what="guard: categories named", where="docs/results/guard.md",
                      headline=f"held-out harmful requests: a right category named for "
                      f"{req.get('names_a_right_one', 0):.0%}, only wrong ones for "
                      f"{req.get('names_only_wrong', 0):.0%}"),
        tables=[
            Table(id="summary", title="What a refusal names, held-out harmful items",
                  columns=["items", "n", "names a right category", "names only wrong ones",
                           "names none"], rows=summary_rows,
                  note=f"held-out harmful items whose dataset label maps onto the "
                  f"{fast.artifact.taxonomy} taxonomy; a category is named at "
                  f"{CATEGORY_CONFIDENCE:.0%} or more, at most {CATEGORY_TOP}"),
            Table(id="categories", title="Per category (all held-out harmful items)",
                  columns=["category", "n", "named", "precision", "recall"], rows=rows)],
        data=data)
    print(f"wrote {write_result(result, args.out)}")
    for r in summary_rows + rows:
        print(" | ".join(str(x) for x in r))
    return 0


def _f(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    sys.exit(main())
