"""The fast tier's labelled data, read through specguard.data's split (train / validation /
held_out, with near-duplicates of evaluation records left out of the first two), plus the
data the guard writes for itself (attack transforms, benign look-alikes; see augment.py).

Input stage (a turn of the conversation):
- harmful requests: AdvBench, HarmBench, JailbreakBench, SimpleSafetyTests, XSTest's unsafe
  contrasts, CoCoNot's safety concerns, HarmfulQA/DangerousQA, MultiJail (5 languages),
  Safety-Tuned LLaMAs' harmful sets, BeaverTails prompts;
- toxic content: OpenAI moderation flagged, ToxicChat toxic, Jigsaw toxic, Davidson hate and
  offensive, ToxiGen hate, ConvAbuse abusive, SemEval toxic spans;
- jailbreaks: in-the-wild templates (with a request in their slot);
- benign: XSTest safe look-alikes, CoCoNot contrast / preference / non-safety prompts,
  CyberSecEval's borderline cyber prompts, Safety-Tuned LLaMAs' benign sets, U-SafeBench
  helpfulness, moderation and ToxicChat negatives, Jigsaw / Davidson / ToxiGen / ConvAbuse
  negatives, Alpaca-style harmless instructions;
- written here: look-alikes (benign), attack-transformed requests (both labels), and benign
  requests in ten languages (multilingual.py: MultiJail's harmful translations are otherwise
  the only non-English requests, which teaches "not English" as a sign of harm).

Output stage (request + answer): human-labelled answers (XSTest completions, GPTFuzz,
DiaSafety), BeaverTails' unsafe answers, safe reference answers (Safety-Tuned LLaMAs),
CoCoNot's compliant and over-refusing answers, refusal-direction completions (automatic Llama
Guard 2 labels, down-weighted), and moderation texts as answers.

Every example keeps its dataset's part, so training reads TRAIN, choices VALIDATION, figures
HELD_OUT, and the same request never straddles two parts.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any

from ..data import Part, in_part, load, record_key, wrap
from .augment import attack_variants, contrasts, lookalikes
from .multilingual import BENIGN as BENIGN_MULTILINGUAL
from .multilingual import validates
from .verdict import Stage
from .written import SOURCE as SOURCE_WRITTEN_REQUESTS
from .written import in_part as written_in_part

# Which dataset texts are what, for the input stage. `domain` groups sources whose base rates
# and styles differ (the lesson: mixing them naively moves one set's F1 down).
REQUESTS = "request"  # a request to an assistant
TOXICITY = "toxicity"  # a piece of (possibly toxic) text, not necessarily a request
JAILBREAK = "jailbreak"
PASSAGE = "passage"  # prose a client pastes into a turn (a document, an earlier answer)
WRITTEN = "written"  # data the guard wrote for itself
WRITTEN_SEED = 7919  # offsets the random streams that transform the written requests

# dataset -> (subset or None for default, domain)
INPUT_SOURCES: dict[str, tuple[Any, str]] = {
    "advbench": ("all", REQUESTS),
    "harmbench": (None, REQUESTS),
    "jbb_artifacts": (None, REQUESTS),
    "simple_safety_tests": (None, REQUESTS),
    "xstest": (None, REQUESTS),
    "coconot": ("all", REQUESTS),
    "harmfulqa_dangerousqa": (None, REQUESTS),
    "multijail": (None, REQUESTS),
    "safety_tuned_llamas": ("all", REQUESTS),
    "beavertails_sample": (None, REQUESTS),
    "cyberseceval_frr_pi": ("mitre_frr", REQUESTS),
    "u_safebench": ("helpfulness", REQUESTS),
    "refusal_direction_completions": (["harmless_val", "harmless_test"], REQUESTS),
    "openai_moderation": (None, TOXICITY),
    "toxicchat": (None, REQUESTS),
    "jigsaw_detoxify_sample": ("all", TOXICITY),
    "davidson_hate_offensive": (None, TOXICITY),
    "toxigen_seeds": (None, TOXICITY),
    "convabuse": (None, TOXICITY),
    "toxic_spans_semeval2021": ("all", TOXICITY),
}
# Datasets large enough to drown the others: their weight in a part is capped at this share
# of the part's examples (each of their examples weighs cap * N / n).
WEIGHT_CAPS = {
    "davidson_hate_offensive": 0.065, "toxic_spans_semeval2021": 0.032,
    "refusal_direction_completions": 0.065, "safety_tuned_llamas": 0.04,
}
MULTILINGUAL_WEIGHT = 3.0
# Benign passages (see _benign_passages): their weight in a part is capped at this share.
PASSAGE_SHARE = 0.06
# Answers a passage may come from: answers to benign prompts, never refusals (a refusal names
# the harmful request it declines, and is not what a pasted document looks like).
PASSAGE_SOURCES = ("refusal_direction_completions", "xstest_completions", "coconot")
REFUSAL_OPENINGS = ("i'm sorry", "i am sorry", "i cannot", "i can't", "as an ai", "i apologize",
                    "sorry", "i'm really sorry", "i'm not able", "i am not able", "i won't")
NON_COMMERCIAL = ("toxicchat", "beavertails_sample", "safety_tuned_llamas",
                  "xstest_completions", "refusal_direction_completions")


@dataclass(frozen=True)
class Example:
    text: str
    harmful: bool
    source: str  # the dataset, or "written:<kind>" for data the guard wrote
    part: Part
    domain: str = REQUESTS
    stage: Stage = Stage.INPUT
    categories: tuple[str, ...] = ()  # the dataset's own labels, "<dataset>:<label>"
    tags: tuple[str, ...] = ()  # e.g. "xstest_safe", "attack:persona", "lang:zh"
    key: str = ""  # "<dataset>/<record key>" (augmented: the original's key + a suffix)
    request: str = ""  # output stage: the request the answer answers
    weight: float = 1.0


def _harmful_of(record: Any) -> bool | None:
    return record.harmful


def _tags(record: Any) -> tuple[str, ...]:
    tags = []
    if record.source == "xstest":
        tags.append("xstest_unsafe" if record.harmful else "xstest_safe")
    if record.source == "coconot" and record.subset == "contrast":
        tags.append("coconot_contrast")
    lang = getattr(record, "language", None)
    if lang:
        tags.append(f"lang:{lang}")
    if record.source == "cyberseceval_frr_pi":
        tags.append("frr")
    return tuple(tags)


def _records(name: str, subset: Any, data_root: Any) -> list[Any]:
    return [r for r in load(name, subset=subset, data_dir_override=data_root) if r.text.strip()]


# The transforms below draw from one random stream per side: the development parts (train and
# validation, always built together, the way training reads them) and the held-out part. A
# part's examples are then the same whichever parts a caller asks for: a bench reading the
# validation part alone sees the look-alikes the operating points were chosen on (drawn from
# the stream of whatever parts were asked for, 28 of those 60 used to come out differently).
SIDES = ((Part.TRAIN, Part.VALIDATION), (Part.HELD_OUT,))


def _sides(parts: tuple[Part, ...]) -> list[tuple[Part, ...]]:
    return [side for side in SIDES if any(p in side for p in parts)]


def input_examples(data_root: str | Path | None = None, *, seed: int = 0,
                   augment: bool = True, parts: Iterable[Part] = tuple(Part),
                   written_weight: float = 1.0, written_requests: bool = False,
                   passages: bool = False) -> list[Example]:
    """Input-stage examples of the requested parts (each record in its own part; training and
    validation without the near-duplicates of evaluation records). `written_weight` scales the
    training weight of the look-alikes and contrast pairs written for specguard (a few hundred
    among tens of thousands); `written_requests` adds the requests written for specguard
    (written.py), each in its own part, and their transforms, drawn apart from the datasets'
    so that adding them leaves every dataset example as it was; `passages` adds benign
    passages of answers to the training and validation parts (_benign_passages)."""
    parts = tuple(parts)
    return [e for side in _sides(parts)
            for e in _input_side(data_root, seed, augment, side, written_weight, written_requests,
                                 passages)
            if e.part in parts]


def _input_side(data_root: Any, seed: int, augment: bool, parts: tuple[Part, ...],
                written_weight: float, written_requests: bool,
                passages: bool = False) -> list[Example]:
    out: list[Example] = []
    for name, (subset, domain) in INPUT_SOURCES.items():
        records = _records(name, subset, data_root)
        for part in parts:
            for r in in_part(records, part, data_root=data_root):
                harmful = _harmful_of(r)
                if harmful is None:
                    continue
                cats = tuple(f"{r.source}:{c}" for c in r.categories) if harmful else ()
                out.append(Example(r.text, bool(harmful), r.source, part, domain,
                                   categories=cats, tags=_tags(r),
                                   key=f"{r.source}/{record_key(r)}"))
    if augment:
        out.extend(_jailbreak_examples(out, data_root, seed, parts))
        out.extend(_attack_examples(out, seed))
        if Part.TRAIN in parts:
            out.extend(Example(**{**e.__dict__, "weight": e.weight * written_weight})
                       for e in _written_lookalikes(seed))
        out.extend(_written_multilingual(parts))
    if written_requests:
        # wrapped and obfuscated like the dataset requests, from streams of their own
        written = _written_requests(parts)
        out.extend(written)
        if augment:
            out.extend(_jailbreak_examples(written, data_root, seed + WRITTEN_SEED, parts,
                                           benign_templates=False))
            out.extend(_attack_examples(written, seed + WRITTEN_SEED))
    if passages:  # after the transforms: a passage is pasted as it is, never wrapped
        out.extend(_benign_passages(data_root, seed, parts))
    return _weighted(out)


def _jailbreak_examples(base: list[Example], data_root: Any, seed: int,
                        parts: tuple[Part, ...], *, benign_templates: bool = True
                        ) -> list[Example]:
    """Requests wrapped in in-the-wild jailbreak templates of the same part: each template
    once with a benign request (a jailbreak attempt is flagged whatever it asks; unless
    `benign_templates` is off) and harmful requests round-robin over the part's templates."""
    rng = random.Random(seed)
    templates = _records("inthewild_jailbreaks", None, data_root)
    out: list[Example] = []
    for part in parts:
        temps = in_part(templates, part, data_root=data_root)
        if not temps:
            continue
        harmful = [e for e in base if e.part is part and e.harmful and e.domain == REQUESTS
                   and not any(t.startswith("lang:") and t != "lang:en" for t in e.tags)]
        benign = [e for e in base if e.part is part and not e.harmful and e.domain == REQUESTS]
        rng.shuffle(harmful)
        for i, e in enumerate(harmful[: 6 * len(temps)]):
            t = temps[i % len(temps)]
            out.append(Example(wrap(t, e.text), True, "inthewild_jailbreaks", part, JAILBREAK,
                               categories=e.categories, tags=("jailbreak_wrapped",),
                               key=f"{e.key}+jb{t.id}"))
        for t in (temps if benign_templates else ()):
            if benign:
                e = rng.choice(benign)
                out.append(Example(wrap(t, e.text), True, "inthewild_jailbreaks", part,
                                   JAILBREAK, categories=("inthewild_jailbreaks:jailbreak",),
                                   tags=("jailbreak_template",), key=f"{e.key}+jb{t.id}"))
    return out


