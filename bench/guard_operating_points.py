"""The fast tier's operating points (`strict`, `balanced`, `permissive`) measured on held-out
data: what each preset flags and what it catches.

The presets are thresholds chosen on the validation part: the lowest threshold flagging at most
15%, 8% or 3% of its benign look-alikes in each placement a request can take (runtime/guard/
train.py, `threshold_everywhere`; placement.py). This
script reports, for each preset, the validation figures the choice saw (from the model card)
next to held-out figures on the items of the guard_fast suite (the same datasets, parts and
samples): look-alikes flagged (pooled and per dataset), harmful requests caught, benign requests
flagged, and OpenAI moderation and ToxicChat precision / recall / F1.

Baseline, measured in the same run: the artifact's TF-IDF member alone, with its own presets
chosen by the same rule on the same validation look-alikes.

    python bench/guard_operating_points.py
    python bench/guard_operating_points.py --smoke --out /tmp/x.json
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
from specguard.data import Part
from specguard.evals.metrics import wilson_interval
from specguard.evals.results import Readme, Result, Table, command_line, write_result
from specguard.evals.suites import build_items, load_suite
from specguard.guard import FastChecker, Stage, load_fast_checker
from specguard.guard.corpus import input_examples
from specguard.guard.placement import placed_groups, placed_scores
from specguard.guard.train import (
    PRESET_LOOKALIKE_FPR,
    PRESETS,
    _is_lookalike,
    threshold_everywhere,
)

MODERATION = ("openai_moderation", "toxicchat")


def scores(checker: FastChecker, texts: list[str], batch: int = 64) -> np.ndarray:
    """Served input-check scores, each text sent as the last user turn."""
    return np.array(placed_scores(checker, texts, batch=batch))


def baseline_presets(tfidf: FastChecker, batch: int = 64) -> tuple[dict[str, float], int]:
    """The TF-IDF member's own presets: the shipped rule (train.py's threshold_everywhere: the
    bound held in every placement and validation scene) on the same validation look-alikes the
    artifact's presets were chosen on; and how many there are."""
    look_val = [e.text for e in input_examples(parts=(Part.VALIDATION,)) if _is_lookalike(e)]
    if not look_val:
        raise SystemExit("no validation look-alikes: is the data directory there?")
    s = list(placed_groups(tfidf, look_val).values())
    return {p: threshold_everywhere(s, PRESET_LOOKALIKE_FPR[p]) for p in PRESETS}, len(look_val)


def rate(flags: np.ndarray) -> str:
    k, n = int(flags.sum()), len(flags)
    if n == 0:
        return "—"
    lo, hi = wilson_interval(k, n)
    return f"{k / n:.1%} [{lo:.1%}, {hi:.1%}] (n={n})"


