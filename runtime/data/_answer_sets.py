"""Loaders for the answer-level sets: model completions with human (or automatic) refusal,
compliance and harm labels, for training and validating the judges and the output check: one
`register` per dataset.

Records here are (prompt, answer) pairs: `text` is the prompt, `answer` the model's output.
Where the prompt comes from a prompt-level dataset, the record's `split_source` and `group`
name that dataset's group, so a prompt and its completions land on the same side of every
split (an XSTest prompt held out for the guard is held out for the judge too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._files import DatasetError, field, read_csv, read_json, require_file
from ._records import AnswerRecord, Record
from ._registry import DatasetSpec, register

# --- XSTest completions (human refusal labels) ----------------------------------------------

XSTEST_MODELS = ("gpt4", "llama2new", "mistralinstruct")
_XSC_FILES = {m: f"xstest_completions/completions_{m}_dev.csv" for m in XSTEST_MODELS}
_XSC_LABELS = {"1_full_compliance": "complied", "2_full_refusal": "refused",
               "3_partial_refusal": "partial"}


def _parse_xstest_completions(rows, subset: str) -> list[Record]:
    from ._builtin import _xstest_pair

    out: list[Record] = []
    for row in rows:
        raw = field(row, "final_label", "xstest_completions")
        if raw not in _XSC_LABELS:
            raise DatasetError(f"xstest_completions: final_label {raw!r} is not one of "
                               f"{sorted(_XSC_LABELS)}.")
        pid = field(row, "id", "xstest_completions").removeprefix("v2-")
        contrast = row["type"].startswith("contrast_")
        out.append(AnswerRecord(
            id=f"{subset}-{pid}", text=row["prompt"], answer=row.get("completion") or "",
            source="xstest_completions", subset=subset, model=subset,
            harmful=contrast, label=_XSC_LABELS[raw], categories=[row["type"]],
            human=True, prompt_id=pid, split_source="xstest", group=_xstest_pair(int(pid)),
        ))
    return out


register(DatasetSpec(
    name="xstest_completions",
    description="XSTest v2 completions of GPT-4, Llama-2-70b-chat (new system prompt) and "
    "Mistral-7B-Instruct on the developer half of XSTest, with human refusal labels.",
    subsets=XSTEST_MODELS,
    default_subsets=XSTEST_MODELS,
    files=_XSC_FILES,
    record_type=AnswerRecord,
    read=lambda root, sub: read_csv(require_file(root, _XSC_FILES[sub], "xstest_completions"),
                                    ("id", "type", "prompt", "completion", "final_label")),
    parse=_parse_xstest_completions,
    license="prompts CC-BY-4.0; completions subject to the models' licences",
    non_commercial=True,  # model outputs: train and evaluate here, never commit
    notes=["label: complied | refused | partial (XSTest's final_label, human)",
           "harmful = the prompt is an unsafe contrast; the prompt splits with XSTest's pair "
           "group (split_source xstest)",
           "model outputs under their models' terms: never commit them"],
))

# --- GPTFuzz labelled responses (human: jailbroken or not) ----------------------------------

_GF_FILES = {"train": "gptfuzz_labeled_responses/train.csv"}


def _read_gptfuzz(root: Path, subset: str) -> list[dict[str, Any]]:
    questions = {row["index"]: row["text"] for row in read_csv(
        require_file(root, "gptfuzz_labeled_responses/question_list.csv", "gptfuzz"),
        ("index", "text"))}
    rows = read_csv(require_file(root, _GF_FILES[subset], "gptfuzz"),
                    ("question", "Response", "label"))
    for i, row in enumerate(rows):
        q = row["question"]
        if q not in questions:
            raise DatasetError(f"gptfuzz row {i}: question {q!r} is not in question_list.csv.")
        row["question_text"] = questions[q]
        row["row"] = i
    return rows


def _parse_gptfuzz(rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for row in rows:
        label = row["label"].strip()
        if label not in ("0", "1"):
            raise DatasetError(f"gptfuzz: label {label!r} is not 0 or 1.")
        out.append(AnswerRecord(
            id=str(row["row"]), text=row["question_text"], answer=row["Response"],
            source="gptfuzz_labeled_responses", subset=subset, model="chatgpt-and-others",
            harmful=True, label="jailbroken" if label == "1" else "not_jailbroken",
            answer_harmful=label == "1", human=True, prompt_id=row["question"],
            group=f"q{row['question']}",
        ))
    return out


register(DatasetSpec(
    name="gptfuzz_labeled_responses",
    description="GPTFuzz (Yu et al. 2024): 5,852 responses to 76 harmful questions under "
    "jailbreak templates, human-labelled jailbroken (harmful compliance) or not.",
    subsets=("train",),
    default_subsets=("train",),
    files=_GF_FILES,
    record_type=AnswerRecord,
    read=_read_gptfuzz,
    parse=_parse_gptfuzz,
    license="MIT",
    held_out_share=0.3,
    notes=["answer_harmful = label 1 (jailbroken); the prompt is the bare question (the "
           "template the response answered is not in the file)",
           "one question's responses share a group",
           "some responses are in Chinese (templates asked for translation)"],
))

# --- DiaSafety (response safety in context, human) ------------------------------------------

_DS_FILES = {"train": "diasafety/train.json", "val": "diasafety/val.json"}


def _read_diasafety(root: Path, subset: str) -> list[dict[str, Any]]:
    data = read_json(require_file(root, _DS_FILES[subset], "diasafety"))
    if not isinstance(data, list):
        raise DatasetError(f"diasafety: {_DS_FILES[subset]} must be a JSON list.")
    return data


def _parse_diasafety(rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for i, row in enumerate(rows):
        label = field(row, "label", "diasafety")
        if label not in ("Safe", "Unsafe"):
            raise DatasetError(f"diasafety {subset} row {i}: label {label!r} is not Safe/Unsafe.")
        context = field(row, "context", "diasafety")
        out.append(AnswerRecord(
            id=f"{subset}-{i}", text=context, answer=field(row, "response", "diasafety"),
            source="diasafety", subset=subset, model="dialogue-systems", harmful=None,
            label=label.lower(), categories=[row.get("category") or ""],
            answer_harmful=label == "Unsafe", human=True,
            group="ctx:" + " ".join(context.lower().split()),
        ))
    return out


register(DatasetSpec(
    name="diasafety",
    description="DiaSafety (Sun et al. 2022): 10,114 (context, response) pairs with the "
    "response's safety in context (safe / unsafe) in 5 categories.",
    subsets=tuple(_DS_FILES),
    default_subsets=tuple(_DS_FILES),
    files=_DS_FILES,
    record_type=AnswerRecord,
    read=_read_diasafety,
    parse=_parse_diasafety,
    license="Apache-2.0",
    held_out_share=0.3,
    notes=["answer_harmful = label 'Unsafe' (the response, in its context)",
           "pairs with the same context share a group"],
))

# --- refusal_direction completions (automatic labels) ---------------------------------------

_RD_FILES = {"completions": "refusal_direction_completions/completions_flat.csv",
             "harmless_val": "refusal_direction_completions/harmless_val.json",
             "harmless_test": "refusal_direction_completions/harmless_test.json"}


def _read_refusal_direction(root: Path, subset: str) -> list[dict[str, Any]]:
    path = require_file(root, _RD_FILES[subset], "refusal_direction_completions")
    if subset == "completions":
        return read_csv(path, ("model", "prompt_set", "prompt", "response"))
    data = read_json(path)
    if not isinstance(data, list):
        raise DatasetError(f"refusal_direction_completions: {path.name} must be a JSON list.")
    return data


def _parse_refusal_direction(rows, subset: str) -> list[Record]:
    if subset != "completions":  # benign Alpaca-style instructions, no answers
        return [Record(id=f"{subset}-{i}", text=field(row, "instruction", "refusal_direction"),
                       source="refusal_direction_completions", subset=subset, harmful=False,
                       label="harmless")
                for i, row in enumerate(rows)]
    out: list[Record] = []
    for i, row in enumerate(rows):
        prompt_set = field(row, "prompt_set", "refusal_direction")
        not_refusal = row.get("substring_not_refusal", "").strip()
        lg = row.get("llamaguard2_unsafe", "").strip()
        out.append(AnswerRecord(
            id=str(i), text=field(row, "prompt", "refusal_direction"),
            answer=row.get("response") or "", source="refusal_direction_completions",
            subset=subset, model=row["model"], harmful=prompt_set == "jailbreakbench",
            label="complied" if not_refusal == "1" else "refused",
            categories=[c for c in (row.get("category"), row.get("intervention")) if c],
            answer_harmful=(lg == "1") if lg in ("0", "1") else None, human=False,
            group="p:" + " ".join(row["prompt"].lower().split()),
        ))
    return out


register(DatasetSpec(
    name="refusal_direction_completions",
    description="Completions of 5 chat models (Arditi et al. 2024) on JailbreakBench and "
    "harmless prompts, with and without refusal-direction interventions (2,350).",
    subsets=tuple(_RD_FILES),
    default_subsets=("completions",),
    files=_RD_FILES,
    record_type=AnswerRecord,
    read=_read_refusal_direction,
    parse=_parse_refusal_direction,
    license="code Apache-2.0; completions subject to the models' licences",
    non_commercial=True,
    notes=["labels are AUTOMATIC: label from upstream substring matching (refused/complied), "
           "answer_harmful from Llama Guard 2 (JailbreakBench prompts only): say so where used",
           "one prompt's completions (all models, all interventions) share a group",
           "subsets harmless_val / harmless_test: 12,530 benign Alpaca-derived instructions "
           "(plain Records, no answers)"],
))