def _attack_examples(base: list[Example], seed: int) -> list[Example]:
    """Attack-transformed English requests of every part, both labels (see augment.py): the
    part stays the original's, so a transformed evaluation request is evaluation data."""
    rng = random.Random(seed + 1)
    out: list[Example] = []
    for e in base:
        if e.domain != REQUESTS or any(t.startswith("lang:") and t != "lang:en" for t in e.tags):
            continue
        # all harmful requests get one transform; a third of the benign ones do
        if not e.harmful and rng.random() > 1 / 3:
            continue
        for name, text in attack_variants(e.text, rng, k=1):
            out.append(Example(text, e.harmful, e.source, e.part, WRITTEN,
                               categories=e.categories, tags=(*e.tags, f"attack:{name}"),
                               key=f"{e.key}+{name}"))
    return out


def _written_lookalikes(seed: int) -> list[Example]:
    rng = random.Random(seed + 2)
    out = [Example(text, False, f"written:{kind}", Part.TRAIN, WRITTEN, tags=("lookalike",),
                   key=f"written/{kind}/{i}")
           for i, (kind, text) in enumerate(lookalikes(rng))]
    out += [Example(text, harmful, f"written:{kind}", Part.TRAIN, WRITTEN,
                    tags=() if harmful else ("lookalike",), key=f"written/{kind}/{i}")
            for i, (kind, text, harmful) in enumerate(contrasts(rng))]
    return out


