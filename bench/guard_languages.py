"""Languages the guard never trained on: leave-languages-out on MultiJail.

MultiJail's requests come in English, Chinese, Italian, Vietnamese and Arabic. For each held-
out group of languages, the fast tier's input stage is trained without those languages
(TRAIN part, the usual corpus otherwise), calibrated on VALIDATION without them, and its
recall measured on the HELD_OUT MultiJail requests in those languages, next to the shipped
artifact (which trained on all five) and the TF-IDF member alone. The English held-out
requests are the reference row.

Recall alone would reward a guard that flags every text it cannot read, so each row also says
how many benign requests in that language are flagged: the ones written for specguard in that
language (runtime/guard/multilingual.py; left out of training with the language), and, in a
second table, the benign requests in languages no model here ever trained on (EVAL_BENIGN).
A third table reads harmful requests written in those languages (EVAL_HARMFUL) next to them.

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
    from specguard.guard import CheckRequest, FastChecker, GuardArtifact, Stage, load_fast_checker
    from specguard.guard.corpus import input_examples
    from specguard.guard.features import Featurizer
    from specguard.guard.train import TrainConfig, fit_stage

    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from specguard.guard.multilingual import EVAL_BENIGN, EVAL_HARMFUL
    from specguard.types import user

    everything = input_examples(parts=(Part.TRAIN, Part.VALIDATION, Part.HELD_OUT))
    written = [e for e in everything if e.source == "written:multilingual"]
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

    def flagged(checker, texts: list[str]) -> float | None:
        """The share of `texts` the checker flags at its balanced point (each text checked as a
        user turn, the way a request arrives)."""
        if not texts:
            return None
        verdicts = checker.verdicts([CheckRequest(stage=Stage.INPUT, messages=[user(t)])
                                     for t in texts])
        return sum(v.label.value == "unsafe" for v in verdicts) / len(texts)

    def recall(checker, examples) -> float | None:
        return flagged(checker, [e.text for e in examples])

    rows, data, eval_rows = [], {}, {lang: [lang, len(t)] for lang, t in EVAL_BENIGN.items()}
    for lang_, texts in EVAL_BENIGN.items():
        rate = flagged(shipped, list(texts)) if shipped else None
        eval_rows[lang_].append(_f(rate))
        data[f"eval_benign:{lang_}"] = {"n": len(texts), "shipped": rate}
    for out in LEAVE_OUT:
        keep = [e for e in pool if lang(e) not in out]
        train = [e for e in keep if e.part is Part.TRAIN]
        val = [e for e in keep if e.part is Part.VALIDATION]
        cfg = TrainConfig(members=("tfidf", "minilm", "e5"), encoder_head="mlp",
                          cascade=False, **({"member_budget": {"e5": 300}} if args.smoke else {}))
        fit, tfidf = fit_stage(Stage.INPUT, train, val, cfg,
                               lambda t: Featurizer(t, cache=cache),
                               say=lambda m: print(m, flush=True))
        art = GuardArtifact(f"without-{'-'.join(out)}", {Stage.INPUT: tfidf},
                            {Stage.INPUT: fit.heads}, {})
        checker = FastChecker(art, cascade=False)
        tfidf_only = FastChecker(art, members=["tfidf"])
        for language in (*out, "en"):
            ex = [e for e in held if lang(e) == language]
            benign = [e.text for e in written if lang(e) == language]
            r = {"n": len(ex), "without": recall(checker, ex), "tfidf_without": recall(tfidf_only, ex),
                 "shipped": recall(shipped, ex) if shipped else None, "n_benign": len(benign),
                 "benign_flagged_without": flagged(checker, benign),
                 "benign_flagged_shipped": flagged(shipped, benign) if shipped else None}
            data[f"{'+'.join(out)}:{language}"] = r
            rows.append(["+".join(out), language, r["n"], _f(r["without"]), _f(r["tfidf_without"]),
                         _f(r["shipped"]), r["n_benign"] or "—",
                         _f(r["benign_flagged_without"]), _f(r["benign_flagged_shipped"])])
        for language, texts in EVAL_BENIGN.items():
            rate = flagged(checker, list(texts))
            eval_rows[language].append(_f(rate))
            data.setdefault(f"eval_benign:{language}", {})[f"without_{'+'.join(out)}"] = rate
    # Languages no model here trained on, both ways: the shipped artifact and its TF-IDF member
    # (the baseline, same run).
    unseen_rows, all_h, all_b = [], {"shipped": [], "tfidf": []}, {"shipped": [], "tfidf": []}
    if shipped:
        shipped_tfidf = FastChecker(shipped.artifact, members=["tfidf"])
        for language, harmful in EVAL_HARMFUL.items():
            benign = list(EVAL_BENIGN.get(language, ()))
            r = {"n_harmful": len(harmful), "n_benign": len(benign)}
            for name, checker in (("shipped", shipped), ("tfidf", shipped_tfidf)):
                r[f"caught_{name}"] = flagged(checker, list(harmful))
                r[f"benign_flagged_{name}"] = flagged(checker, benign)
                all_h[name].append(r[f"caught_{name}"] * len(harmful))
                all_b[name].append(r[f"benign_flagged_{name}"] * len(benign))
            data[f"eval_unseen:{language}"] = r
            unseen_rows.append([language, len(harmful), _f(r["caught_shipped"]),
                                _f(r["caught_tfidf"]), len(benign),
                                _f(r["benign_flagged_shipped"]), _f(r["benign_flagged_tfidf"])])
        nh = sum(len(h) for h in EVAL_HARMFUL.values())
        nb = sum(len(EVAL_BENIGN.get(k, ())) for k in EVAL_HARMFUL)
        unseen_rows.append(["all", nh, _f(sum(all_h["shipped"]) / nh), _f(sum(all_h["tfidf"]) / nh),
                            nb, _f(sum(all_b["shipped"]) / nb), _f(sum(all_b["tfidf"]) / nb)])
    unseen = [v["without"] for k, v in data.items() if not k.endswith(":en")
              and not k.startswith("eval_") and v.get("without") is not None]
    result = Result(
        name="guard_languages", title="Harmful requests in languages the guard never trained on",
        script="bench/guard_languages.py", command=command_line(), smoke=args.smoke,
        readme=Readme(what="guard: languages it never trained on", where="docs/results/guard.md",
                      headline=f"MultiJail held-out recall in left-out languages "
                      f"{min(unseen):.2f}-{max(unseen):.2f} at the balanced point"
                      if unseen else "no data"),
        tables=[Table(id="languages", columns=["left out of training", "language", "n",
                                               "recall (trained without them)",
                                               "TF-IDF member alone", "shipped (all languages)",
                                               "benign n", "benign flagged (trained without)",
                                               "benign flagged (shipped)"],
                      rows=rows, note="held-out MultiJail requests and the benign requests "
                      "written in that language; balanced operating point"),
                Table(id="eval_benign", title="Benign requests in languages never trained on",
                      columns=["language", "n", "flagged (shipped)",
                               *[f"flagged (trained without {'+'.join(o)})" for o in LEAVE_OUT]],
                      rows=list(eval_rows.values()),
                      note="runtime/guard/multilingual.py EVAL_BENIGN: written for specguard, "
                      "never trained on; balanced operating point"),
                Table(id="eval_unseen", title="Languages never trained on, both ways",
                      columns=["language", "harmful n", "harmful caught (shipped)",
                               "harmful caught (TF-IDF member alone)", "benign n",
                               "benign flagged (shipped)", "benign flagged (TF-IDF member alone)"],
                      rows=unseen_rows,
                      note="runtime/guard/multilingual.py EVAL_HARMFUL and EVAL_BENIGN: the same "
                      "ten harmful requests and ten benign ones written for specguard in each "
                      "language, never trained on; balanced operating point")],
        data=data)
    print(f"wrote {write_result(result, args.out)}")
    for r in rows:
        print(r)
    return 0


def _f(x) -> str:
    return "—" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    sys.exit(main())
