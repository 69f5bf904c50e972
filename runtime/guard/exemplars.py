"""Category exemplars: which harm a flagged text is about, read from the labelled training texts
it is closest to.

The TF-IDF category head learned request categories from about 250 English requests against
19,000 hate and offensive texts, and on held-out requests it named a right category for half
of them. Here the categories come from the k nearest labelled training texts in a sentence
encoder's space (MiniLM for English, multilingual e5 for other text, as the members route):
a request for a pipe bomb sits next to the weapons requests, whatever its words.

    ex = fit_exemplars(train, validation, category_ids, encoders)   # k and confidence on validation
    probs = ex.probabilities("minilm", vectors)                     # (m, categories)

Only the verdicts the fast tier flags are read this way (FastChecker: a refusal's or
/v1/moderations' named categories); per-category scores of texts it lets through still come
from the head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..encoders import reads_as_english

EXEMPLAR_ENCODERS = ("minilm", "e5")  # English text, then text that does not read as English
K_GRID = (3, 5, 10, 20)
CONFIDENCE_GRID = (0.2, 0.3, 0.4, 0.5, 0.6)
TOP = 3  # at most this many categories named, most likely first


@dataclass(frozen=True)
class LabelledText:
    text: str
    categories: frozenset[str]
    domain: str  # "requests" or "toxicity": choices weigh the two alike


@dataclass
class CategoryExemplars:
    vectors: dict[str, Any]  # encoder name -> (n, d) float16, unit-length rows
    labels: Any  # (n, len(category_ids)) bool
    category_ids: list[str]
    k: int
    confidence: float
    record: dict[str, Any] = field(default_factory=dict)  # counts and validation figures

    def encoder_for(self, text: str) -> str:
        return "minilm" if reads_as_english(text) and "minilm" in self.vectors else "e5"

    def __post_init__(self) -> None:
        import numpy as np

        # Stored as float16; searched as float32 (converting per query cost 1.4 ms).
        self._search = {name: np.asarray(v, dtype=np.float32) for name, v in self.vectors.items()}

    def probabilities(self, encoder: str, vectors: Any) -> Any:
        """(m, categories): the share of each query's k nearest exemplars in each category."""
        import numpy as np

        base = self._search[encoder]
        q = np.asarray(vectors, dtype=np.float32).reshape(-1, base.shape[1])
        k = min(self.k, len(base))
        sims = q @ base.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        return self.labels[top].mean(axis=1)

    def named(self, probs: Any) -> list[str]:
        order = sorted(range(len(self.category_ids)), key=lambda j: -probs[j])
        return [self.category_ids[j] for j in order if probs[j] >= self.confidence][:TOP]

    # -- storage (arrays only: the artifact loads without unpickling) -----------------------

    def arrays(self, prefix: str) -> dict[str, Any]:
        import numpy as np

        out = {f"{prefix}labels": np.asarray(self.labels, dtype=bool)}
        for name, v in self.vectors.items():
            out[f"{prefix}vectors/{name}"] = np.asarray(v, dtype=np.float16)
        return out

    def meta(self) -> dict[str, Any]:
        return {"category_ids": self.category_ids, "k": self.k, "confidence": self.confidence,
                "encoders": sorted(self.vectors), **self.record}

    @classmethod
    def load(cls, arrays: dict[str, Any], prefix: str, meta: dict[str, Any]) -> CategoryExemplars:
        vectors = {name: arrays[f"{prefix}vectors/{name}"] for name in meta["encoders"]}
        record = {k: v for k, v in meta.items()
                  if k not in ("category_ids", "k", "confidence", "encoders")}
        return cls(vectors, arrays[f"{prefix}labels"], list(meta["category_ids"]),
                   int(meta["k"]), float(meta["confidence"]), record)


def embed(texts: Sequence[str], encoders: dict[str, Any]) -> dict[str, Any]:
    """Every text through every exemplar encoder (e5 reads the English exemplars too, so a
    request in a language no exemplar is written in still finds its neighbours)."""
    import numpy as np

    return {name: np.asarray(encoders[name].encode(list(texts)), dtype=np.float32)
            for name in EXEMPLAR_ENCODERS if name in encoders}


