"""Requests written for specguard: harmful requests in the styles users actually type (terse,
informal, first person, a backstory, a fiction cover, a claimed profession, code) and benign
look-alikes on the same topics (defence, history, definitions, homonyms, safe fiction).

Why: every harmful-request set in ../shared/data already trains the guard, and what it misses
on held-out data is mostly phrasing those sets do not have. The texts were written from
scratch, without reading any dataset. Training on them is opt-in (`--written-requests`): on
the datasets' validation part it cost recall at the balanced point (docs/results/guard.md).

They split like a dataset (`part`: a hash of the folded text; a quarter held out, the split's
validation share of the rest validates), so the guard is also measured on phrasings of this
kind that it never trained on. Training and validation texts within MiniLM cosine 0.75 of a
held-out written text (and training texts that close to a validation one) are left out
(`excluded`, recorded in written_requests.json): the writers wrote many texts per topic and
style, and a near-copy on both sides would flatter the figure.

`admit` is how new texts join: exact repeats are folded, and any text whose MiniLM cosine with a
validation or held-out record of any pooled dataset reaches the split's near-duplicate
threshold is dropped (whatever its label), so no figure is measured on a paraphrase of
something the guard trained on. The dropped count is kept in written_requests.json; the texts
that were dropped are not kept.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..data import Part
from ..data._splits import part_of
from ..errors import ConfigError

FILE = Path(__file__).with_name("written_requests.jsonl")
RECORD = Path(__file__).with_name("written_requests.json")
SOURCE = "written:requests"
SPLIT_NAME = "written_requests"  # the split's dataset name (a hash of it and the text)
HELD_OUT_SHARE = 0.25

# The harm topics; category_map.yaml maps each ("written_requests:<topic>") onto the taxonomies.
TOPICS = (
    "cyber", "fraud_scams", "theft_property", "privacy_stalking", "weapons", "explosives_cbrn",
    "drugs", "violence", "self_harm", "misinformation", "defamation", "harassment_hate",
    "election_extremism", "copyright", "exploitation_trafficking", "sexual_content",
    "manipulation_unethical", "animal_abuse", "dangerous_advice",
)


@dataclass(frozen=True)
class WrittenRequest:
    text: str
    harmful: bool
    topic: str
    style: str  # harmful: how it is phrased; benign: what kind of look-alike it is


@lru_cache(maxsize=2)
def load(path: str = str(FILE)) -> tuple[WrittenRequest, ...]:
    """The admitted requests, in file order (empty when the file is absent)."""
    p = Path(path)
    if not p.is_file():
        return ()
    return tuple(parse(json.loads(line), f"{p.name}:{n}")
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if line.strip())


def key(w: WrittenRequest) -> str:
    """A text's stable key (folded text's hash): its split group and its name in records."""
    import hashlib

    return hashlib.sha256(_fold(w.text).encode()).hexdigest()[:16]


def part(w: WrittenRequest) -> Part:
    return part_of(SPLIT_NAME, key(w), HELD_OUT_SHARE)


def excluded(record: str = str(RECORD)) -> frozenset[str]:
    """Keys of training and validation texts that repeat a held-out (or, for training, a
    validation) written text."""
    p = Path(record)
    if not p.is_file():
        return frozenset()
    return frozenset(json.loads(p.read_text(encoding="utf-8")).get("excluded", []))


def in_part(which: Part, *, path: str = str(FILE), record: str = str(RECORD)
            ) -> list[tuple[int, WrittenRequest]]:
    """(index in the file, request) of one part, without the excluded near-copies."""
    drop = excluded(record) if which is not Part.HELD_OUT else frozenset()
    return [(i, w) for i, w in enumerate(load(path)) if part(w) is which and key(w) not in drop]


def near_copies(rows: Sequence[WrittenRequest], embed: Callable[[list[str]], Any], *,
                threshold: float) -> list[str]:
    """Keys of training/validation rows within `threshold` cosine of a held-out row, and of
    training rows that close to a validation row (the split's rule, inside the written set)."""
    import numpy as np

    by = {p: [w for w in rows if part(w) is p] for p in Part}
    vec = {p: np.asarray(embed([w.text for w in by[p]]), dtype=np.float32)
           if by[p] else np.zeros((0, 1), dtype=np.float32) for p in Part}
    out: set[str] = set()

    def close(side: Part, ref: Any) -> None:
        if by[side] and len(ref):
            best = (vec[side] @ ref.T).max(axis=1)
            out.update(key(w) for w, c in zip(by[side], best, strict=True) if c >= threshold)

    close(Part.VALIDATION, vec[Part.HELD_OUT])
    close(Part.TRAIN, vec[Part.HELD_OUT])
    # training rows against the validation rows that stay
    close(Part.TRAIN, vec[Part.VALIDATION][[i for i, w in enumerate(by[Part.VALIDATION])
                                            if key(w) not in out]])
    return sorted(out)


def parse(obj: Any, where: str) -> WrittenRequest:
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object per line",
                          hint='write {"text": ..., "harmful": true|false, "topic": ..., "style": ...}')
    text, harmful, topic = obj.get("text"), obj.get("harmful"), obj.get("topic")
    style = obj.get("style") or obj.get("kind") or ""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where}: 'text' must be a non-empty string",
                          hint="drop the line or give it a text")
    if not isinstance(harmful, bool):
        raise ConfigError(f"{where}: 'harmful' must be true or false",
                          hint="label every written request")
    if topic not in TOPICS:
        raise ConfigError(f"{where}: unknown topic {topic!r}",
                          hint=f"use one of {', '.join(TOPICS)}")
    return WrittenRequest(" ".join(text.split()), harmful, topic, str(style))


