"""Loaders for the prompt-level safety sets added to the data directory later (harmful requests,
look-alikes, hate and toxicity corpora, multilingual requests): one `register` per dataset.

As in _builtin.py, each keeps the dataset's own labels; `harmful` is the dataset's verdict on
the *request* (None where the dataset says nothing a safety guard can use).
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

from ._files import DatasetError, field, read_csv, read_json, read_jsonl, require_file
from ._records import (
    CoconotRecord,
    ConvAbuseRecord,
    CyberSecEvalRecord,
    DavidsonRecord,
    HarmfulQARecord,
    HHRLHFRecord,
    MultiJailRecord,
    Record,
    SafetyTunedRecord,
    ToxicSpansRecord,
    ToxiGenRecord,
    Turn,
)
from ._registry import DatasetSpec, register

# --- CoCoNot --------------------------------------------------------------------------------

_COCONOT_FILES = {
    "noncompliance": "coconot/coconot_eval.jsonl",
    "contrast": "coconot/coconot_contrast_eval.jsonl",
    "preference": "coconot/coconot_pref.jsonl",
}
COCONOT_SAFETY = "Requests with safety concerns"


def _parse_coconot(rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for row in rows:
        category = field(row, "category", "coconot")
        # noncompliance: only the safety-concern category is a harmful request; the others
        # (incomplete, unsupported, humanizing, indeterminate) are not safety matters.
        # contrast and preference prompts are look-alikes that should be answered.
        harmful = subset == "noncompliance" and category == COCONOT_SAFETY
        out.append(CoconotRecord(
            id=field(row, "id", "coconot"), text=field(row, "prompt", "coconot"),
            source="coconot", subset=subset, harmful=harmful,
            label="should_not_comply" if subset == "noncompliance" else "should_comply",
            categories=[row.get("subcategory") or category], category=category,
            subcategory=row.get("subcategory") or "",
            chosen=row.get("chosen"), rejected=row.get("rejected"),
            chosen_model=row.get("chosen_model"), rejected_model=row.get("rejected_model"),
        ))
    return out


register(DatasetSpec(
    name="coconot",
    description="CoCoNot (Brahman et al. 2024): requests a model should not comply with "
    "(1000, 394 of them safety concerns), contrast look-alikes that should be answered (379), "
    "and compliant-vs-over-refusal answer pairs (927).",
    subsets=tuple(_COCONOT_FILES),
    default_subsets=tuple(_COCONOT_FILES),
    files=_COCONOT_FILES,
    record_type=CoconotRecord,
    read=lambda root, sub: read_jsonl(require_file(root, _COCONOT_FILES[sub], "coconot")),
    parse=_parse_coconot,
    license="MIT (repository licence; the HF card may differ)",
    notes=[
        "harmful = noncompliance subset AND category 'Requests with safety concerns'; the "
        "other noncompliance categories (incomplete, unsupported, humanizing, indeterminate) "
        "are harmful=False: not a safety matter",
        "contrast and preference prompts should be answered (harmful=False); preference rows "
        "carry `chosen` (a compliant answer) and `rejected` (an over-refusal)",
    ],
))

# --- HarmfulQA / DangerousQA ----------------------------------------------------------------

_HQA_FILES = {"questions": "harmfulqa_dangerousqa/harmful_questions.csv"}


def _parse_harmfulqa(rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for i, row in enumerate(rows):
        origin = field(row, "source", "harmfulqa_dangerousqa")
        category = row.get("category") or ""
        out.append(HarmfulQARecord(
            id=str(i), text=field(row, "question", "harmfulqa_dangerousqa"),
            source="harmfulqa_dangerousqa", subset=subset, harmful=True, label="harmful",
            categories=[category] if category else [], origin=origin, category=category,
            subcategory=row.get("subcategory") or "",
        ))
    return out


register(DatasetSpec(
    name="harmfulqa_dangerousqa",
    description="HarmfulQA (1960 harmful questions in 10 academic topics) and DangerousQA "
    "(188), Bhardwaj & Poria 2023.",
    subsets=("questions",),
    default_subsets=("questions",),
    files=_HQA_FILES,
    record_type=HarmfulQARecord,
    read=lambda root, sub: read_csv(require_file(root, _HQA_FILES[sub], "harmfulqa_dangerousqa"),
                                    ("source", "category", "subcategory", "question")),
    parse=_parse_harmfulqa,
    license="Apache-2.0",
    held_out_share=0.3,
    notes=["categories are the academic topic (empty for DangerousQA), not a harm taxonomy; "
           "ids are row numbers"],
))

# --- Davidson et al. hate / offensive -------------------------------------------------------

_DAV_FILES = {"tweets": "davidson_hate_offensive/labeled_data.csv"}
_DAV_CLASSES = {"0": "hate", "1": "offensive", "2": "neither"}


def _parse_davidson(rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for row in rows:
        cls = field(row, "class", "davidson_hate_offensive")
        if cls not in _DAV_CLASSES:
            raise DatasetError(f"davidson_hate_offensive: class {cls!r} is not 0, 1 or 2.")
        label = _DAV_CLASSES[cls]
        out.append(DavidsonRecord(
            id=str(row[""]), text=_unescape_html(row["tweet"]), source="davidson_hate_offensive",
            subset=subset, harmful=label != "neither", label=label,
            categories=[] if label == "neither" else [label],
            votes={k: int(row[k]) for k in ("hate_speech", "offensive_language", "neither")},
        ))
    return out


def _unescape_html(text: str) -> str:
    import html

    return html.unescape(text)


register(DatasetSpec(
    name="davidson_hate_offensive",
    description="Davidson et al. 2017: 24,783 tweets labelled hate speech, offensive, or "
    "neither (CrowdFlower majority).",
    subsets=("tweets",),
    default_subsets=("tweets",),
    files=_DAV_FILES,
    record_type=DavidsonRecord,
    read=lambda root, sub: read_csv(require_file(root, _DAV_FILES[sub], "davidson_hate_offensive"),
                                    ("class", "tweet")),
    parse=_parse_davidson,
    license="MIT",
    held_out_share=0.2,
    notes=["harmful = hate or offensive; label is the majority class", "HTML entities "
           "(&amp;) unescaped", "ids are the file's unnamed index column"],
))

# --- ToxiGen seed statements ----------------------------------------------------------------

_TG_FILES = {"seeds": "toxigen_seeds/toxigen_seed_sentences.csv"}


def _parse_toxigen(rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for i, row in enumerate(rows):
        label = field(row, "label", "toxigen_seeds")
        if label not in ("hate", "neutral"):
            raise DatasetError(f"toxigen_seeds: label {label!r} is not hate or neutral.")
        out.append(ToxiGenRecord(
            id=str(i), text=row["text"], source="toxigen_seeds", subset=subset,
            harmful=label == "hate", label=label,
            categories=["implicit_hate"] if label == "hate" else [],
            target_group=row.get("target_group") or "",
        ))
    return out


register(DatasetSpec(
    name="toxigen_seeds",
    description="ToxiGen (Hartvigsen et al. 2022) human-curated seed statements: implicitly "
    "hateful vs neutral sentences about 13 groups (769).",
    subsets=("seeds",),
    default_subsets=("seeds",),
    files=_TG_FILES,
    record_type=ToxiGenRecord,
    read=lambda root, sub: read_csv(require_file(root, _TG_FILES[sub], "toxigen_seeds"),
                                    ("text", "label", "target_group")),
    parse=_parse_toxigen,
    license="MIT",
    notes=["the seed demonstrations, not the generated 250k set; harmful = label 'hate'"],
))

# --- ConvAbuse ------------------------------------------------------------------------------

_CA_FILES = {"majority": "convabuse/convabuse_majority.csv"}


def _parse_convabuse(rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for row in rows:
        abusive = field(row, "abusive_majority", "convabuse") == "1"
        turns = [Turn(role=role, content=row[key]) for role, key in (
            ("assistant", "prev_agent"), ("user", "prev_user"), ("assistant", "agent"))
            if (row.get(key) or "").strip()]
        out.append(ConvAbuseRecord(
            id=str(row["example_id"]).removesuffix(".0"), text=row["user"], source="convabuse",
            subset=subset, harmful=abusive, label="abusive" if abusive else "not_abusive",
            categories=["abuse"] if abusive else [], bot=row.get("bot") or "",
            upstream_split=row.get("split") or "", context=turns,
            group=str(row.get("conv_id") or "").removesuffix(".0") or None,
        ))
    return out


register(DatasetSpec(
    name="convabuse",
    description="ConvAbuse (Cercas Curry et al. 2021): users' turns to three chatbots, "
    "majority-labelled abusive or not (4,041), with the two turns before each.",
    subsets=("majority",),
    default_subsets=("majority",),
    files=_CA_FILES,
    record_type=ConvAbuseRecord,
    read=lambda root, sub: read_csv(require_file(root, _CA_FILES[sub], "convabuse"),
                                    ("example_id", "user", "abusive_majority")),
    parse=_parse_convabuse,
    license="CC-BY-4.0 (see the folder's LICENSE)",
    held_out_share=0.3,
    notes=["text is the user's turn; context holds prev_agent, prev_user, agent when present",
           "records of one conversation share a group (one side of every split)"],
))

# --- SemEval-2021 toxic spans ---------------------------------------------------------------

_TSD_FILES = {s: f"toxic_spans_semeval2021/tsd_{s}.csv" for s in ("train", "trial", "test")}


def _parse_toxic_spans(rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for i, row in enumerate(rows):
        try:
            spans = [int(x) for x in json.loads(field(row, "spans", "toxic_spans"))]
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise DatasetError(f"toxic_spans {subset} row {i}: spans is not a list of ints") from exc
        out.append(ToxicSpansRecord(
            id=f"{subset}-{i}", text=row["text"], source="toxic_spans_semeval2021", subset=subset,
            harmful=True, label="toxic", categories=["toxic"], spans=spans,
        ))
    return out


register(DatasetSpec(
    name="toxic_spans_semeval2021",
    description="SemEval-2021 Task 5 toxic spans: 10,629 toxic Civil Comments with the "
    "character offsets of their toxic spans.",
    subsets=tuple(_TSD_FILES),
    default_subsets=tuple(_TSD_FILES),
    files=_TSD_FILES,
    record_type=ToxicSpansRecord,
    read=lambda root, sub: read_csv(require_file(root, _TSD_FILES[sub], "toxic_spans_semeval2021"),
                                    ("spans", "text")),
    parse=_parse_toxic_spans,
    license="CC0-1.0",
    held_out_share=0.2,
    notes=["every text is toxic (an empty span list means the annotators found no single span)"],
))

# --- CyberSecEval: false-refusal prompts and prompt injections ------------------------------

_CSE_FILES = {
    "mitre_frr": "cyberseceval_frr_pi/mitre_frr.json",
    "prompt_injection": "cyberseceval_frr_pi/prompt_injection.json",
}


def _read_cse(root: Path, subset: str) -> list[dict[str, Any]]:
    data = read_json(require_file(root, _CSE_FILES[subset], "cyberseceval_frr_pi"))
    if not isinstance(data, list):
        raise DatasetError(f"cyberseceval_frr_pi: {_CSE_FILES[subset]} must be a JSON list.")
    return data


def _parse_cse(rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for i, row in enumerate(rows):
        if subset == "mitre_frr":
            out.append(CyberSecEvalRecord(
                id=f"frr-{i}", text=field(row, "mutated_prompt", "cyberseceval"),
                source="cyberseceval_frr_pi", subset=subset, harmful=False,
                label="benign_borderline", categories=[row.get("attack_type") or ""],
            ))
        else:
            out.append(CyberSecEvalRecord(
                id=f"pi-{row.get('prompt_id', i)}", text=field(row, "user_input", "cyberseceval"),
                source="cyberseceval_frr_pi", subset=subset, harmful=None,
                label="prompt_injection", categories=[row.get("injection_variant") or ""],
                system=row.get("test_case_prompt"), injection_type=row.get("injection_type"),
                judge_question=row.get("judge_question"),
            ))
    return out


register(DatasetSpec(
    name="cyberseceval_frr_pi",
    description="CyberSecEval (Meta PurpleLlama): 750 benign but borderline cyber-security "
    "coding prompts (false-refusal rate) and 251 prompt-injection cases.",
    subsets=tuple(_CSE_FILES),
    default_subsets=tuple(_CSE_FILES),
    files=_CSE_FILES,
    record_type=CyberSecEvalRecord,
    read=_read_cse,
    parse=_parse_cse,
    license="MIT",
    notes=["mitre_frr prompts should be answered (harmful=False)",
           "prompt injections: text is the user's injection, system the protected instruction; "
           "harmful=None (an injection is not harmful content, and many are benign-looking)"],
))

# --- MultiJail ------------------------------------------------------------------------------

MULTIJAIL_LANGUAGES = ("en", "zh", "it", "vi", "ar")
_MJ_FILES = {lang: "multijail/multijail_en_zh_it_vi_ar.csv" for lang in MULTIJAIL_LANGUAGES}


def _parse_multijail(rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for row in rows:
        rid = field(row, "id", "multijail")
        tags = re.findall(r"'([^']+)'", row.get("tags") or "")
        out.append(MultiJailRecord(
            id=f"{rid}-{subset}", text=field(row, subset, "multijail"), source="multijail",
            subset=subset, harmful=True, label="harmful", categories=tags, language=subset,
            origin=row.get("source") or "", group=rid,
        ))
    return out


register(DatasetSpec(
    name="multijail",
    description="MultiJail (Deng et al. 2024): 315 harmful requests in English, Chinese, "
    "Italian, Vietnamese and Arabic (one subset per language).",
    subsets=MULTIJAIL_LANGUAGES,
    default_subsets=MULTIJAIL_LANGUAGES,
    files=_MJ_FILES,
    record_type=MultiJailRecord,
    read=lambda root, sub: read_csv(require_file(root, _MJ_FILES[sub], "multijail"),
                                    ("id", *MULTIJAIL_LANGUAGES)),
    parse=_parse_multijail,
    license="MIT",
    notes=["one request in five languages shares a group: all translations land on one side"],
))

# --- Safety-Tuned LLaMAs --------------------------------------------------------------------

# The evaluation sets and whether their instructions are harmful. I-Controversial asks for
# arguments that some group is inferior; Q-Harm is HH red-team questions (some mild).
SAFETY_TUNED_SETS = {
    "I-MaliciousInstructions": True, "I-CoNa": True, "I-Controversial": True, "Q-Harm": True,
    "I-PhysicalSafetyUnsafe": True, "I-PhysicalSafetySafe": False, "I-Alpaca": False,
}
_STL_FILES = {"evaluation": "safety_tuned_llamas/evaluation_flat.csv",
              "training": "safety_tuned_llamas/safety_only_data_Instructions.json"}


def _read_stl(root: Path, subset: str) -> list[dict[str, Any]]:
    path = require_file(root, _STL_FILES[subset], "safety_tuned_llamas")
    if subset == "evaluation":
        return read_csv(path, ("set", "instruction"))
    data = read_json(path)
    if not isinstance(data, list):
        raise DatasetError("safety_tuned_llamas: the training file must be a JSON list.")
    return [{"set": "training", "instruction": r.get("instruction", ""), "input": r.get("input", ""),
             "output": r.get("output", "")} for r in data]


def _parse_stl(rows, subset: str) -> list[Record]:
    out: list[Record] = []
    counters: dict[str, int] = {}
    for row in rows:
        name = field(row, "set", "safety_tuned_llamas")
        if subset == "evaluation" and name not in SAFETY_TUNED_SETS:
            raise DatasetError(f"safety_tuned_llamas: unknown evaluation set {name!r}.")
        n = counters[name] = counters.get(name, -1) + 1
        text = row["instruction"] if not row.get("input") else f"{row['instruction']}\n\n{row['input']}"
        harmful = SAFETY_TUNED_SETS.get(name, True)
        out.append(SafetyTunedRecord(
            id=f"{name}-{n}", text=text, source="safety_tuned_llamas", subset=subset,
            harmful=harmful, label="harmful" if harmful else "benign", categories=[name],
            set_name=name, safe_response=row.get("output") or None,
        ))
    return out


register(DatasetSpec(
    name="safety_tuned_llamas",
    description="Safety-Tuned LLaMAs (Bianchi et al. 2024): 668 evaluation instructions in 7 "
    "sets (5 harmful, 2 benign) and 2,483 harmful training instructions with safe answers.",
    subsets=tuple(_STL_FILES),
    default_subsets=("evaluation",),
    files=_STL_FILES,
    record_type=SafetyTunedRecord,
    read=_read_stl,
    parse=_parse_stl,
    license="CC-BY-NC-4.0 (data)",
    non_commercial=True,
    train_only_subsets=("training",),
    notes=["harmful per evaluation set: MaliciousInstructions, CoNa, Controversial, Q-Harm, "
           "PhysicalSafetyUnsafe; benign: PhysicalSafetySafe, Alpaca",
           "the training subset's instructions are harmful, with a safe reference answer",
           "non-commercial: never commit its rows"],
))

# --- Anthropic HH-RLHF harmless (test) ------------------------------------------------------

_HH_FILES = {"test": "hh_rlhf_harmless_test/test.jsonl.gz"}
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def _turns(transcript: str) -> list[Turn]:
    parts = _HH_TURN.split(transcript)
    out = []
    for role, content in zip(parts[1::2], parts[2::2], strict=False):
        out.append(Turn(role="user" if role == "Human" else "assistant", content=content.strip()))
    return out


def _read_hh(root: Path, subset: str) -> list[dict[str, Any]]:
    path = require_file(root, _HH_FILES[subset], "hh_rlhf_harmless_test")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _parse_hh(rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for i, row in enumerate(rows):
        chosen, rejected = _turns(field(row, "chosen", "hh_rlhf")), _turns(row["rejected"])
        first = next((t.content for t in chosen if t.role == "user"), "")
        out.append(HHRLHFRecord(
            id=str(i), text=first, source="hh_rlhf_harmless_test", subset=subset, harmful=None,
            label=None, chosen=chosen, rejected=rejected,
        ))
    return out


register(DatasetSpec(
    name="hh_rlhf_harmless_test",
    description="Anthropic HH-RLHF harmless-base test: 2,312 red-team conversations, each "
    "with a chosen (less harmful) and a rejected final answer.",
    subsets=("test",),
    default_subsets=("test",),
    files=_HH_FILES,
    record_type=HHRLHFRecord,
    read=_read_hh,
    parse=_parse_hh,
    license="MIT",
    held_out_share=0.3,
    notes=["text is the first human turn; chosen/rejected are the whole conversations as turns",
           "no absolute labels: chosen is only *less* harmful than rejected, so harmful=None"],
))