def _written_requests(parts: tuple[Part, ...]) -> list[Example]:
    """written_requests.jsonl (written.py): harmful requests and benign look-alikes, each in
    its part. They are tagged `written_lookalike`, not `lookalike`: the operating points stay
    bounded by the datasets' look-alikes."""
    return [Example(w.text, w.harmful, SOURCE_WRITTEN_REQUESTS, part, REQUESTS,
                    categories=(f"written_requests:{w.topic}",) if w.harmful else (),
                    tags=(f"style:{w.style}",) if w.harmful else ("written_lookalike",
                                                                  f"kind:{w.style}"),
                    key=f"written/requests/{i}")
            for part in parts for i, w in written_in_part(part)]


def _written_multilingual(parts: tuple[Part, ...]) -> list[Example]:
    """Benign requests in the languages of multilingual.BENIGN (every fifth one validates).
    Each weighs MULTILINGUAL_WEIGHT: a hundred-odd requests against MultiJail's 700 harmful
    translations, the only other text in those languages."""
    out = []
    for lang, prompts in BENIGN_MULTILINGUAL.items():
        for i, text in enumerate(prompts):
            part = Part.VALIDATION if validates(i) else Part.TRAIN
            if part in parts:
                out.append(Example(text, False, "written:multilingual", part, WRITTEN,
                                   tags=(f"lang:{lang}", "multilingual"),
                                   key=f"written/multilingual/{lang}/{i}",
                                   weight=MULTILINGUAL_WEIGHT))
    return out


