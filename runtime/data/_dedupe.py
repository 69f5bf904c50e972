"""The near-duplicate part of the split: training and validation records that repeat an
evaluation record (of any dataset) are excluded, so no figure is measured on a paraphrase of
something a model trained or was chosen on.

The exclusions are computed once over every prompt-level dataset (`build_manifest`, run by
`specguard data dedupe`) and shipped as near_duplicates.json next to this module: record keys,
cosines and fingerprints of the files they were computed from, never text. Trainers and suites
read the same file, so they agree by construction. A dataset whose files differ from the
fingerprint (another copy of the data) is reported by `manifest_status` and gets no exclusions
until the manifest is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..config import data_dir

MANIFEST = Path(__file__).with_name("near_duplicates.json")
MANIFEST_FORMAT = 1

# Prompt-level datasets the filter compares (every subset). Answer-level sets split with the
# prompt sets their prompts come from (their records name that group); RealToxicityPrompts is
# evaluation-only continuation prompts.
POOL = (
    "advbench", "harmbench", "jbb_artifacts", "simple_safety_tests", "xstest",
    "openai_moderation", "toxicchat", "beavertails_sample", "jigsaw_detoxify_sample",
    "u_safebench", "inthewild_jailbreaks", "coconot", "harmfulqa_dangerousqa",
    "davidson_hate_offensive", "toxigen_seeds", "convabuse", "toxic_spans_semeval2021",
    "cyberseceval_frr_pi", "multijail", "safety_tuned_llamas", "hh_rlhf_harmless_test",
    "refusal_direction_completions",
)


def record_key(record: Any) -> str:
    """A record's key, unique within its dataset (ids repeat across some datasets' subsets)."""
    return f"{record.subset}:{record.id}" if record.subset else str(record.id)


def fingerprint(name: str, root: Path) -> str:
    """sha256 over a dataset's files (size and content), in the registry's order."""
    from ._registry import get_spec

    h = hashlib.sha256()
    for rel in sorted(set(get_spec(name).files.values())):
        path = root / rel
        h.update(rel.encode())
        if path.is_file():
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Exclusion:
    key: str  # the excluded record, "<dataset>/<record key>"
    nearest: str  # the record it repeats, "<dataset>/<record key>"
    cosine: float


@lru_cache(maxsize=1)
def _manifest(path: str = str(MANIFEST)) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        return {"format": MANIFEST_FORMAT, "datasets": {}, "excluded": {}}
    return json.loads(p.read_text(encoding="utf-8"))


@lru_cache(maxsize=8)
def _valid_datasets(root: str) -> frozenset[str]:
    """Datasets whose files match the manifest's fingerprints in this data directory."""
    m = _manifest()
    return frozenset(name for name, info in m.get("datasets", {}).items()
                     if fingerprint(name, Path(root)) == info.get("fingerprint"))


def is_excluded(record: Any, root: str | Path | None = None) -> bool:
    """Whether a (training or validation side) record repeats an evaluation record."""
    m = _manifest()
    excluded = m.get("excluded", {}).get(record.source)
    if not excluded:
        return False
    if record.source not in _valid_datasets(str(data_dir(root))):
        return False
    return record_key(record) in excluded


def manifest_status(root: str | Path | None = None) -> dict[str, str]:
    """Per pooled dataset: 'ok', 'stale' (files differ from the fingerprint: rebuild with
    `specguard data dedupe`) or 'missing' (not in the manifest)."""
    m = _manifest()
    r = data_dir(root)
    out = {}
    for name in POOL:
        info = m.get("datasets", {}).get(name)
        if info is None:
            out[name] = "missing"
        else:
            out[name] = "ok" if fingerprint(name, r) == info.get("fingerprint") else "stale"
    return out


