"""Benign passages in training: does a pasted document stop flagging itself? (validation part)

The input check scores every paragraph and window of a long turn and decides on the riskiest,
so an ordinary document is flagged when any one of its hundreds of units reads as harm; the
classifier had only seen requests and short comments (held out: 38% of 100 KB documents of
benign answers flagged on their own; docs/results/guard.md, "A request inside a long
document"). `specguard guard train --passages` adds paragraphs of answers to benign prompts,
and the places where two answers meet, to the training and validation parts.

This script is the choice, and reads the validation part only: documents of validation answers
(every non-refusal answer to a benign prompt from the passage sources, not filtered by any
checker); validation harmful requests and look-alikes placed in the middle of one, in a
paragraph of their own; and the same requests glued by a line break to the end of benign prose
(five copies of a validation scene's passage), where only windows that mix the request with the
prose read it: the walk-around a classifier taught that prose is benign invites.
Each artifact given is compared with the shipped one in the same run, beside the validation
figures of its model card (balanced threshold).

    python bench/guard_passages.py --compare NAME=FOLDER [...]
    python bench/guard_passages.py --smoke     # CI: the shipped artifact, two small documents

Writes docs/results/guard_passages.json.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from contextlib import contextmanager
from pathlib import Path

from guard_long_documents import FOLLOW_UP, benign_exchanges, compared, document, holds, placed

GLUED_COPIES = 5  # copies of a validation scene's passage (placement.py; 2-3 KB each)
SIZES = ((10_000, "10 KB"), (40_000, "40 KB"))
REQUEST_SOURCES = ("harmbench", "advbench", "simple_safety_tests", "jbb_artifacts",
                   "harmfulqa_dangerousqa", "safety_tuned_llamas")


# How a turn is cut into units: as served (windows, and each paragraph and line of a turn
# that has several), as before 2026-12-08 (no lines), or with each sentence read alone too
# (an experiment). The other readings are patched in here, like guard_long_documents'
# ends_only.
READINGS = ("as served", "without lines (before 2026-12-08)")
SENTENCES = "sentences too"
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


@contextmanager
def read_as(reading: str):
    from specguard.guard import conversation, features

    if reading not in READINGS + (SENTENCES,):
        raise SystemExit(f"unknown reading {reading!r}; known: {READINGS + (SENTENCES,)}")
    real = conversation.lines

    def lines(text: str):
        if reading == READINGS[1]:
            return []
        sentences = [t.strip() for t in SENTENCE_BREAK.split(text) if t.strip()]
        return real(text) + ([(100_000 + j, t) for j, t in enumerate(sentences)]
                             if len(sentences) >= 2 else [])

    if reading != READINGS[0]:
        conversation.lines = lines
    features.clear_windows_cache()
    try:
        yield
    finally:
        conversation.lines = real
        features.clear_windows_cache()


def main() -> int:
    from specguard.data import Part
    from specguard.evals.results import Readme, Result, Table, command_line, write_result
    from specguard.guard import CheckRequest, FastChecker, Label, Stage, load_fast_checker
    from specguard.guard.corpus import (
        PASSAGE_SOURCES,
        input_examples,
    )
    from specguard.guard.placement import VALIDATION_SCENES
    from specguard.guard.train import _is_lookalike
    from specguard.types import assistant, user

    ap = argparse.ArgumentParser()
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=FOLDER",
                    help="an artifact folder to compare with the shipped one")
    ap.add_argument("--readings", default=",".join(READINGS),
                    help=f"how turns are cut into units, comma-separated: {', '.join(READINGS)}")
    ap.add_argument("--n", type=int, default=60, help="requests and look-alikes placed")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rng = random.Random(0)
    val = input_examples(parts=(Part.VALIDATION,), augment=False)
    harmful = [e.text for e in val if e.harmful and e.source in REQUEST_SOURCES]
    lookalikes = [e.text for e in input_examples(parts=(Part.VALIDATION,)) if _is_lookalike(e)
                  and e.source in ("xstest", "coconot")]
    exchanges = benign_exchanges(Part.VALIDATION)
    for pool in (harmful, lookalikes, exchanges):
        rng.shuffle(pool)
    if args.smoke:
        exchanges = exchanges[:12]
    answers = [a for _, a in exchanges]
    n = 4 if args.smoke else args.n
    harmful, lookalikes = harmful[:n], lookalikes[:n]
    sizes = SIZES[:1] if args.smoke else SIZES
    shipped = load_fast_checker()
    if shipped is None:
        raise SystemExit("no shipped fast-tier artifact")
    artifacts = {"shipped": shipped.artifact}
    artifacts.update(compared(args.compare))
    docs = {}
    for size, label in sizes:
        k = 2 if args.smoke else max(1, sum(len(a) + 2 for a in answers) // size)
        share = max(1, len(answers) // k)
        docs[label] = [document(answers[j * share:(j + 1) * share], size) for j in range(k)]
    def measure(art) -> dict:
        checker = FastChecker(art)

        def check(texts):
            return checker.verdicts([CheckRequest(stage=Stage.INPUT, messages=[user(t)])
                                     for t in texts])

        def caught(texts) -> int:
            return sum(v.label is Label.UNSAFE and holds(v, t, r) for v, t, r
                       in zip(check(texts), texts, harmful, strict=True))

        cell = {"threshold": checker.threshold(Stage.INPUT)}
        # a chat's next turn: the benign answer comes back as the earlier assistant turn
        cell["earlier_answer_flagged"] = sum(v.label is Label.UNSAFE for v in checker.verdicts([
            CheckRequest(stage=Stage.INPUT, messages=[user(q), assistant(a), user(FOLLOW_UP)])
            for q, a in exchanges])) / len(exchanges)
        for label, ds in docs.items():
            cell[f"documents_flagged_{label}"] = sum(
                v.label is Label.UNSAFE for v in check(ds)) / len(ds)
        doc = docs[sizes[0][1]][0]
        cell["caught_middle"] = caught([placed(doc, r, "middle") for r in harmful]) / n
        cell["caught_bare"] = sum(v.label is Label.UNSAFE for v in check(harmful)) / n
        # the walk-around a passage-trained classifier invites: the request glued to the last
        # paragraph of benign prose (a line break, not a blank line), read only in windows
        # that mix it with the prose, unless lines are read alone
        cell["caught_glued"] = sum(
            caught(["\n".join([scene.document] * GLUED_COPIES) + "\n" + r for r in harmful])
            for scene in VALIDATION_SCENES) / (n * len(VALIDATION_SCENES))
        cell["lookalikes_middle"] = sum(
            v.label is Label.UNSAFE for v in check([placed(doc, r, "middle")
                                                    for r in lookalikes])) / n
        fig = art.card.get("validation", {}).get("input", {})
        bal = fig.get("operating_points", {}).get("balanced", {})
        cell["card"] = {k: bal.get(k) for k in ("harmful_request_recall", "lookalike_fpr")}
        for g in ("openai_moderation", "toxicchat"):
            cell["card"][f"{g}_f1"] = (fig.get("validation", {}).get(g) or {}).get("f1")
        return cell

    rows, data = [], {}
    for reading in args.readings.split(","):
        for name, art in artifacts.items():
            with read_as(reading):
                cell = measure(art)
            data.setdefault(reading, {})[name] = cell
            rows.append([name, reading, round(cell["threshold"], 4),
                         f"{cell['earlier_answer_flagged']:.2f}"]
                        + [f"{cell[f'documents_flagged_{lab}']:.2f} of {len(docs[lab])}"
                           for _, lab in sizes]
                        + [f"{cell[k]:.2f}" for k in ("caught_middle", "caught_glued",
                                                      "caught_bare", "lookalikes_middle")]
                        + list(cell["card"].values()))
            print(" | ".join(str(x) for x in rows[-1]), flush=True)
    cols = (["artifact", "units", "balanced threshold",
             "benign chats flagged (the answer as the earlier assistant turn)"]
            + [f"benign {lab} documents flagged" for _, lab in sizes]
            + [f"harmful requests caught, middle of a {sizes[0][1]} document",
               "... at the end of a passage's last paragraph (no blank line)", "... sent bare",
               f"look-alikes flagged, middle of a {sizes[0][1]} document",
               "card: harmful requests caught", "card: look-alikes flagged",
               "card: OpenAI moderation F1", "card: ToxicChat F1"])
    served = data[READINGS[0]]["shipped"]
    head = (f"validation: {served['earlier_answer_flagged']:.0%} of benign chats flagged on "
            f"their earlier answer, {served['caught_glued']:.0%} of harmful requests written "
            "into prose caught (shipped, as served)")
    result = Result(
        name="guard_passages", title="Benign passages in training (validation part)",
        script="bench/guard_passages.py", command=command_line(), smoke=args.smoke,
        readme=Readme(what="guard on pasted benign documents (validation)",
                      where="docs/results/guard.md", headline=head),
        tables=[Table(id="passages", title=("Benign answers, documents and requests written "
                                            "into prose, by artifact and reading"), columns=cols,
                      rows=rows, note=(
                          f"{len(answers)} validation answers (non-refusals to benign prompts, "
                          f"{', '.join(PASSAGE_SOURCES)}), each sent back as the assistant "
                          "turn of a chat whose next user turn asks a benign follow-up, and "
                          "cut into disjoint documents; "
                          f"{n} validation harmful requests ({', '.join(REQUEST_SOURCES)}) and "
                          f"{n} validation look-alikes (XSTest, CoCoNot) in the middle of the "
                          "first document, and glued by a line break to the end of five copies "
                          "of each validation scene's passage (lighthouses, libraries, honey), a "
                          "catch counted only where the flagging unit holds the request; balanced threshold; card figures are the artifacts' "
                          "own validation figures"))],
        data={"readings": data, "answers": len(answers)})
    path = write_result(result, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
