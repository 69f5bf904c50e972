"""How the fast tier was chosen: candidate configurations trained on the TRAIN part and
compared on the VALIDATION part only (the held-out part is for the eval suites' figures).

    python bench/guard_select.py                    # every candidate: ~30 min on 2 cores, cached
    python bench/guard_select.py --workdir DIR      # reuse the fine-tune kept in DIR
    python bench/guard_select.py --smoke            # CI: a tiny corpus, every code path

Writes docs/results/guard_select.json: per candidate, the validation figures by group at the
balanced operating point, the operating points, and training time (--only runs some of them;
the summary then holds only those).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("SPECGUARD_ENCODER_THREADS", "2")

CANDIDATES = {
    "tfidf": {"members": ("tfidf",)},
    "tfidf+minilm(linear)": {"members": ("tfidf", "minilm"), "encoder_head": "linear"},
    "tfidf+minilm(mlp)": {"members": ("tfidf", "minilm"), "encoder_head": "mlp"},
    "tfidf+minilm+e5(mlp)": {"members": ("tfidf", "minilm", "e5"), "encoder_head": "mlp"},
    "tfidf+minilm_ft": {"members": ("tfidf", "minilm_ft")},
    "tfidf+minilm_ft+e5(mlp)": {"members": ("tfidf", "minilm_ft", "e5"), "encoder_head": "mlp"},
    # How much the few hundred look-alikes and contrasts written for specguard weigh in training
    # (the shipped config's written_weight), chosen with the cheap members.
    **{f"tfidf+minilm(mlp) written x{w}": {"members": ("tfidf", "minilm"), "encoder_head": "mlp",
                                           "written_weight": float(w)} for w in (2, 3, 4)},
}


def main() -> int:
    from specguard.data import Part
    from specguard.guard.corpus import input_examples
    from specguard.guard.train import TrainConfig, fit_stage
    from specguard.guard.features import Featurizer
    from specguard.encoders import EmbeddingCache
    from specguard.guard.verdict import Stage

    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="a few hundred examples (CI)")
    ap.add_argument("--only", nargs="*", help="candidate names")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/guard_select"),
                    help="where fine-tuned classifiers are kept; candidates with the same "
                    "training units share one (the shipped artifact's workdir reuses its own)")
    ap.add_argument("--finetune-epochs", type=int, default=1,
                    help="as the shipped artifact (its card's config)")
    ap.add_argument("--render", type=Path, default=None,
                    help="rebuild the summary's table from this earlier summary (no training)")
    args = ap.parse_args()
    if args.render:
        from specguard.evals.results import read_result

        prior = read_result(args.render)
        return write_summary(prior.data["candidates"], prior.data["n_train"],
                             prior.data["n_validation"], prior.command, prior.smoke, args.out)
    def split(written_weight: float = 1.0):
        examples = input_examples(parts=(Part.TRAIN, Part.VALIDATION),
                                  written_weight=written_weight)
        if args.smoke:
            import random

            examples = random.Random(0).sample(examples, 600)
        return ([e for e in examples if e.part is Part.TRAIN],
                [e for e in examples if e.part is Part.VALIDATION])

    train, val = split()
    cache = EmbeddingCache()
    results = {}
    names = args.only or list(CANDIDATES)
    if args.smoke:
        names = ["tfidf", "tfidf+minilm(linear)", "tfidf+minilm(mlp) written x3"]
    for name in names:
        spec = CANDIDATES[name]
        train, val = split(spec.get("written_weight", 1.0))
        cfg = TrainConfig(**spec, member_budget={"e5": 300 if args.smoke else 6000},
                          finetune_epochs=1 if args.smoke else args.finetune_epochs,
                          # One workdir: the fine-tune is keyed by its units and settings, so
                          # candidates that train on the same units reuse one classifier.
                          workdir=args.workdir)
        t = time.perf_counter()
        fit, _ = fit_stage(Stage.INPUT, train, val, cfg, lambda tf: Featurizer(tf, cache=cache),
                           say=lambda m, name=name: print(f"[{name}] {m}", flush=True))
        results[name] = {"config": {k: list(v) if isinstance(v, tuple) else v
                                    for k, v in spec.items()},
                         "seconds": round(time.perf_counter() - t, 1), **fit.figures}
        v = fit.figures["validation"]
        print(f"== {name}: " + ", ".join(
            f"{g} F1={m.get('f1', '-')} R={m.get('recall', '-')} FPR={m.get('fpr', '-')}"
            for g, m in v.items()), flush=True)
    from specguard.evals.results import command_line

    return write_summary(results, len(train), len(val), command_line(), args.smoke, args.out)


def write_summary(results: dict, n_train: int, n_val: int, command: str, smoke: bool,
                  out: Path | None) -> int:
    from specguard.evals.results import Result, Table, write_result

    # (Look-alikes have their own column: the share flagged at the balanced point.)
    groups = ("harmful_requests_vs_benign_requests", "jailbreak_wrapped",
              "openai_moderation", "toxicchat", "hate", "multijail_ar")
    rows = []
    for name, r in results.items():
        v = r["validation"]
        op = r["operating_points"]["balanced"]
        rows.append([name, op["threshold"], op["lookalike_fpr"], op["harmful_request_recall"],
                     *[v.get(g, {}).get("f1", v.get(g, {}).get("recall")) for g in groups],
                     r["seconds"]])
    result = Result(
        name="guard_select", title="How the fast tier was chosen (validation part only)",
        script="bench/guard_select.py", command=command, smoke=smoke,
        tables=[Table(id="candidates", title="Candidates at their balanced operating point",
                      columns=["candidate", "threshold", "look-alikes flagged",
                               "harmful requests caught",
                               *[f"{g} (F1, or recall)" for g in groups], "train s"],
                      rows=rows, note=f"trained on {n_train} TRAIN examples, measured on "
                      f"{n_val} VALIDATION examples; train s leaves out the MiniLM fine-tune "
                      "(about 37 minutes an epoch on one core), reused from its workdir")],
        data={"n_train": n_train, "n_validation": n_val, "candidates": results})
    path = write_result(result, out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
