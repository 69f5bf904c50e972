"""Labelled (request, answer) pairs for the trained answer judges, read through specguard.data
with each record's part of the shared split (train / validation / held_out), so a judge never
trains or is chosen on the pairs its figures are measured on.

Refusal corpus (labels complied | refused | partial):
- xstest_completions: human labels on GPT-4, Llama-2-70b-chat and Mistral-7B-Instruct answers.
- gptfuzz_labeled_responses: human "jailbroken" = complied; not jailbroken = refused (the
  answer did not give what was asked, XSTest's definition of a refusal).
- coconot preference: `chosen` = complied, `rejected` (an over-refusal) = refused.
- refusal_direction_completions: AUTOMATIC labels (the upstream substring matcher).

Harm corpus (labels safe | unsafe: did the answer give what a harmful request asked for?):
- gptfuzz_labeled_responses: human, jailbroken = unsafe.
- xstest_completions: human refusal labels on unsafe contrast prompts (complied = unsafe,
  refused = safe; partial is left out: neither); every answer to a safe prompt is safe.
- beavertails_sample: unsafe (hand-validated) answers.
- refusal_direction_completions: AUTOMATIC, Llama Guard 2 on JailbreakBench prompts; answers
  to its harmless prompts are safe.
- safety_tuned_llamas subset training: the safe reference answers (train-only subset).
- coconot preference: both answers to benign requests are safe.
- diasafety: human, the response's safety in its dialogue context (a broader notion: offered
  to the selection, which decides whether it helps).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from specguard.data import Part, group_of, in_part, load


class Task(StrEnum):
    REFUSAL = "refusal"
    HARM = "harm"


REFUSAL_LABELS = ("complied", "partial", "refused")
HARM_LABELS = ("safe", "unsafe")
LABELS = {Task.REFUSAL: REFUSAL_LABELS, Task.HARM: HARM_LABELS}


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str
    label: str
    source: str  # dataset name (subset after a colon where it matters)
    model: str  # which model wrote the answer
    human: bool  # label by people (False: automatic)
    part: Part
    group: str  # the split group: pairs of one prompt family share it
    record_id: str
    # Made from a real pair by a documented transformation (see `with_openers`): trains and
    # validates only, never in a figure.
    synthetic: bool = False


def _parts(records: list[Any], root: Any) -> dict[str, Part]:
    """record key -> part, through `in_part` (training and validation leave out records that
    repeat an evaluation record)."""
    out: dict[str, Part] = {}
    for part in Part:
        for r in in_part(records, part, data_root=root):
            out[f"{r.subset}:{r.id}"] = part
    return out


def _examples(records: list[Any], root: Any, make) -> list[Example]:
    parts = _parts(records, root)
    out: list[Example] = []
    for r in records:
        part = parts.get(f"{r.subset}:{r.id}")
        if part is None:  # a near-duplicate of an evaluation record: in no part
            continue
        for ex in make(r):
            out.append(replace(ex, part=part, group=f"{r.source}:{group_of(r)}",
                               record_id=f"{r.source}/{r.subset}/{r.id}"))
    return out


def _ex(prompt: str, answer: str, label: str, source: str, model: str, human: bool) -> Example:
    return Example(prompt=prompt, answer=answer, label=label, source=source, model=model,
                   human=human, part=Part.TRAIN, group="", record_id="")


REFUSAL_SOURCES = ("xstest_completions", "gptfuzz_labeled_responses", "coconot_preference",
                   "refusal_direction_completions")
HARM_SOURCES = ("gptfuzz_labeled_responses", "xstest_completions", "beavertails_sample",
                "refusal_direction_completions", "safety_tuned_llamas_training",
                "coconot_preference", "diasafety")


def refusal_examples(root: str | Path | None = None,
                     sources: Iterable[str] = REFUSAL_SOURCES) -> list[Example]:
    sources = set(sources)
    out: list[Example] = []
    if "xstest_completions" in sources:
        out += _examples(load("xstest_completions", data_dir_override=root), root, lambda r: [
            _ex(r.text, r.answer, r.label, "xstest_completions", r.model, True)])
    if "gptfuzz_labeled_responses" in sources:
        out += _examples(load("gptfuzz_labeled_responses", data_dir_override=root), root,
                         lambda r: [_ex(r.text, r.answer, "complied" if r.answer_harmful
                                        else "refused", "gptfuzz_labeled_responses", r.model,
                                        True)])
    if "coconot_preference" in sources:
        out += _examples(load("coconot", subset="preference", data_dir_override=root), root,
                         lambda r: [_ex(r.text, r.chosen or "", "complied", "coconot_preference",
                                        r.chosen_model or "gpt-4", True),
                                    _ex(r.text, r.rejected or "", "refused",
                                        "coconot_preference", r.rejected_model or "unknown",
                                        True)])
    if "refusal_direction_completions" in sources:
        out += _examples(load("refusal_direction_completions", data_dir_override=root), root,
                         lambda r: [_ex(r.text, r.answer, r.label,
                                        "refusal_direction_completions", r.model, False)])
    return [e for e in out if e.answer.strip()]


def harm_examples(root: str | Path | None = None,
                  sources: Iterable[str] = HARM_SOURCES) -> list[Example]:
    sources = set(sources)
    out: list[Example] = []
    if "gptfuzz_labeled_responses" in sources:
        out += _examples(load("gptfuzz_labeled_responses", data_dir_override=root), root,
                         lambda r: [_ex(r.text, r.answer, "unsafe" if r.answer_harmful
                                        else "safe", "gptfuzz_labeled_responses", r.model,
                                        True)])
    if "xstest_completions" in sources:
        def xs(r):
            if not r.harmful:
                return [_ex(r.text, r.answer, "safe", "xstest_completions", r.model, True)]
            if r.label == "partial":
                return []
            return [_ex(r.text, r.answer, "unsafe" if r.label == "complied" else "safe",
                        "xstest_completions", r.model, True)]
        out += _examples(load("xstest_completions", data_dir_override=root), root, xs)
    if "beavertails_sample" in sources:
        out += _examples(load("beavertails_sample", data_dir_override=root), root, lambda r: [
            _ex(r.prompt, r.response, "unsafe", "beavertails_sample", "beavertails", True)])
    if "refusal_direction_completions" in sources:
        def rd(r):
            if not r.harmful:
                return [_ex(r.text, r.answer, "safe", "refusal_direction_completions",
                            r.model, False)]
            if r.answer_harmful is None:
                return []
            return [_ex(r.text, r.answer, "unsafe" if r.answer_harmful else "safe",
                        "refusal_direction_completions", r.model, False)]
        out += _examples(load("refusal_direction_completions", data_dir_override=root), root,
                         rd)
    if "safety_tuned_llamas_training" in sources:
        out += _examples(load("safety_tuned_llamas", subset="training", data_dir_override=root),
                         root, lambda r: [_ex(r.text, r.safe_response or "", "safe",
                                              "safety_tuned_llamas_training", "gpt-3.5-turbo",
                                              True)])
    if "coconot_preference" in sources:
        out += _examples(load("coconot", subset="preference", data_dir_override=root), root,
                         lambda r: [_ex(r.text, r.chosen or "", "safe", "coconot_preference",
                                        r.chosen_model or "gpt-4", True),
                                    _ex(r.text, r.rejected or "", "safe", "coconot_preference",
                                        r.rejected_model or "unknown", True)])
    if "diasafety" in sources:
        out += _examples(load("diasafety", data_dir_override=root), root, lambda r: [
            _ex(r.text, r.answer, r.label, "diasafety", r.model, True)])
    return [e for e in out if e.answer.strip()]


# Openers that sound like refusals but start an answer (the string matcher reads each as a
# refusal): the issue's failures ("No. Step 1 ...", "Sorry for the wait! Step 1 ...", "As an
# AI, I'm happy to help: first ...") and their kind.
MISLEADING_OPENERS = (
    "No. ", "No, ", "No problem! ", "Sorry for the wait! ", "Sorry about that. ",
    "As an AI, I'm happy to help: ", "As an AI language model, I can help with this. ",
    "I'm sorry to hear that. ", "Unfortunately, this takes some effort. ",
    "I cannot stress this enough: ", "I can't wait to help! ",
)


def with_openers(exs: list[Example]) -> list[Example]:
    """For every complied answer of the training and validation parts, the same answer behind
    a misleading opener (round-robin over MISLEADING_OPENERS), still complied: teaches that the
    opener alone does not decide. Synthetic, so never in a held-out figure."""
    out = []
    complied = [e for e in exs if e.label == "complied" and e.part is not Part.HELD_OUT
                and not e.synthetic]
    for i, e in enumerate(complied):
        opener = MISLEADING_OPENERS[i % len(MISLEADING_OPENERS)]
        out.append(replace(e, answer=opener + e.answer.lstrip(), synthetic=True,
                           record_id=e.record_id + "+opener"))
    return out


def examples(task: Task | str, root: str | Path | None = None,
             sources: Iterable[str] | None = None) -> list[Example]:
    task = Task(task)
    if task is Task.REFUSAL:
        exs = refusal_examples(root, sources or REFUSAL_SOURCES)
        return exs + with_openers(exs)
    return harm_examples(root, sources or HARM_SOURCES)


def describe(examples: list[Example]) -> list[dict[str, Any]]:
    """Per (source, part): counts by label and whether the labels are human: what a model card
    lists as its data (counts only, never text)."""
    rows: dict[tuple[str, str], Counter] = {}
    human: dict[str, bool] = {}
    for e in examples:
        source = e.source + (" + misleading opener (synthetic)" if e.synthetic else "")
        rows.setdefault((source, e.part.value), Counter())[e.label] += 1
        human[source] = e.human
    return [{"source": s, "part": p, "n": sum(c.values()), "labels": dict(sorted(c.items())),
             "human_labels": human[s]} for (s, p), c in sorted(rows.items())]
