"""Requests written for specguard: harmful requests in the styles users actually type (terse,
informal, first person, a backstory, a fiction cover, a claimed profession, code) and benign
look-alikes on the same topics (defence, history, definitions, homonyms, safe fiction).

Why: every harmful-request set in ../shared/data already trains the guard, and what it misses
on held-out data is mostly phrasing those sets do not have. The texts were written from
scratch, without reading any dataset, and only train (never validate or measure).

`admit` is how texts join: exact repeats are folded, and any text whose MiniLM cosine with a
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

from ..errors import ConfigError

FILE = Path(__file__).with_name("written_requests.jsonl")
RECORD = Path(__file__).with_name("written_requests.json")
SOURCE = "written:requests"

# topic -> the taxonomy category it is an example of (category_map.yaml keys these as
# "written_requests:<topic>")
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
    """The candidates that may train: not a repeat of each other or of `existing`, and below
    `threshold` cosine (and not equal after case folding) to every `reference` text (the
    validation and held-out records). Returns (admitted, counts)."""
    import numpy as np

    seen = {_fold(w.text) for w in existing}
    unique: list[WrittenRequest] = []
    for w in candidates:
        key = _fold(w.text)
        if key not in seen:
            seen.add(key)
            unique.append(w)
    ref_folded = {_fold(t) for t in reference}
    e_ref = np.asarray(embed(list(reference)), dtype=np.float32)
    e_new = np.asarray(embed([w.text for w in unique]), dtype=np.float32)
    best = np.zeros(len(unique), dtype=np.float32)
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
          path: Path = FILE, record: Path = RECORD) -> tuple[Path, Path]:
    """Append the admitted requests to the file, and the admission's counts (plus the file's
    totals per label, topic and style) to its record."""
    rows = [*load(str(path)), *admitted]
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
        },
    }, indent=1) + "\n", encoding="utf-8")
    return path, record


def evaluation_texts(data_root: str | Path | None = None) -> list[str]:
    """Every validation and held-out text of the pooled datasets (what written data must not
    repeat)."""
    from ..data import Part, load as load_dataset
    from ..data._dedupe import POOL
    from ..data._splits import record_part

    out = []
    for name in POOL:
        for r in load_dataset(name, subset="all", data_dir_override=data_root):
            if r.text.strip() and record_part(r) is not Part.TRAIN:
                out.append(r.text)
    return out


__all__ = ["WrittenRequest", "TOPICS", "SOURCE", "load", "parse", "admit", "write", "evaluation_texts"]