def _benign_passages(data_root: Any, seed: int, parts: tuple[Part, ...]) -> list[Example]:
    """Paragraphs of answers to benign prompts, and where two answers meet, labelled benign:
    what a pasted document is made of. The input check scores every paragraph and window of
    a long turn and decides on the riskiest, and a classifier that has only seen requests and
    short comments reads some of an ordinary document's hundreds of units as harmful (a
    100 KB document of benign answers was flagged on its own 38% of the time). Training and
    validation parts only: the held-out answers are what the long-document bench pastes."""
    rng = random.Random(seed + 104729)
    answers: dict[Part, list[tuple[str, str]]] = {p: [] for p in parts}
    for name in PASSAGE_SOURCES:
        records = _records(name, "preference" if name == "coconot" else None, data_root)
        for part in parts:
            if part is Part.HELD_OUT:
                continue
            for r in in_part(records, part, data_root=data_root):
                answer = (r.chosen if name == "coconot" else r.answer) or ""
                if (r.harmful or getattr(r, "label", "") == "refused" or len(answer) < 200
                        or answer.lstrip().lower().startswith(REFUSAL_OPENINGS)):
                    continue
                answers[part].append((f"{name}/{record_key(r)}", answer.strip()))
    out: list[Example] = []
    for part, pool in answers.items():
        for key, answer in pool:
            for i, para in enumerate(p.strip() for p in answer.split("\n\n")):
                if len(para) >= 120:
                    out.append(Example(para, False, f"{key.split('/')[0]}:passages", part,
                                       PASSAGE, key=f"{key}/p{i}"))
        # where one answer ends and the next begins, as a window straddling them reads it
        order = list(range(len(pool)))
        rng.shuffle(order)
        for a, b in pairwise(order):
            (ka, ta), (kb, tb) = pool[a], pool[b]
            out.append(Example(ta[-400:].lstrip() + "\n\n" + tb[:400].rstrip(), False,
                               f"{ka.split('/')[0]}:passages", part, PASSAGE,
                               key=f"{ka}+{kb}"))
    return out


def _weighted(examples: list[Example]) -> list[Example]:
    """Cap the weight of very large datasets (WEIGHT_CAPS) and of the benign passages
    (PASSAGE_SHARE), per part: training fits and the validation calibration both see the same
    mix."""
    counts = Counter((e.source, e.part) for e in examples)
    passages = Counter(e.part for e in examples if e.domain == PASSAGE)
    # shares of the rest: adding passages leaves every other example's weight as it was
    totals = Counter(e.part for e in examples if e.domain != PASSAGE)
    out = []
    for e in examples:
        if e.domain == PASSAGE:
            w = min(1.0, PASSAGE_SHARE * totals[e.part] / passages[e.part])
            out.append(e if w == 1.0 else Example(**{**e.__dict__, "weight": w}))
            continue
        cap = WEIGHT_CAPS.get(e.source)
        n = counts[(e.source, e.part)]
        w = min(1.0, cap * totals[e.part] / n) if cap else 1.0
        out.append(e if w == 1.0 else Example(**{**e.__dict__, "weight": w}))
    return out


# --- output stage ------------------------------------------------------------------------------


def output_examples(data_root: str | Path | None = None, *, seed: int = 0,
                    parts: Iterable[Part] = tuple(Part)) -> list[Example]:
    """(request, answer) examples for the output check, in each record's own part (built per
    side, like input_examples: a part's examples do not depend on the parts asked for)."""
    parts = tuple(parts)
    return [e for side in _sides(parts) for e in _output_side(data_root, seed, side)
            if e.part in parts]


