"""Which harm the fast tier names: per-category precision and recall on held-out harmful
items, for what the served checker names (the categories of a flagged text's nearest labelled
training texts: guard/exemplars.py) and, as the baseline in the same run, the TF-IDF category
head under its rule (a category at 50% or more, at most three, most likely first).

An item counts for a category when its dataset's own label maps onto that category of the
artifact's taxonomy (specs/guard/category_map.yaml); items whose label maps nowhere are left
out. Both are read on every such item, flagged or not: what a refusal would name. The summary
splits requests to an assistant (English, other languages) from the toxicity corpora (almost
all hate speech).

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
    from specguard.encoders import reads_as_english
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
            items.append((e.text, set(cats), e.domain == REQUESTS, reads_as_english(e.text)))
    if args.smoke:
        items = items[::25]
    probs = [s.categories for s in fast.score_units([t for t, *_ in items], Stage.INPUT)]

    def rate(num: int, den: int) -> float | None:
        return num / den if den else None

    head_names = [[c for c, v in sorted(q.items(), key=lambda kv: -kv[1])
                   if v >= CATEGORY_CONFIDENCE][:CATEGORY_TOP] for q in probs]
    ways = {"TF-IDF head": head_names}
    ex = heads.category_exemplars
    if ex is not None:  # what the served checker names for a flagged text
        near = fast.exemplar_categories([t for t, *_ in items], Stage.INPUT) or []
        ways["exemplars (served)"] = [ex.named([q[c] for c in ex.category_ids]) for q in near]
    rows, data = [], {"n_items": len(items), "categories": {}, "ways": {}}
    for cid in heads.category_ids:
        truth = [cid in cats for _, cats, *_ in items]
        row, cells = {"n": sum(truth)}, [cid, sum(truth)]
        for way, names in ways.items():
            said = [cid in ns for ns in names]
            hits = sum(s and t for s, t in zip(said, truth, strict=True))
            row[way] = {"named": sum(said), "precision": rate(hits, sum(said)),
                        "recall": rate(hits, sum(truth))}
            cells += [sum(said), _f(row[way]["precision"]), _f(row[way]["recall"])]
        data["categories"][cid] = row
        rows.append(cells)
    groups = (("requests", lambda r, en: r), ("requests in English", lambda r, en: r and en),
              ("requests in other languages", lambda r, en: r and not en),
              ("toxicity corpora", lambda r, en: not r), ("all", lambda r, en: True))
    summary_rows = []
    for way, names in ways.items():
        for group, keep in groups:
            pairs = [(ns, cats) for ns, (_, cats, req, en) in zip(names, items, strict=True)
                     if keep(req, en)]
            n = len(pairs)
            if not n:
                continue
            right = sum(bool(set(ns) & cats) for ns, cats in pairs) / n
            wrong_only = sum(bool(ns) and not set(ns) & cats for ns, cats in pairs) / n
            none = sum(not ns for ns, _ in pairs) / n
            data["ways"].setdefault(way, {})[group] = {
                "n": n, "names_a_right_one": right, "names_only_wrong": wrong_only,
                "names_none": none}
            summary_rows.append([way, group, n, f"{right:.1%}", f"{wrong_only:.1%}",
                                 f"{none:.1%}"])
    served = data["ways"][list(ways)[-1]].get("requests", {})
    rule = (f"the head names a category at {CATEGORY_CONFIDENCE:.0%} or more, at most "
            f"{CATEGORY_TOP}")
    if ex is not None:
        rule += (f"; the exemplars name what at least {ex.confidence:.0%} of a text's "
                 f"{ex.k} nearest labelled training texts are about (k and that share chosen "
                 f"on validation), at most 3")
    result = Result(
        name="guard_categories", title="Which harm the fast tier names",
        script="bench/guard_categories.py", command=command_line(), smoke=args.smoke,
        readme=Readme(what="guard: categories named", where="docs/results/guard.md",
                      headline=f"held-out harmful requests ({list(ways)[-1]}): a right "
                      f"category named for {served.get('names_a_right_one', 0):.0%}, only "
                      f"wrong ones for {served.get('names_only_wrong', 0):.0%}"),
        tables=[
            Table(id="summary", title="What a refusal names, held-out harmful items",
                  columns=["categories from", "items", "n", "names a right category",
                           "names only wrong ones", "names none"], rows=summary_rows,
                  note=f"held-out harmful items whose dataset label maps onto the "
                  f"{fast.artifact.taxonomy} taxonomy; {rule}. Both read on every item, "
                  f"flagged or not, in the same run."),
            Table(id="categories", title="Per category (all held-out harmful items)",
                  columns=["category", "n", *(f"{w}: {m}" for w in ways
                                               for m in ("named", "precision", "recall"))],
                  rows=rows)],
        data=data)
    print(f"wrote {write_result(result, args.out)}")
    for r in summary_rows + rows:
        print(" | ".join(str(x) for x in r))
    return 0


def _f(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    sys.exit(main())
