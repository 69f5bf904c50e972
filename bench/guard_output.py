"""The output check on exchanges it never saw: held-out (request, answer) pairs with human labels
(XSTest completions, GPTFuzz jailbroken-or-not, DiaSafety), BeaverTails' unsafe answers,
Safety-Tuned LLaMAs' safe answers to harmful requests, CoCoNot's answers to benign prompts, and
moderation texts as answers. The shipped artifact's output stage as served, against its TF-IDF
member alone (the baseline, scored on the same items in the same run), at the balanced point.

    python bench/guard_output.py            # every held-out exchange: ~5 min on 2 cores
    python bench/guard_output.py --smoke    # CI

Writes docs/results/guard_output.json (the tables of docs/results/guard.md come from it).
Labels of refusal_direction_completions are automatic (Llama Guard 2): their row says so.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("SPECGUARD_ENCODER_THREADS", "2")
AUTOMATIC = {"refusal_direction_completions"}


def score(checker, examples) -> tuple[list[float], float]:
    from specguard.guard import CheckRequest, Stage
    from specguard.types import user

    requests = [CheckRequest(stage=Stage.OUTPUT, messages=[user(e.request)], response=e.text)
                for e in examples]
    t0 = time.perf_counter()
    verdicts = []
    for i in range(0, len(requests), 64):
        verdicts.extend(checker.verdicts(requests[i:i + 64]))
    ms = (time.perf_counter() - t0) * 1000 / max(len(requests), 1)
    return [v.score for v in verdicts], ms


def figures(y, p, threshold: float) -> dict:
    import numpy as np

    from specguard.evals.metrics import auprc, bootstrap, f1, proportion

    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    pred = (p >= threshold).astype(int)
    out = {"n": int(len(y)), "harmful": int(y.sum())}
    if y.sum():
        out["recall"] = proportion(pred[y == 1] == 1).model_dump()
    if (y == 0).sum():
        out["fpr"] = proportion(pred[y == 0] == 1).model_dump()
    if 0 < y.sum() < len(y):
        out["f1"] = bootstrap(f1, y, pred).model_dump()
        out["auprc"] = bootstrap(auprc, y, p).model_dump()
    return out


def main() -> int:
    from specguard.data import Part
    from specguard.evals.results import Readme, Result, Table, command_line, pct, write_result
    from specguard.guard import Stage, load_fast_checker
    from specguard.guard.corpus import output_examples

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="every 40th exchange: CI")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    served = load_fast_checker()
    if served is None:
        raise SystemExit("no shipped fast-tier artifact: build one with `specguard guard train`")
    baseline = load_fast_checker(members=["tfidf"])
    threshold = served.threshold(Stage.OUTPUT, "balanced")
    examples = output_examples(parts=(Part.HELD_OUT,))
    if args.smoke:
        examples = examples[::40]
    if not examples:
        raise SystemExit("no held-out exchanges: is the data directory there?")
    y = [int(e.harmful) for e in examples]
    p_served, ms_served = score(served, examples)
    p_base, ms_base = score(baseline, examples)
    members = "+".join(sorted(served.heads(Stage.OUTPUT).members))

    groups = {"all": list(range(len(examples)))}
    for source in sorted({e.source for e in examples}):
        groups[source] = [i for i, e in enumerate(examples) if e.source == source]
    data: dict = {"threshold": threshold, "members": members,
                  "ms_per_exchange": {"served": ms_served, "tfidf": ms_base}, "groups": {}}
    rows = []
    for name, idx in groups.items():
        fs = figures([y[i] for i in idx], [p_served[i] for i in idx], threshold)
        fb = figures([y[i] for i in idx], [p_base[i] for i in idx], threshold)
        data["groups"][name] = {"served": fs, "tfidf": fb}
        label = name + (" (automatic labels)" if name in AUTOMATIC else "")
        for metric in ("recall", "fpr", "f1", "auprc"):
            if metric in fs:
                rows.append([label, {"fpr": "benign flagged"}.get(metric, metric),
                             pct(fs[metric]), pct(fb.get(metric))])
    whole = data["groups"]["all"]
    headline = (f"output check ({members}) on {len(examples)} held-out exchanges at the balanced "
                f"point: recall {pct(whole['served'].get('recall'))}, benign answers flagged "
                f"{pct(whole['served'].get('fpr'))}, AUPRC {pct(whole['served'].get('auprc'))}; "
                f"TF-IDF member alone: recall {pct(whole['tfidf'].get('recall'))}, benign "
                f"flagged {pct(whole['tfidf'].get('fpr'))}")
    result = Result(
        name="guard_output", title="The output check on held-out exchanges",
        script="bench/guard_output.py", command=command_line(), smoke=args.smoke,
        readme=Readme(what="guard output check on held-out exchanges",
                      where="docs/results/guard.md", headline=headline),
        tables=[Table(
            id="groups", columns=["set", "metric", f"shipped ({members})", "TF-IDF member alone"],
            rows=rows,
            note=(f"{len(examples)} held-out (request, answer) pairs; balanced threshold "
                  f"{threshold:.3f} for both; {ms_served:.1f} ms per exchange served, "
                  f"{ms_base:.1f} ms TF-IDF alone (batches of 64). value [95% interval: "
                  "Wilson for proportions, bootstrap otherwise] (n)"))],
        data=data)
    print(f"wrote {write_result(result, args.out)}")
    for r in rows:
        print(" | ".join(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