def _output_side(data_root: Any, seed: int, parts: tuple[Part, ...]) -> list[Example]:
    rng = random.Random(seed)
    out: list[Example] = []

    def add(records, label_of, source=None, weight=1.0, tags=()):
        for part in parts:
            for r in in_part(records, part, data_root=data_root):
                answer = getattr(r, "answer", None)
                label = label_of(r)
                if label is None or answer is None or not answer.strip():
                    continue
                out.append(Example(answer, bool(label), source or r.source, part,
                                   stage=Stage.OUTPUT, request=r.text, weight=weight,
                                   tags=tags, key=f"{r.source}/{record_key(r)}"))

    # human labels: an unsafe request answered (fully or partly) is an unsafe exchange
    add(_records("xstest_completions", None, data_root),
        lambda r: r.harmful and r.label in ("complied", "partial"))
    add(_records("gptfuzz_labeled_responses", None, data_root), lambda r: r.answer_harmful)
    add(_records("diasafety", "all", data_root), lambda r: r.answer_harmful)
    # automatic labels (Llama Guard 2) on JailbreakBench prompts; harmless prompts' answers
    add(_records("refusal_direction_completions", None, data_root),
        lambda r: r.answer_harmful if r.harmful else False, weight=0.5, tags=("automatic",))
    # unsafe answers (BeaverTails) and safe answers to harmful requests (Safety-Tuned LLaMAs)
    bt = _records("beavertails_sample", None, data_root)
    for part in parts:
        for r in in_part(bt, part, data_root=data_root):
            out.append(Example(r.response, True, r.source, part, stage=Stage.OUTPUT,
                               request=r.text, key=f"{r.source}/{record_key(r)}",
                               categories=tuple(f"{r.source}:{c}" for c in r.categories)))
    stl = [r for r in _records("safety_tuned_llamas", "training", data_root) if r.safe_response]
    for part in parts:
        for r in in_part(stl, part, data_root=data_root):
            out.append(Example(r.safe_response, False, r.source, part, stage=Stage.OUTPUT,
                               request=r.text, key=f"{r.source}/{record_key(r)}",
                               weight=min(1.0, 800 / max(1, len(stl)))))
    # compliant and over-refusing answers to benign prompts: both safe
    coco = [r for r in _records("coconot", "preference", data_root)]
    for part in parts:
        for r in in_part(coco, part, data_root=data_root):
            for answer in (r.chosen, r.rejected):
                if answer and answer.strip():
                    out.append(Example(answer, False, r.source, part, stage=Stage.OUTPUT,
                                       request=r.text, key=f"{r.source}/{record_key(r)}"))
    # moderation texts as answers to benign prompts: the content decides
    benign = [r.text for r in _records("u_safebench", "helpfulness", data_root)]
    mod = _records("openai_moderation", None, data_root)
    for part in parts:
        for r in in_part(mod, part, data_root=data_root):
            out.append(Example(r.text, bool(r.harmful), "moderation_as_answer", part,
                               stage=Stage.OUTPUT, request=rng.choice(benign),
                               categories=tuple(f"openai_moderation:{c}" for c in r.categories),
                               key=f"{r.source}/{record_key(r)}"))
    return out


# --- categories ------------------------------------------------------------------------------


def category_map() -> dict[str, dict[str, list[str]]]:
    """specs/guard/category_map.yaml: taxonomy -> {"<dataset>:<label>": [category ids]}."""
    import yaml

    path = resources.files("specguard.specs") / "guard" / "category_map.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def mapped_categories(e: Example, mapping: dict[str, list[str]]) -> list[str]:
    out: list[str] = []
    for c in e.categories:
        for cid in mapping.get(c, []):
            if cid not in out:
                out.append(cid)
    return out


def summary(examples: list[Example]) -> dict[str, Any]:
    """Counts per part, source and label: what a model card records (never texts)."""
    table: dict[str, dict[str, dict[str, int]]] = {}
    for e in examples:
        cell = table.setdefault(e.part.value, {}).setdefault(e.source, {"harmful": 0, "benign": 0})
        cell["harmful" if e.harmful else "benign"] += 1
    return table


__all__ = ["Example", "input_examples", "output_examples", "category_map", "mapped_categories",
           "summary", "NON_COMMERCIAL"]