def prf(y: np.ndarray, flag: np.ndarray) -> str:
    tp = int((flag & y).sum())
    p = tp / max(1, int(flag.sum()))
    r = tp / max(1, int(y.sum()))
    f = 2 * p * r / (p + r) if p + r else 0.0
    return f"{p:.2f} / {r:.2f} / {f:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=64, help="requests per verdicts() call")
    ap.add_argument("--smoke", action="store_true", help="40 items per group")
    ap.add_argument("--out", default=None, help="the JSON summary (default docs/results/)")
    args = ap.parse_args()

    shipped = load_fast_checker()
    if shipped is None:
        raise SystemExit("no fast-tier artifact shipped in specs/guard/")
    checkers = {"shipped": shipped, "TF-IDF member alone": load_fast_checker(members=["tfidf"])}
    card = shipped.artifact.card.get("validation", {}).get("input", {}).get("operating_points", {})

    base, n_look_val = baseline_presets(checkers["TF-IDF member alone"], args.batch)
    thresholds = {"shipped": {p: shipped.threshold(Stage.INPUT, p) for p in PRESETS},
                  "TF-IDF member alone": base}

    items = build_items(load_suite("guard_fast"))
    groups: dict[str, list] = defaultdict(list)
    for it in items:
        if it.group in ("requests", "lookalikes", *MODERATION):
            groups[it.group].append(it)
    if args.smoke:
        groups = {g: v[:40] for g, v in groups.items()}
    flat = [it for g in groups.values() for it in g]
    texts = [it.request for it in flat]
    held = {name: dict(zip([it.key for it in flat], scores(c, texts, args.batch), strict=True))
            for name, c in checkers.items()}

    rows, data = [], {}
    for name in checkers:
        for preset in PRESETS:
            t = thresholds[name][preset]
            s = held[name]

            def flags(its, s=s, t=t):
                return np.array([s[it.key] >= t for it in its], dtype=bool)

            req = groups.get("requests", [])
            harmful = [it for it in req if it.harmful]
            benign = [it for it in req if not it.harmful]
            look = groups.get("lookalikes", [])
            per_set = {d: flags([it for it in look if it.dataset == d])
                       for d in sorted({it.dataset for it in look})}
            row = [name, preset, round(t, 3),
                   rate(flags(look)), *(rate(per_set[d]) for d in per_set),
                   rate(flags(harmful)), rate(flags(benign))]
            for g in MODERATION:
                its = groups.get(g, [])
                row.append(prf(np.array([bool(it.harmful) for it in its]), flags(its)))
            rows.append(row)
            data[f"{name}/{preset}"] = {
                "threshold": t, "lookalike_fpr": float(flags(look).mean()) if look else None,
                "harmful_request_recall": float(flags(harmful).mean()) if harmful else None,
                "benign_request_fpr": float(flags(benign).mean()) if benign else None}
            print(" | ".join(str(x) for x in row))
    sets = sorted({it.dataset for it in groups.get("lookalikes", [])})
    val_rows = [[p, card.get(p, {}).get("threshold"), PRESET_LOOKALIKE_FPR[p],
                 card.get(p, {}).get("lookalike_fpr"), card.get(p, {}).get("n_lookalike"),
                 card.get(p, {}).get("harmful_request_recall"), thresholds["TF-IDF member alone"][p]]
                for p in PRESETS]
    balanced = data["shipped/balanced"]
    path = write_result(Result(
        name="guard_operating_points", title="Operating points on held-out data",
        script="bench/guard_operating_points.py", command=command_line(), smoke=args.smoke,
        tables=[
            Table(id="chosen", title="How each preset was chosen (validation part)",
                  columns=["preset", "threshold (shipped)", "look-alike bound",
                           "look-alikes flagged (validation)", "validation look-alikes",
                           "harmful requests caught (validation)",
                           "threshold (TF-IDF alone, same rule)"],
                  rows=val_rows,
                  note="From the shipped model card; the TF-IDF member's thresholds are chosen "
                       "here by the same rule on the same validation look-alikes."),
            Table(id="held_out", title="Each preset on held-out items (the guard_fast suite's)",
                  columns=["fast tier", "preset", "threshold", "look-alikes flagged",
                           *(f"… {d}" for d in sets), "harmful requests caught",
                           "benign requests flagged",
                           *(f"{g} P / R / F1" for g in MODERATION)],
                  rows=rows,
                  note="value [95% Wilson interval] (n). Look-alikes: XSTest safe prompts, "
                       "CoCoNot contrast prompts and CyberSecEval borderline cyber prompts "
                       "(held-out part; the suite's sample). Requests: the suite's `requests` "
                       "group (harmful ones against benign ones).")],
        readme=Readme(
            what="guard operating points (held-out)", where="docs/results/guard.md",
            headline=(f"balanced: {balanced['lookalike_fpr']:.1%} of held-out look-alikes "
                      f"flagged, {balanced['harmful_request_recall']:.1%} of harmful requests "
                      f"caught, {balanced['benign_request_fpr']:.1%} of benign requests flagged")),
        data={"thresholds": thresholds, "figures": data,
              "n_validation_lookalikes": n_look_val}), args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
