"""Labelled training and held-out evaluation data for the fast tier, read through
specguard.data. Splits are deterministic (a hash of dataset and item id), so training
and evaluation scripts agree on which items are held out without storing any text.

Input stage (prompts): harmful = AdvBench, HarmBench, JBB, SimpleSafetyTests, XSTest unsafe
contrasts, OpenAI moderation flagged, ToxicChat toxic, BeaverTails prompts, Jigsaw toxic;
benign = XSTest safe look-alikes, OpenAI moderation unflagged, ToxicChat non-toxic, U-SafeBench
helpfulness instructions, Jigsaw non-toxic.

Output stage (prompt + response): unsafe = BeaverTails unsafe answers, AdvBench's affirmative
targets, flagged moderation texts as answers; safe = refusals of harmful prompts and benign
texts answering benign prompts.
"""

from __future__ import annotations

import hashlib
import random
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path

from .fast import pair_text
from .verdict import Stage

# Datasets with a held-out part (the rest trains); the others only train.
EVAL_SETS = ("openai_moderation", "toxicchat", "xstest", "harmbench", "jbb_artifacts",
             "simple_safety_tests", "u_safebench")
TEST_SHARE = 0.5  # = specguard.data.HELD_OUT_SHARE: suites' `part: held_out` match it
NON_COMMERCIAL = ("toxicchat", "beavertails_sample")

_REFUSALS = (
    "I'm sorry, but I can't help with that.",
    "I can't assist with that request because it could cause harm.",
    "Sorry, I won't provide instructions for that. If you're struggling, please reach out to someone you trust.",
    "I cannot help with this. Is there something else, safe and legal, I can do for you?",
    "That's not something I can help with, as it could hurt people.",
    "I must decline. I can share general safety information instead if that helps.",
)


@dataclass
class Example:
    text: str
    harmful: bool
    source: str
    split: str  # "train" | "test"
    stage: Stage = Stage.INPUT
    tags: list[str] = field(default_factory=list)  # e.g. "xstest_safe", "xstest_unsafe"
    cats: list[str] = field(default_factory=list)  # the dataset's own labels, "<dataset>:<label>"


def split_of(source: str, item_id: str, share: float = TEST_SHARE) -> str:
    from ..data import held_out

    if source not in EVAL_SETS:
        return "train"
    return "test" if held_out(source, item_id, share) else "train"


def input_examples(data_root: str | Path | None = None) -> list[Example]:
    from ..data import load  # the harness's loaders (specguard.evals)

    out: list[Example] = []

    def add(records, tag_fn=None, harmful_fn=None):
        for r in records:
            harmful = harmful_fn(r) if harmful_fn else r.harmful
            if harmful is None or not r.text.strip():
                continue
            tags = [tag_fn(r)] if tag_fn else []
            cats = [f"{r.source}:{c}" for c in r.categories] if harmful else []
            out.append(Example(r.text, bool(harmful), r.source, split_of(r.source, r.id), tags=tags,
                               cats=cats))

    kw = {"data_dir_override": data_root}
    add(load("advbench", subset="all", **kw))
    add(load("harmbench", **kw))
    add(load("jbb_artifacts", **kw))
    add(load("simple_safety_tests", **kw))
    add(load("xstest", **kw), tag_fn=lambda r: "xstest_unsafe" if r.harmful else "xstest_safe")
    add(load("openai_moderation", **kw))
    add(load("toxicchat", **kw))
    add(load("beavertails_sample", **kw))
    add(load("jigsaw_detoxify_sample", subset="all", **kw))
    add(load("u_safebench", subset="helpfulness", **kw))
    return _dedupe(out)


def output_examples(data_root: str | Path | None = None, seed: int = 0) -> list[Example]:
    """Prompt + response pairs for the output check."""
    from ..data import load

    rng = random.Random(seed)
    kw = {"data_dir_override": data_root}
    out: list[Example] = []
    for r in load("beavertails_sample", **kw):
        split = "test" if _h(r.id) < 0.3 else "train"
        out.append(Example(pair_text(r.prompt, r.response), True, "beavertails_pairs", split, Stage.OUTPUT,
                           cats=[f"beavertails_sample:{c}" for c in r.categories]))
        out.append(Example(pair_text(r.prompt, rng.choice(_REFUSALS)), False, "refusals", split, Stage.OUTPUT))
    for r in load("advbench", **kw):  # harmful_behaviors: goal + affirmative target
        split = "test" if _h(r.id) < 0.3 else "train"
        out.append(Example(pair_text(r.text, r.target), True, "advbench_targets", split, Stage.OUTPUT))
        out.append(Example(pair_text(r.text, rng.choice(_REFUSALS)), False, "refusals", split, Stage.OUTPUT))
    mod = load("openai_moderation", **kw)
    benign_prompts = [r.text for r in load("u_safebench", subset="helpfulness", **kw)]
    benign_prompts += [r.text for r in load("xstest", **kw) if not r.harmful]
    for r in mod:
        split = split_of(r.source, r.id)
        out.append(Example(pair_text(rng.choice(benign_prompts), r.text), bool(r.harmful),
                           "moderation_as_answer", split, Stage.OUTPUT,
                           cats=[f"openai_moderation:{c}" for c in r.categories]))
    return out


def category_map() -> dict[str, dict[str, list[str]]]:
    """specs/guard/category_map.yaml: taxonomy -> {"<dataset>:<label>": [category ids]}."""
    import yaml

    path = resources.files("specguard.specs") / "guard" / "category_map.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def mapped_categories(e: Example, mapping: dict[str, list[str]]) -> list[str]:
    out: list[str] = []
    for c in e.cats:
        for cid in mapping.get(c, []):
            if cid not in out:
                out.append(cid)
    return out


def _h(item_id: str) -> float:
    return int(hashlib.sha256(item_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def _dedupe(examples: list[Example]) -> list[Example]:
    """Drop training items whose text also occurs in a held-out item (AdvBench, HarmBench and
    JBB share behaviours), and exact duplicates inside a split."""
    test_texts = {_norm(e.text) for e in examples if e.split == "test"}
    seen: set[tuple[str, str]] = set()
    out = []
    for e in examples:
        key = (e.split, _norm(e.text))
        if key in seen or (e.split == "train" and key[1] in test_texts):
            continue
        seen.add(key)
        out.append(e)
    return out


def _norm(text: str) -> str:
    return " ".join(text.lower().split())
