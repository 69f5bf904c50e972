"""A trained fast tier on disk: a folder with `card.json` (configuration, calibration,
operating points, training data counts, held-out figures: the model card) and `weights.npz`
(arrays only, read with allow_pickle=False). Loading one runs no code.

Per stage (input, output) an artifact holds:
- members: a head per feature block (tfidf, minilm, e5), each giving a logit per window;
- combiners: for each set of members that can be computed together (the cascade computes
  TF-IDF first, an encoder only when needed), a logistic regression over the members' logits,
  fitted on the validation part: its output is the calibrated P(unsafe);
- a category head (one-vs-rest over a taxonomy's ids) over one member's features, and
  optionally category exemplars (labelled training texts' encoder vectors: a flagged text's
  categories are read from its nearest ones);
- operating points: named thresholds (strict / balanced / permissive) chosen on validation;
- the cascade band: with TF-IDF alone, scores outside it decide without an encoder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .exemplars import CategoryExemplars
from .features import BLOCKS, Tfidf
from .heads import HEAD_KINDS, LinearHead, MLPHead, head_kind
from .verdict import Stage

ARTIFACT_FORMAT = 2
CARD = "card.json"
WEIGHTS = "weights.npz"
PRESETS = ("strict", "balanced", "permissive")


def combo_key(members: tuple[str, ...] | list[str]) -> str:
    """The canonical name of a set of members: 'tfidf+minilm' (in BLOCKS order)."""
    return "+".join(b for b in BLOCKS if b in members)


def routed_members(english: bool, members: set[str] | dict[str, Any],
                   combiners: set[str] | dict[str, Any] | None = None) -> tuple[str, ...]:
    """Which members score a unit the cascade does not settle with TF-IDF alone: TF-IDF with
    MiniLM (the fine-tuned one when there is one) for English text; e5 for the rest, alone
    when the artifact has an `e5` combiner. TF-IDF cannot read a language it never saw, and
    its vote only pulled e5's down there: trained without Chinese, TF-IDF alone caught none of
    the Chinese requests. Artifacts without that combiner combine TF-IDF with e5; without e5,
    MiniLM reads everything (and without MiniLM, e5 reads English with TF-IDF)."""
    en = "minilm_ft" if "minilm_ft" in members else ("minilm" if "minilm" in members else None)
    if "e5" in members and not english:
        if combiners is None or "e5" in combiners:
            return ("e5",)
        return ("tfidf", "e5")
    if en or "e5" in members:
        return ("tfidf", en or "e5")
    return ("tfidf",)


def tfidf_decides(p_tfidf: Any, band: tuple[float, float] | None, english: Any,
                  members: set[str] | dict[str, Any]) -> Any:
    """Which units TF-IDF decides alone under the cascade: those outside the band, except
    text that does not read as English when the artifact has e5. TF-IDF's n-grams come mostly
    from English (and a few other languages), so its certainty about a Thai or Bengali
    request means nothing: it gave 0.12 to a Thai request for a pipe bomb."""
    import numpy as np

    p_tfidf = np.asarray(p_tfidf)
    if band is None:
        return np.zeros(len(p_tfidf), dtype=bool)
    lo, hi = band
    sure = (p_tfidf <= lo) | (p_tfidf >= hi)
    if "e5" in members:
        sure &= np.asarray(english, dtype=bool)
    return sure


@dataclass
class StageHeads:
    members: dict[str, LinearHead | MLPHead]
    combiners: dict[str, LinearHead]  # combo_key -> logistic regression over member logits
    category_ids: list[str] = field(default_factory=list)
    category_member: str | None = None  # the block the category head reads
    category_head: LinearHead | None = None
    thresholds: dict[str, float] = field(default_factory=dict)  # preset -> P(unsafe) threshold
    cascade: tuple[float, float] | None = None  # TF-IDF-only scores outside decide alone
    # Labelled training texts a flagged text's categories are read from (guard/exemplars.py).
    category_exemplars: CategoryExemplars | None = None


@dataclass
class GuardArtifact:
    name: str
    tfidf: dict[Stage, Tfidf]
    stages: dict[Stage, StageHeads]
    card: dict[str, Any]
    taxonomy: str = "beavertails"
    format: int = ARTIFACT_FORMAT
    path: Path | None = None
    # Files copied into the folder on save (the fine-tuned ONNX classifiers), by name.
    files: dict[str, Path] = field(default_factory=dict)

    def file(self, name: str) -> Path | None:
        """A file of the artifact: in its folder once saved or loaded, else where training
        left it."""
        if self.path is not None and (self.path / name).is_file():
            return self.path / name
        return self.files.get(name)

    @property
    def blocks(self) -> set[str]:
        return {b for s in self.stages.values() for b in s.members}

    def save(self, folder: str | Path) -> Path:
        import numpy as np

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {}
        stages_meta: dict[str, Any] = {}
        for stage, heads in self.stages.items():
            s = stage.value
            arrays.update(self.tfidf[stage].to_arrays(f"{s}/tfidf/"))
            meta: dict[str, Any] = {"members": {}, "combiners": list(heads.combiners),
                                    "category_ids": heads.category_ids,
                                    "category_member": heads.category_member,
                                    "thresholds": heads.thresholds,
                                    "cascade": list(heads.cascade) if heads.cascade else None}
            for m, head in heads.members.items():
                meta["members"][m] = head_kind(head)
                arrays.update(head.arrays(f"{s}/member/{m}/"))
            for key, head in heads.combiners.items():
                arrays.update(head.arrays(f"{s}/combiner/{key}/"))
            if heads.category_head is not None:
                arrays.update(heads.category_head.arrays(f"{s}/categories/"))
            if heads.category_exemplars is not None:
                arrays.update(heads.category_exemplars.arrays(f"{s}/exemplars/"))
                meta["category_exemplars"] = heads.category_exemplars.meta()
            stages_meta[s] = meta
        np.savez_compressed(folder / WEIGHTS, **arrays)
        import shutil

        for name, src in self.files.items():
            if Path(src).resolve() != (folder / name).resolve():
                shutil.copyfile(src, folder / name)
        card = {**self.card, "format": ARTIFACT_FORMAT, "name": self.name,
                "taxonomy": self.taxonomy, "stages": stages_meta, "files": sorted(self.files)}
        (folder / CARD).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n",
                                   encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> GuardArtifact:
        import numpy as np

        folder = Path(folder)
        card_path, weights_path = folder / CARD, folder / WEIGHTS
        if not card_path.is_file() or not weights_path.is_file():
            raise ConfigError(
                f"{folder} is not a fast-tier artifact (it needs {CARD} and {WEIGHTS}).",
                hint="Name a shipped artifact (specguard guard info lists them) or build one "
                "with `specguard guard train`.")
        card = json.loads(card_path.read_text(encoding="utf-8"))
        if card.get("format") != ARTIFACT_FORMAT:
            raise ConfigError(f"{folder} is an artifact of format {card.get('format')}, this "
                              f"specguard reads format {ARTIFACT_FORMAT}.",
                              hint="Rebuild it with `specguard guard train`.")
        with np.load(weights_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        tfidf: dict[Stage, Tfidf] = {}
        stages: dict[Stage, StageHeads] = {}
        for s, meta in card["stages"].items():
            stage = Stage(s)
            tfidf[stage] = Tfidf.from_arrays(arrays, f"{s}/tfidf/")
            members = {}
            for m, kind in meta["members"].items():
                if m not in BLOCKS or kind not in HEAD_KINDS:
                    raise ConfigError(f"{folder}: unknown member {m!r} ({kind}).")
                members[m] = HEAD_KINDS[kind].load(arrays, f"{s}/member/{m}/")
            combiners = {k: LinearHead.load(arrays, f"{s}/combiner/{k}/") for k in meta["combiners"]}
            cat = (LinearHead.load(arrays, f"{s}/categories/")
                   if f"{s}/categories/coef" in arrays else None)
            exemplars = (CategoryExemplars.load(arrays, f"{s}/exemplars/",
                                                meta["category_exemplars"])
                         if meta.get("category_exemplars") else None)
            stages[stage] = StageHeads(
                members, combiners, list(meta.get("category_ids") or []),
                meta.get("category_member"), cat, dict(meta.get("thresholds") or {}),
                tuple(meta["cascade"]) if meta.get("cascade") else None, exemplars)
        files = {name: folder / name for name in card.get("files", [])}
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise ConfigError(f"{folder} lacks {', '.join(missing)}.",
                              hint="Copy the whole artifact folder, or retrain it.")
        return cls(card["name"], tfidf, stages, card, card.get("taxonomy", "beavertails"),
                   path=folder, files=files)
