"""Languages the guard never trained on: leave-languages-out on MultiJail.

MultiJail's requests come in English, Chinese, Italian, Vietnamese and Arabic. For each held-
out group of languages, the fast tier's input stage is trained without those languages
(TRAIN part, the usual corpus otherwise), calibrated on VALIDATION without them, and its
recall measured on the HELD_OUT MultiJail requests in those languages, next to the shipped
artifact (which trained on all five) and the TF-IDF member alone. The English held-out
requests are the reference row.

    python bench/guard_languages.py            # ~30 min on 2 cores (e5 encodings cached)
    python bench/guard_languages.py --smoke    # CI

Writes docs/results/guard_languages.json.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("SPECGUARD_ENCODER_THREADS", "2")
LEAVE_OUT = (("vi", "ar"), ("zh", "it"))


def main() -> int:
    from specguard.data import Part
    from specguard.encoders import EmbeddingCache
    from specguard.evals.results import Readme, Result, Table, command_line, write_result
    from specguard.guard import FastChecker, GuardArtifact, Stage, load_fast_checker
    from specguard.guard.corpus import input_examples
    from specguard.guard.features import Featurizer
    from specguard.guard.train import TrainConfig, fit_stage

    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    everything = input_examples(parts=(Part.TRAIN, Part.VALIDATION, Part.HELD_OUT))
    held = [e for e in everything if e.part is Part.HELD_OUT and e.source == "multijail"]
    pool = [e for e in everything if e.part is not Part.HELD_OUT]
    if args.smoke:
        import random

        rng = random.Random(0)
        pool = rng.sample(pool, 800)
        held = held[::20]
    cache = EmbeddingCache()
    shipped = load_fast_checker()

    def lang(e) -> str:
        return next((t[5:] for t in e.tags if t.startswith("lang:")), "en")

    def recall(checker, examples) -> float | None:
        if not examples:
            return None
        scores = checker.score_units([e.text for e in examples])
        th = checker.threshold(Stage.INPUT, "balanced")
        return sum(s.p_unsafe >= th for s in scores) / len(examples)

    rows, data = [], {}
    for out in LEAVE_OUT:
        keep = [e for e in pool if lang(e) not in out]
        train = [e for e in keep if e.part is Part.TRAIN]
        val = [e for e in keep if e.part is Part.VALIDATION]
        cfg = TrainConfig(members=("tfidf", "minilm", "e5"), encoder_head="mlp",
                          member_budget={"e5": 300 if args.smoke else 6000}, cascade=False)
        fit, tfidf = fit_stage(Stage.INPUT, train, val, cfg,
                               lambda t: Featurizer(t, cache=cache),
                               say=lambda m: print(m, flush=True))
        art = GuardArtifact(f"without-{'-'.join(out)}", {Stage.INPUT: tfidf},
                            {Stage.INPUT: fit.heads}, {})
        checker = FastChecker(art, cascade=False)
        tfidf_only = FastChecker(art, members=["tfidf"])
        for language in (*out, "en"):
            ex = [e for e in held if lang(e) == language]
            r = {"n": len(ex), "without": recall(checker, ex), "tfidf_without": recall(tfidf_only, ex),
                 "shipped": recall(shipped, ex) if shipped else None}
            data[f"{'+'.join(out)}:{language}"] = r
            rows.append(["+".join(out), language, r["n"], _f(r["without"]), _f(r["tfidf_without"]),
                         _f(r["shipped"])])
    unseen = [v["without"] for k, v in data.items() if not k.endswith(":en") and v["without"] is not None]
    result = Result(
        name="guard_languages", title="Harmful requests in languages the guard never trained on",
        script="bench/guard_languages.py", command=command_line(), smoke=args.smoke,
        readme=Readme(what="guard: languages it never trained on", where="docs/results/guard.md",
                      headline=f"MultiJail held-out recall in left-out languages "
                      f"{min(unseen):.2f}-{max(unseen):.2f} at the balanced point"
                      if unseen else "no data"),
        tables=[Table(id="languages", columns=["left out of training", "language", "n",
                                               "recall (trained without them)",
                                               "TF-IDF member alone", "shipped (all languages)"],
                      rows=rows, note="held-out MultiJail requests; balanced operating point")],
        data=data)
    print(f"wrote {write_result(result, args.out)}")
    for r in rows:
        print(r)
    return 0


def _f(x) -> str:
    return "—" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    sys.exit(main())
