"""The fast tier on requests phrased the way no dataset here phrases them: the held-out quarter of
the requests written for specguard (runtime/guard/written.py; 19 harm topics, ten phrasings of
each harmful one: terse, informal, first person, a backstory, a fiction cover, a claimed
profession, code, content to produce; and benign look-alikes on the same topics: definitions,
history, defence, homonyms, safe fiction, professional tasks).

The held-out quarter never trains, and no training or validation text is within MiniLM cosine
0.75 of it. One caveat the figures carry: the same writers wrote every part, so this measures
new phrasings by familiar authors, not a stranger's.

Each preset's threshold is the artifact's own (chosen on the datasets' validation look-alikes,
sent in every placement since 2026-12-07).
What decides whether a retrained artifact ships is in the `validation` table: every tier on
the validation part alone (the datasets' harmful requests and look-alikes, as training built
them, and the written validation requests), never the held-out one; the
`validation_placements` table places the same requests and look-alikes in a conversation
(system turn, earlier turn, end of a document). Baseline, measured in
the same run: the artifact's TF-IDF member alone, with its presets chosen
by the same rule on the same validation look-alikes. `--compare NAME=FOLDER` adds other
artifact folders (an earlier commit's specs/guard/fast_default, via `git worktree`).

    python bench/guard_written.py
    python bench/guard_written.py --compare previous=/tmp/prev_art
    python bench/guard_written.py --smoke --out /tmp/x.json
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

# the operating-points bench's helpers (this folder is on sys.path when a script runs)
from guard_operating_points import baseline_presets, rate, scores
from specguard.data import Part
from specguard.evals.results import Readme, Result, Table, command_line, write_result
from specguard.guard import FastChecker, Stage, load_fast_checker, written
from specguard.guard.corpus import input_examples
from specguard.guard.placement import PLACEMENTS, placed_groups
from specguard.guard.train import (
    PRESET_LOOKALIKE_FPR,
    PRESETS,
    _is_lookalike,
    is_request,
    threshold_everywhere,
    threshold_within,
)


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counting half."""
    if not len(pos) or not len(neg):
        return float("nan")
    return float(((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean())


def validation_sets(smoke: bool) -> tuple[list[str], list[str]]:
    """The datasets' validation harmful requests (bare and jailbreak-wrapped: what the card's
    harmful-request recall counts) and look-alikes, as training built them."""
    val = [e for e in input_examples(parts=(Part.VALIDATION,))
           if not e.source.startswith("written")]
    harm = [e.text for e in val if e.harmful and is_request(e)]
    look = [e.text for e in val if _is_lookalike(e)]
    return (harm[::40] if smoke else harm), look


def validation_rows(checkers: dict[str, FastChecker], thresholds: dict[str, dict[str, float]],
                    harm: list[str], look: list[str], smoke: bool) -> tuple[list[list], dict]:
    """Each tier at its balanced point on the validation part only: the datasets' harmful
    requests and look-alikes (validation_sets), and the written validation requests."""
    wv = [w for _, w in written.in_part(Part.VALIDATION)]
    if smoke:
        wv = wv[::20]
    wh = np.array([w.harmful for w in wv])
    rows, data = [], {}
    for name, c in checkers.items():
        t = thresholds[name]["balanced"]
        h, lk, w = scores(c, harm), scores(c, look), scores(c, [x.text for x in wv])
        # the rule not adopted: the written validation look-alikes joining the bound's pool
        pooled = threshold_within(np.concatenate([lk, w[~wh]]), PRESET_LOOKALIKE_FPR["balanced"])
        d = {"threshold": t, "harmful_recall": float((h >= t).mean()),
             "pooled_threshold": pooled, "pooled_lookalike_fpr": float((lk >= pooled).mean()),
             "lookalike_fpr": float((lk >= t).mean()), "auc_vs_lookalikes": auc(h, lk),
             "written_harmful_recall": float((w[wh] >= t).mean()),
             "written_lookalike_fpr": float((w[~wh] >= t).mean()),
             "n_harmful": len(harm), "n_lookalikes": len(look), "n_written": len(wv)}
        data[name] = d
        rows.append([name, round(t, 3), rate(h >= t), rate(lk >= t),
                     round(d["auc_vs_lookalikes"], 3),
                     rate(w[wh] >= t), rate(w[~wh] >= t), round(pooled, 3),
                     rate(lk >= pooled)])
        print(" | ".join(str(x) for x in rows[-1]))
    return rows, data


def placement_rows(checkers: dict[str, FastChecker], thresholds: dict[str, dict[str, float]],
                   harm: list[str], look: list[str]) -> tuple[list[list], dict]:
    """Each tier at its balanced point on the datasets' validation harmful requests and
    look-alikes, each placed where the robustness suite places its held-out ones (the last user
    turn, the system turn, an earlier turn, the end of a long benign document) but among the
    validation scenes' benign turns and passages, not the suite's: a placement that moves the
    look-alikes' rate shows here before a ship decision, not only held out."""
    rows, data = [], {}
    for name, c in checkers.items():
        t = thresholds[name]["balanced"]
        row: list = [name]
        d: dict = {}
        groups_h = {k: np.array(v) for k, v in placed_groups(c, harm).items()}
        groups_l = {k: np.array(v) for k, v in placed_groups(c, look).items()}
        placed = {w: tuple(np.concatenate([g[k] for k in g if k.split("/")[0] == w])
                           for g in (groups_h, groups_l)) for w in PLACEMENTS}
        for where, (h, lk) in placed.items():
            d[where] = {"harmful_recall": float((h >= t).mean()),
                        "lookalike_fpr": float((lk >= t).mean())}
            row += [rate(h >= t), rate(lk >= t)]
        recalls = [d[w]["harmful_recall"] for w in PLACEMENTS]
        d["recall_spread"] = max(recalls) - min(recalls)
        # The rule training chooses the presets by (TrainConfig.placed_presets, adopted
        # 2026-12-07): the balanced bound held in every placement. For an artifact trained
        # before it, the threshold it would have set.
        every = threshold_everywhere(list(groups_l.values()), PRESET_LOOKALIKE_FPR["balanced"])
        h_all = np.concatenate(list(groups_h.values()))
        worst = max(float((lk >= every).mean()) for lk in groups_l.values())
        d["placed_threshold"] = every
        d["placed_harmful_recall"] = float((h_all >= every).mean())
        d["placed_worst_lookalike_fpr"] = worst
        data[name] = d
        rows.append([*row, round(d["recall_spread"], 3), round(every, 3),
                     rate(h_all >= every), f"{worst:.1%}"])
        print(" | ".join(str(x) for x in rows[-1]))
    return rows, data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=FOLDER",
                    help="another artifact folder to measure beside the shipped one")
    ap.add_argument("--smoke", action="store_true", help="60 held-out texts")
    ap.add_argument("--out", default=None, help="the JSON summary (default docs/results/)")
    args = ap.parse_args()

    shipped = load_fast_checker()
    if shipped is None:
        raise SystemExit("no fast-tier artifact shipped in specs/guard/")
    checkers: dict[str, FastChecker] = {"shipped": shipped}
    for spec in args.compare:
        name, _, folder = spec.partition("=")
        if not folder:
            raise SystemExit(f"--compare wants NAME=FOLDER, got {spec!r}")
        checkers[name] = load_fast_checker(folder)
    checkers["TF-IDF member alone"] = load_fast_checker(members=["tfidf"])

    held = [w for _, w in written.in_part(Part.HELD_OUT)]
    if args.smoke:
        held = held[::max(1, len(held) // 60)]  # both labels, every topic
    texts = [w.text for w in held]
    harmful = np.array([w.harmful for w in held])

    thresholds = {name: baseline_presets(c)[0] if name == "TF-IDF member alone"
                  else {p: c.threshold(Stage.INPUT, p) for p in PRESETS}
                  for name, c in checkers.items()}
    got = {name: scores(c, texts) for name, c in checkers.items()}

    rows, data = [], {}
    for name in checkers:
        for preset in PRESETS:
            flag = got[name] >= thresholds[name][preset]
            rows.append([name, preset, round(thresholds[name][preset], 3),
                         rate(flag[harmful]), rate(flag[~harmful])])
            data[f"{name}/{preset}"] = {
                "threshold": thresholds[name][preset],
                "harmful_recall": float(flag[harmful].mean()) if harmful.any() else None,
                "lookalike_fpr": float(flag[~harmful].mean()) if (~harmful).any() else None}
            print(" | ".join(str(x) for x in rows[-1]))

    def breakdown(field: str, label: bool) -> list[list[str]]:
        keys = sorted({getattr(w, field) for w, h in zip(held, harmful, strict=True)
                       if h == label})
        out = []
        for k in keys:
            idx = np.array([getattr(w, field) == k and h == label
                            for w, h in zip(held, harmful, strict=True)])
            out.append([k, *(rate(got[n][idx] >= thresholds[n]["balanced"]) for n in checkers)])
        return out

    by = defaultdict(list)
    for label, field in ((True, "style"), (True, "topic"), (False, "style")):
        by[(label, field)] = breakdown(field, label)
    val_harm, val_look = validation_sets(args.smoke)
    val_rows, val_data = validation_rows(checkers, thresholds, val_harm, val_look, args.smoke)
    place_rows, place_data = placement_rows(checkers, thresholds, val_harm, val_look)
    b = data["shipped/balanced"]
    base = data["TF-IDF member alone/balanced"]
    path = write_result(Result(
        name="guard_written", title="Requests phrased as no dataset here phrases them",
        script="bench/guard_written.py", command=command_line(), smoke=args.smoke,
        tables=[
            Table(id="presets", title="Each preset on the held-out written requests",
                  columns=["fast tier", "preset", "threshold", "harmful requests caught",
                           "benign look-alikes flagged"],
                  rows=rows,
                  note="value [95% Wilson interval] (n). The held-out quarter of "
                       "runtime/guard/written_requests.jsonl; thresholds are each tier's own."),
            Table(id="styles", title="Harmful requests caught per phrasing (balanced)",
                  columns=["phrasing", *checkers], rows=by[(True, "style")]),
            Table(id="topics", title="Harmful requests caught per topic (balanced)",
                  columns=["topic", *checkers], rows=by[(True, "topic")]),
            Table(id="kinds", title="Benign look-alikes flagged per kind (balanced)",
                  columns=["kind", *checkers], rows=by[(False, "style")]),
            Table(id="validation", title="What the ship decision reads: the validation part "
                  "at the balanced point",
                  columns=["fast tier", "threshold", "datasets' harmful requests caught",
                           "datasets' look-alikes flagged",
                           "AUC harmful requests vs look-alikes",
                           "written harmful caught", "written look-alikes flagged",
                           "threshold, written look-alikes pooled in",
                           "datasets' look-alikes flagged at it"],
                  rows=val_rows,
                  note="value [95% Wilson interval] (n). The datasets' validation part as "
                       "training built it (harmful requests bare and jailbreak-wrapped, as the "
                       "card counts them; the look-alikes the presets are chosen on), and the "
                       "written validation requests; served scores, one text per request. The last "
                       "two columns: the balanced rule (at most 8% flagged) on the datasets' "
                       "look-alikes and the written ones together, a rule not adopted."),
            Table(id="validation_placements",
                  title="The validation part placed in a conversation (balanced)",
                  columns=["fast tier",
                           *(f"{w}: {what}" for w in PLACEMENTS
                             for what in ("harmful caught", "look-alikes flagged")),
                           "recall spread", "threshold, bound held in every placement",
                           "harmful caught at it (all placements)",
                           "look-alikes flagged at it (worst placement and scene)"],
                  rows=place_rows,
                  note="value [95% Wilson interval] (n). The datasets' validation harmful "
                       "requests and look-alikes of the table above, each placed where "
                       "specguard.guard.placement places the robustness suite's held-out ones, "
                       "among the turns of each of its three VALIDATION_SCENES (document: the "
                       "end of a long benign passage other than the suite's), each placement's "
                       "cells pooling the three; each tier's own balanced "
                       "threshold. Recall spread: the largest gap between two placements. The "
                       "last three columns: the balanced rule (at most 8% flagged) held in each "
                       "placement and scene, the rule training "
                       "chooses presets by since 2026-12-07 (an artifact trained since has it "
                       "as its own threshold; for one trained before, what the rule would set)."
                  )],
        readme=Readme(
            what="guard on written requests (held-out)", where="docs/results/guard.md",
            headline=(f"balanced: {b['harmful_recall']:.1%} of held-out written harmful "
                      f"requests caught, {b['lookalike_fpr']:.1%} of their look-alikes flagged "
                      f"(TF-IDF alone {base['harmful_recall']:.1%} / "
                      f"{base['lookalike_fpr']:.1%})")),
        data={"thresholds": thresholds, "figures": data, "validation": val_data,
              "validation_placements": place_data,
              "n": len(held),
              "n_harmful": int(harmful.sum())}), args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