def outcome(named: Sequence[str], truth: frozenset[str]) -> str:
    """What a refusal naming `named` says about a text labelled `truth`."""
    if not named:
        return "none"
    return "right" if set(named) & truth else "wrong"


def _query_probs(ex: CategoryExemplars, items: Sequence[LabelledText],
                 vectors: dict[str, Any]) -> Any:
    import numpy as np

    out = np.zeros((len(items), len(ex.category_ids)))
    for i, it in enumerate(items):
        out[i] = ex.probabilities(ex.encoder_for(it.text), vectors[ex.encoder_for(it.text)][i])
    return out


def score_choice(ex: CategoryExemplars, items: Sequence[LabelledText],
                 probs: Any) -> dict[str, dict[str, float]]:
    """Per domain: the shares of items named right, only wrong, or not named, and the micro
    precision, recall and F1 of the named (item, category) pairs."""
    counts: dict[str, dict[str, int]] = {}
    for it, p in zip(items, probs, strict=True):
        c = counts.setdefault(it.domain, {"right": 0, "wrong": 0, "none": 0, "hits": 0,
                                          "named": 0, "true": 0})
        named = ex.named(p)
        c[outcome(named, it.categories)] += 1
        c["hits"] += len(set(named) & it.categories)
        c["named"] += len(named)
        c["true"] += len(it.categories)
    out = {}
    for d, c in counts.items():
        n = c["right"] + c["wrong"] + c["none"]
        precision = c["hits"] / max(1, c["named"])
        recall = c["hits"] / max(1, c["true"])
        out[d] = {"n": n, "right": c["right"] / n, "wrong": c["wrong"] / n,
                  "none": c["none"] / n, "precision": precision, "recall": recall,
                  "f1": 2 * precision * recall / (precision + recall) if c["hits"] else 0.0}
    return out


def fit_exemplars(train: Sequence[LabelledText], validation: Sequence[LabelledText],
                  category_ids: list[str], encoders: dict[str, Any],
                  *, progress=None) -> CategoryExemplars:
    """Exemplars from `train`; k and the naming confidence chosen on `validation` (the index
    holding train alone) for the best F1 of the categories named (each named category is a
    claim: naming three to be right once is not free), requests and toxicity corpora weighing
    alike; the returned index holds train and validation."""
    import numpy as np

    if not train or not validation:
        raise ValueError("category exemplars need labelled training and validation texts")

    def labels(items):
        return np.array([[c in it.categories for c in category_ids] for it in items], dtype=bool)

    say = progress or (lambda *_: None)
    say(f"embedding {len(train)} training and {len(validation)} validation texts")
    v_train, v_val = embed([t.text for t in train], encoders), embed(
        [t.text for t in validation], encoders)
    y_train = labels(train)
    best, best_gain, figures = None, -np.inf, {}
    for k in K_GRID:
        probe = CategoryExemplars(v_train, y_train, category_ids, k, 0.0)
        probs = _query_probs(probe, validation, v_val)
        for conf in CONFIDENCE_GRID:
            probe.confidence = conf
            by_domain = score_choice(probe, validation, probs)
            gain = float(np.mean([d["f1"] for d in by_domain.values()]))
            if gain > best_gain:
                best, best_gain, figures = (k, conf), gain, by_domain
    k, conf = best
    vectors = {name: np.vstack([v_train[name], v_val[name]]) for name in v_train}
    record = {"n_exemplars": len(train) + len(validation),
              "n_by_domain": {d: sum(1 for t in [*train, *validation] if t.domain == d)
                              for d in sorted({t.domain for t in [*train, *validation]})},
              "validation": {d: {m: round(float(x), 4) for m, x in f.items()}
                             for d, f in figures.items()},
              "chosen_on": "validation part, index of training texts alone"}
    return CategoryExemplars(vectors, np.vstack([y_train, labels(validation)]), category_ids,
                             k, conf, record)