def build_manifest(
    embed: Callable[[list[str]], Any],
    *,
    embed_multilingual: Callable[[list[str]], Any] | None = None,
    root: str | Path | None = None,
    threshold: float | None = None,
    encoder_name: str = "minilm",
    datasets: Iterable[str] = POOL,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compare every training/validation record with every evaluation record (and training
    with validation) of the pooled datasets; those at or above `threshold` cosine, or equal
    after case and whitespace folding, are excluded. English texts are compared with `embed`,
    the others with `embed_multilingual` (an English encoder maps all Arabic or Chinese text
    close together), each only with texts of its own kind. Returns the manifest (write it
    with `write_manifest`)."""
    import numpy as np

    from ..encoders import looks_english
    from ._registry import load
    from ._splits import MULTILINGUAL_NEAR_DUPLICATE_COSINE, NEAR_DUPLICATE_COSINE, Part, record_part

    threshold = NEAR_DUPLICATE_COSINE if threshold is None else threshold
    thresholds = {True: threshold, False: MULTILINGUAL_NEAR_DUPLICATE_COSINE
                  if embed_multilingual is not None else threshold}
    r = data_dir(root)
    say = progress or (lambda _m: None)
    parts: dict[tuple[Part, bool], list[Any]] = {(p, en): [] for p in Part for en in (True, False)}
    info: dict[str, dict[str, Any]] = {}
    for name in datasets:
        records = [x for x in load(name, subset="all", data_dir_override=r) if x.text.strip()]
        info[name] = {"fingerprint": fingerprint(name, r), "records": len(records)}
        for x in records:
            parts[(record_part(x), looks_english(x.text))].append(x)
    say(f"pool: {sum(v['records'] for v in info.values())} records; "
        + ", ".join(f"{p.value}{'' if en else ' (not English)'} {len(v)}"
                    for (p, en), v in parts.items()))
    excluded: dict[str, dict[str, dict[str, Any]]] = {}

    def compare(side: list[Any], e_side: Any, ref: list[Any], e_ref: Any,
                threshold: float) -> set[int]:
        norm = {" ".join(x.text.lower().split()): j for j, x in enumerate(ref)}
        hits: set[int] = set()
        if not side or not ref:
            return hits
        for b in range(0, len(side), 2048):
            sims = e_side[b:b + 2048] @ e_ref.T
            best = sims.argmax(axis=1)
            for i in range(sims.shape[0]):
                x = side[b + i]
                j = norm.get(" ".join(x.text.lower().split()))
                cos = 1.0 if j is not None else float(sims[i, best[i]])
                j = int(best[i]) if j is None else j
                if cos >= threshold:
                    hits.add(b + i)
                    excluded.setdefault(x.source, {})[record_key(x)] = {
                        "nearest": f"{ref[j].source}/{record_key(ref[j])}",
                        "cosine": round(cos, 4)}
        return hits

    for english in (True, False):
        fn = embed if english or embed_multilingual is None else embed_multilingual
        held, val, train = (parts[(p, english)] for p in (Part.HELD_OUT, Part.VALIDATION,
                                                          Part.TRAIN))
        kind = "English" if english else "other languages"
        say(f"{kind}: encoding {len(held) + len(val) + len(train)} texts")

        def vectors(items: list[Any], fn=fn) -> Any:
            return np.asarray(fn([x.text for x in items]), dtype=np.float32) if items else \
                np.zeros((0, 1), dtype=np.float32)

        e_held, e_val, e_train = vectors(held), vectors(val), vectors(train)
        say(f"{kind}: training and validation against the evaluation part")
        compare(val, e_val, held, e_held, thresholds[english])
        dropped_train = compare(train, e_train, held, e_held, thresholds[english])
        say(f"{kind}: training against validation")
        rest = [i for i in range(len(train)) if i not in dropped_train]
        compare([train[i] for i in rest], e_train[rest], val, e_val, thresholds[english])
    for name, v in info.items():
        v["excluded"] = len(excluded.get(name, {}))
    return {
        "format": MANIFEST_FORMAT,
        "encoder": encoder_name if embed_multilingual is None else f"{encoder_name}+e5",
        "threshold": threshold,
        "threshold_not_english": thresholds[False],
        "datasets": info,
        "excluded": {k: dict(sorted(v.items())) for k, v in sorted(excluded.items())},
    }


def write_manifest(manifest: dict[str, Any], path: str | Path = MANIFEST) -> Path:
    path = Path(path)
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    _manifest.cache_clear()
    _valid_datasets.cache_clear()
    return path