def _fold(text: str) -> str:
    return " ".join(text.lower().split())


def admit(candidates: Sequence[WrittenRequest], reference: Sequence[str],
          embed: Callable[[list[str]], Any], *, threshold: float,
          existing: Sequence[WrittenRequest] = ()) -> tuple[list[WrittenRequest], dict[str, Any]]:
    """The candidates that may join: not a repeat of each other or of `existing`, and below
    `threshold` cosine (and not equal after case folding) to every `reference` text (the
    validation and held-out records). Returns (admitted, counts)."""
    import numpy as np

    seen = {_fold(w.text) for w in existing}
    unique: list[WrittenRequest] = []
    for w in candidates:
        folded = _fold(w.text)
        if folded not in seen:
            seen.add(folded)
            unique.append(w)
    ref_folded = {_fold(t) for t in reference}
    best = np.zeros(len(unique), dtype=np.float32)
    if unique and reference:
        e_ref = np.asarray(embed(list(reference)), dtype=np.float32)
        e_new = np.asarray(embed([w.text for w in unique]), dtype=np.float32)
        for b in range(0, len(unique), 1024):
            best[b:b + 1024] = (e_new[b:b + 1024] @ e_ref.T).max(axis=1)
    keep = [w for w, cos in zip(unique, best, strict=True)
            if cos < threshold and _fold(w.text) not in ref_folded]
    dropped = [w for w, cos in zip(unique, best, strict=True)
               if cos >= threshold or _fold(w.text) in ref_folded]
    counts = {
        "candidates": len(candidates),
        "repeats_folded": len(candidates) - len(unique),
        "near_duplicates_dropped": len(dropped),
        "near_duplicates_dropped_by_label": dict(Counter(
            "harmful" if w.harmful else "benign" for w in dropped)),
        "admitted": len(keep),
        "threshold": threshold,
    }
    return keep, counts


def write(admitted: Iterable[WrittenRequest], counts: dict[str, Any], *,
          embed: Callable[[list[str]], Any], threshold: float,
          path: Path = FILE, record: Path = RECORD) -> tuple[Path, Path]:
    """Append the admitted requests to the file, and the admission's counts (plus the file's
    totals per label, topic, style and part, and the near-copies left out) to its record."""
    rows = [*load(str(path)), *admitted]
    drop = near_copies(rows, embed, threshold=threshold)
    path.write_text("".join(json.dumps({"text": w.text, "harmful": w.harmful, "topic": w.topic,
                                        "style": w.style}, ensure_ascii=False) + "\n"
                            for w in rows), encoding="utf-8")
    load.cache_clear()
    prior = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
    record.write_text(json.dumps({
        "admissions": [*prior.get("admissions", []), counts],
        "totals": {
            "harmful": sum(w.harmful for w in rows),
            "benign": sum(not w.harmful for w in rows),
            "by_topic": dict(sorted(Counter(
                f"{w.topic}:{'harmful' if w.harmful else 'benign'}" for w in rows).items())),
            "by_style": dict(sorted(Counter(w.style for w in rows).items())),
            "by_part": dict(sorted(Counter(
                f"{part(w).value}:{'harmful' if w.harmful else 'benign'}" for w in rows).items())),
            "near_copies_left_out": len(drop),
        },
        "excluded": drop,
    }, indent=1) + "\n", encoding="utf-8")
    return path, record


def evaluation_texts(data_root: str | Path | None = None) -> list[str]:
    """Every validation and held-out text of the pooled datasets (what written data must not
    repeat)."""
    from ..data import load as load_dataset
    from ..data._dedupe import POOL
    from ..data._splits import record_part

    out = []
    for name in POOL:
        for r in load_dataset(name, subset="all", data_dir_override=data_root):
            if r.text.strip() and record_part(r) is not Part.TRAIN:
                out.append(r.text)
    return out


__all__ = [
    "SOURCE",
    "TOPICS",
    "WrittenRequest",
    "admit",
    "evaluation_texts",
    "excluded",
    "in_part",
    "key",
    "load",
    "near_copies",
    "parse",
    "part",
    "write",
]
