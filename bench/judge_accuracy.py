"""How far the answer judges agree with people, on data they never trained on or were chosen on,
with the string matcher (`match_refusal`) scored on the same items in the same run.

- refusal: the shipped judge on every held-out part (XSTest completions with human labels: the
  prompts are held out; GPTFuzz; CoCoNot preference pairs; refusal-direction completions, whose
  labels are AUTOMATIC), and leave-one-model-out on the held-out XSTest completions: the shipped
  configuration refitted without one model's answers scores that model's answers to held-out
  prompts (models and prompts never seen). Binary = XSTest's reading (full or partial refusal vs
  compliance); 3-way = complied / refused / partial.
- answer_harm: the shipped judge on every held-out part (GPTFuzz human labels; XSTest answers to
  unsafe contrast prompts; BeaverTails; refusal-direction with Llama Guard 2 labels: AUTOMATIC).
- the no-answer rule on every held-out answer (real answers it would wrongly call no answer).
- optionally (--llm BACKEND --llm-n N): `refusal_llm` through a model, on N held-out XSTest
  completions: e.g. `--llm embedded` shows why the embedded 135M model is not a judge.

    python bench/judge_accuracy.py [--llm embedded --llm-n 60]    # docs/results/judges.json
    python bench/judge_accuracy.py --smoke --out /tmp/judges.json   # CI: a tiny slice

Then `python -m specguard.evals.scoreboard` regenerates docs/results/judges.md and the README.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from specguard.data import Part  # noqa: E402
from specguard.evals.judges import JudgeContext, build_judge, no_answer_reason  # noqa: E402
from specguard.evals.judges.corpus import Task, examples  # noqa: E402
from specguard.evals.judges.train import (  # noqa: E402
    XSTEST,
    drop_prompt_duplicates,
    encode,
    held_out_figures,
    leave_one_model_out,
    refused,
    score_items,
    wilson,
)
from specguard.evals.results import Readme, Result, Table, command_line, pct, write_result  # noqa: E402


def _slice(exs, per_source: int, seed: int = 0):
    """Smoke mode: a few pairs per (source, part, label), deterministic."""
    rng = random.Random(seed)
    by: dict = {}
    for e in exs:
        by.setdefault((e.source, e.part, e.label, e.model if e.source == XSTEST else ""),
                      []).append(e)
    out = []
    for key in sorted(by, key=str):
        rows = by[key]
        out += rng.sample(rows, min(per_source, len(rows)))
    return out


def refusal_tables(judge, enc):
    cfg = judge.artifact.config
    held = held_out_figures(judge.head, enc, cfg)
    lomo = leave_one_model_out(enc, cfg, progress=lambda m: print(m, flush=True))
    per_source = Table(
        id="refusal_held_out", title="refusal: the shipped judge on every held-out part",
        columns=["source", "labels", "binary agreement", "string match (same items)",
                 "3-way agreement", "refusal recall", "string match recall"],
        rows=[[s + ("" if f["human_labels"] else " (AUTOMATIC labels)"),
               ", ".join(f"{k} {v}" for k, v in f["labels"].items()),
               pct(f["accuracy_binary"]), pct(f["baseline_accuracy_binary"]),
               pct(f["accuracy_3way"]), pct(f["refusal_recall"]),
               pct(f["baseline_refusal_recall"])] for s, f in held.items()],
        note="XSTest prompts here are held out, but the judge trained on other answers of the "
             "same three models; the leave-one-model-out table removes the model as well.")
    rows = [[m, pct(f["accuracy_binary"]), pct(f["baseline_accuracy_binary"]),
             pct(f["accuracy_3way"]), pct(f["refusal_recall"])]
            for m, f in lomo["per_model"].items()]
    p = lomo["pooled"]
    rows.append(["all three (pooled)", pct(p["accuracy_binary"]),
                 pct(p["baseline_accuracy_binary"]), pct(p["accuracy_3way"]),
                 pct(p["refusal_recall"])])
    lomo_table = Table(
        id="refusal_model_out",
        title="refusal: XSTest completions of a model and prompts the judge never saw",
        columns=["held-out model", "binary agreement", "string match (same items)",
                 "3-way agreement", "refusal recall"], rows=rows,
        note="Each row refits the shipped configuration on the training and validation parts "
             "without that model's answers (and without refusal-direction answers of the same "
             "model family), then scores that model's answers to held-out prompts against the "
             "human labels.")
    return held, lomo, [lomo_table, per_source]


def harm_tables(judge, enc):
    held = held_out_figures(judge.head, enc, judge.artifact.config)
    table = Table(
        id="harm_held_out", title="answer_harm: the shipped judge on every held-out part",
        columns=["source", "labels", "agreement", "string match read as harm (same items)",
                 "unsafe recall", "unsafe precision", "F1 (unsafe)"],
        rows=[[s + ("" if f["human_labels"] else " (AUTOMATIC labels)"),
               ", ".join(f"{k} {v}" for k, v in f["labels"].items()), pct(f["accuracy"]),
               pct(f["baseline_accuracy"]), pct(f["unsafe_recall"]),
               pct(f["unsafe_precision"]), _f1(f["f1_unsafe"])] for s, f in held.items()],
        note="The string matcher read as a harm judge (complied = unsafe) is how attack "
             "success was scored before. F1 interval: bootstrap.")
    return held, [table]


def _f1(est) -> str:
    if not est or est.get("value") is None:
        return "—"
    ci = (f" [{est['low']:.3f}, {est['high']:.3f}]" if est.get("low") is not None else "")
    return f"{est['value']:.3f}{ci} (n={est['n']})"


def no_answer_table(encs) -> Table:
    rows = []
    for name, enc in encs.items():
        held = [e for e in enc.examples if e.part is Part.HELD_OUT]
        flagged = sum(1 for e in held if no_answer_reason(e.answer))
        rows.append([name, len(held), flagged, pct(wilson(flagged, len(held)), 2)])
    return Table(id="no_answer", title="The no-answer rule on real held-out answers",
                 columns=["corpus", "answers", "called no answer", "share"], rows=rows,
                 note="Every one of these is a real answer (refusal or not): each one the rule "
                      "flags is a mistake. The corpora contain no empty or cut-off outputs, so "
                      "the rule's recall is shown by the unit tests, not here.")


async def llm_table(uri: str, n: int, enc, seed: int = 0) -> Table:
    from specguard.backends import load_backend

    backend = load_backend(uri)
    judge = build_judge("refusal_llm", JudgeContext(backend=backend, options={
        "allow_embedded": True}))
    held = [e for e in enc.examples if e.part is Part.HELD_OUT and e.source == XSTEST]
    items = random.Random(seed).sample(held, min(n, len(held)))
    from specguard.evals.judges import JudgeInput

    truth, pred, answers = [], [], []
    unparsed = 0
    t0 = time.perf_counter()
    for e in items:
        j = await judge.judge(JudgeInput(prompt=e.prompt, request=e.prompt, answer=e.answer))
        if j.label is None:
            unparsed += 1
            continue
        truth.append(e.label)
        pred.append(j.label)
        answers.append(e.answer)
    seconds = time.perf_counter() - t0
    await backend.aclose()
    s = score_items(Task.REFUSAL, truth, pred, answers)
    both = sum(refused(t) == refused(p) for t, p in zip(truth, pred))
    return Table(
        id="refusal_llm", title=f"refusal_llm through {uri} on held-out XSTest completions",
        columns=["judge", "binary agreement", "string match (same items)", "unparsed",
                 "s / item"],
        rows=[[f"refusal_llm ({uri})", pct(wilson(both, len(truth))),
               pct(s["baseline_accuracy_binary"]), unparsed,
               round(seconds / max(1, len(items)), 2)]],
        note=f"{len(items)} completions sampled (seed {seed}); unparsed answers are left out "
             "of the agreement and counted here.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="summary path (default docs/results/judges.json)")
    ap.add_argument("--smoke", action="store_true", help="a tiny slice, for CI")
    ap.add_argument("--llm", default=None, help="also score refusal_llm through this backend")
    ap.add_argument("--llm-n", type=int, default=60)
    args = ap.parse_args()
    t0 = time.perf_counter()

    refusal = build_judge("refusal", JudgeContext())
    harm = build_judge("answer_harm", JudgeContext())
    encs = {}
    for task, judge in ((Task.REFUSAL, refusal), (Task.HARM, harm)):
        # The whole corpus, as training reads it: the near-duplicate filter and the
        # leave-one-model-out fits then see exactly what the training run saw.
        exs = examples(task, None)
        if args.smoke:
            exs = _slice(exs, 3)
        enc = encode(exs, progress=print)
        enc, _ = drop_prompt_duplicates(enc)
        encs[task.value] = enc
    r_held, lomo, r_tables = refusal_tables(refusal, encs["refusal"])
    h_held, h_tables = harm_tables(harm, encs["harm"])
    tables = [*r_tables, *h_tables, no_answer_table(encs)]
    if args.llm:
        tables.append(asyncio.run(llm_table(args.llm, 4 if args.smoke else args.llm_n,
                                            encs["refusal"])))
    else:  # the page's block says how to measure one instead of showing an old figure
        tables.append(Table(
            id="refusal_llm", title="refusal_llm through a model on held-out XSTest completions",
            columns=["judge", "binary agreement", "string match (same items)", "unparsed",
                     "s / item"],
            rows=[["refusal_llm", "not measured in this run", "—", "—", "—"]],
            note="Measure one with `python bench/judge_accuracy.py --llm BACKEND --llm-n N` "
                 "(`--llm embedded --llm-n 60` shows why the judges refuse the embedded 135M "
                 "model by default; about 17 s an item on 2 shared cores)."))

    p = lomo["pooled"]
    g = h_held.get("gptfuzz_labeled_responses", {})
    headline = Table(
        id="headline", title="Agreement with human labels on data the judges never saw",
        columns=["judge", "measured on", "trained judge", "string match (same items, same run)"],
        rows=[["refusal", "XSTest completions, leave one model out, held-out prompts",
               pct(p["accuracy_binary"]), pct(p["baseline_accuracy_binary"])],
              ["answer_harm", "GPTFuzz responses to held-out questions (jailbroken or not)",
               pct(g.get("accuracy")), pct(g.get("baseline_accuracy"))]])
    cards = Table(
        id="cards", title="What the judges are",
        columns=["judge", "configuration (chosen on validation)", "trained on (pairs)"],
        rows=[[name, j.artifact.config.short(),
               ", ".join(f"{r['source']} {r['part']} {r['n']}"
                         + ("" if r["human_labels"] else " (automatic)")
                         for r in j.artifact.trained_on)]
              for name, j in (("refusal", refusal), ("answer_harm", harm))])
    target = 0.93
    readme = Readme(
        what="answer judges vs human labels", where="docs/results/judges.md",
        headline=f"refusal judge {pct(p['accuracy_binary'])} agreement on XSTest completions "
                 f"of models and prompts it never saw (string match {pct(p['baseline_accuracy_binary'])}; "
                 f"target {target:.0%}); answer_harm {pct(g.get('accuracy'))} on held-out "
                 f"GPTFuzz (string match {pct(g.get('baseline_accuracy'))})")
    result = Result(
        name="judges", title="Answer judges against human labels",
        script="bench/judge_accuracy.py", command=command_line(), smoke=args.smoke,
        readme=readme, tables=[headline, cards, *tables],
        data={"refusal": {"held_out": r_held, "leave_one_model_out": lomo},
              "harm": {"held_out": h_held}, "target": target,
              "seconds": round(time.perf_counter() - t0, 1)})
    path = write_result(result, args.out)
    print(f"wrote {path} in {time.perf_counter() - t0:.0f}s")
    print(headline.rows)


if __name__ == "__main__":
    main()
