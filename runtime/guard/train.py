"""Training the fast tier: TF-IDF + logistic regression (the baseline), probes over the local
model's final hidden states, or both features side by side; evaluated on held-out splits only.
`specguard guard train` calls `train_artifact`."""

from __future__ import annotations

import math
import platform
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError, require
from .corpus import NON_COMMERCIAL, TEST_SHARE, Example, input_examples, output_examples
from .fast import FastArtifact, FusedClassifier, HiddenFeatures, StageModel
from .verdict import Stage

# tfidf: the baseline; hidden: a probe over hidden states; combined: one classifier over both
# blocks side by side; fusion: a TF-IDF logistic regression and a hidden-state probe
# (`classifier`), their probabilities averaged.
FEATURES = ("tfidf", "hidden", "combined", "fusion")


@dataclass
class FastConfig:
    """What a fast-tier classifier reads and how it is fitted."""

    features: str = "tfidf"  # tfidf | hidden | combined | fusion
    chat: bool = True  # hidden states of the text wrapped as a user turn in the chat template
    pooling: str = "last"  # last | mean
    max_tokens: int = 256  # hidden states read at most this many tokens of a text (its end)
    classifier: str = "logreg"  # logreg | mlp
    C: float = 4.0  # inverse regularisation of the logistic regression over TF-IDF (or both)
    hidden_C: float = 0.05  # ... of a logistic probe over hidden states alone (n_embd dense dims)
    hidden_weight: float = 0.15  # scale of the standardised hidden block next to TF-IDF
    char_ngrams: bool = True  # add character 2-5 grams (within words) to the word 1-2 grams
    # Weight of XSTest's safe look-alikes (and their unsafe contrasts) in training: they are few,
    # and they are what keeps the classifier from learning "mentions a weapon = harmful".
    lookalike_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise ConfigError(f"features must be one of {FEATURES}, not {self.features!r}.")
        if self.pooling not in ("last", "mean"):
            raise ConfigError(f"pooling must be 'last' or 'mean', not {self.pooling!r}.")

    @property
    def uses_hidden(self) -> bool:
        return self.features in ("hidden", "combined", "fusion")

    def label(self) -> str:
        if self.features == "tfidf":
            return "tfidf+" + self.classifier
        h = f"hidden[{'chat' if self.chat else 'raw'},{self.pooling}]"
        if self.features == "fusion":
            return f"mean(tfidf+logreg, {h}+{self.classifier})"
        return (h if self.features == "hidden" else "tfidf+" + h) + "+" + self.classifier


def _vectorizer(cfg: FastConfig):
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=20000,
                            strip_accents="unicode", lowercase=True, dtype=np.float32)
    if not cfg.char_ngrams:
        return words
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, sublinear_tf=True,
                            max_features=30000, lowercase=True, dtype=np.float32)
    return FeatureUnion([("words", words), ("chars", chars)])


def _classifier(cfg: FastConfig):
    if cfg.classifier == "mlp":
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(hidden_layer_sizes=(128,), alpha=1e-3, early_stopping=True,
                             max_iter=300, random_state=0)
    from sklearn.linear_model import LogisticRegression

    c = cfg.hidden_C if cfg.features == "hidden" else cfg.C
    return LogisticRegression(C=c, class_weight="balanced", max_iter=3000)


def fit_stage(texts: list[str], y: list[bool], cfg: FastConfig, hidden=None,
              weights: list[float] | None = None) -> StageModel:
    """Fit one stage's features and classifier. `hidden`: the texts' pooled hidden states
    (n, d) when the config reads them."""
    import numpy as np
    from scipy import sparse
    from sklearn.preprocessing import StandardScaler

    if cfg.features == "fusion":
        text = fit_stage(texts, y, replace(cfg, features="tfidf", classifier="logreg"),
                         weights=weights)
        probe = fit_stage(texts, y, replace(cfg, features="hidden"), hidden, weights)
        split = len(text.vectorizer.get_feature_names_out())
        return StageModel(vectorizer=text.vectorizer, scaler=probe.scaler,
                          classifier=FusedClassifier(text.classifier, probe.classifier, split))
    blocks = []
    vec = scaler = None
    if cfg.features in ("tfidf", "combined"):
        vec = _vectorizer(cfg)
        blocks.append(vec.fit_transform(texts))
    if cfg.uses_hidden:
        if hidden is None:
            raise ConfigError("This configuration reads hidden states; pass them.")
        scaler = StandardScaler().fit(hidden)
        h = scaler.transform(hidden)
        w = cfg.hidden_weight if cfg.features == "combined" else 1.0
        blocks.append(sparse.csr_matrix(h * w) if vec is not None else h * w)
    x = blocks[0] if len(blocks) == 1 else sparse.hstack(blocks, format="csr")
    clf = _classifier(cfg)
    if cfg.classifier == "mlp" and sparse.issparse(x) and x.shape[1] > 5000:
        raise ConfigError("The MLP runs on hidden states only (features='hidden' or 'fusion').")
    if weights is not None and cfg.classifier == "logreg":
        clf.fit(x, np.asarray(y, dtype=int), sample_weight=np.asarray(weights, dtype=float))
    else:
        clf.fit(x, np.asarray(y, dtype=int))
    return StageModel(vectorizer=vec, scaler=scaler, classifier=clf,
                      hidden_weight=cfg.hidden_weight if cfg.features == "combined" else 1.0)


def fit_category_heads(m: StageModel, examples: list[Example], idx: list[int], hidden=None,
                       min_positives: int = 3) -> None:
    """One category head per taxonomy in specs/guard/category_map.yaml, on the harmful
    training texts whose dataset labels map onto it."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from .corpus import category_map, mapped_categories
    from .fast import CategoryHead

    for taxonomy, mapping in category_map().items():
        rows, labels = [], []
        for j, i in enumerate(idx):
            cats = mapped_categories(examples[i], mapping)
            if examples[i].harmful and cats:
                rows.append(j)
                labels.append(cats)
        counts = Counter(c for cats in labels for c in cats)
        ids = sorted(c for c, n in counts.items() if n >= min_positives)
        if len(ids) < 2:
            continue
        y = np.array([[c in cats for c in ids] for cats in labels], dtype=int)
        keep = y.sum(axis=1) > 0
        x = _stage_x(m, [examples[idx[r]].text for r in rows],
                     hidden[[idx[r] for r in rows]] if hidden is not None else None)
        clf = OneVsRestClassifier(LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000))
        clf.fit(x[keep], y[keep])
        coef = np.vstack([e.coef_[0] for e in clf.estimators_]).astype(np.float32)
        intercept = np.array([e.intercept_[0] for e in clf.estimators_], dtype=np.float32)
        m.category_heads[taxonomy] = CategoryHead(ids=ids, coef=coef, intercept=intercept)


def _stage_x(m: StageModel, texts: list[str], hidden=None):
    from scipy import sparse

    blocks = []
    if m.vectorizer is not None:
        blocks.append(m.vectorizer.transform(texts))
    if m.scaler is not None:
        h = m.scaler.transform(hidden) * m.hidden_weight
        blocks.append(sparse.csr_matrix(h) if blocks else h)
    return blocks[0] if len(blocks) == 1 else sparse.hstack(blocks, format="csr")


def predict_stage(m: StageModel, texts: list[str], hidden=None):
    import numpy as np

    return np.asarray(m.classifier.predict_proba(_stage_x(m, texts, hidden))[:, 1])


def example_weight(e: Example, cfg: FastConfig) -> float:
    return cfg.lookalike_weight if e.source == "xstest" else 1.0


# --- evaluation groups -------------------------------------------------------------------------

def eval_groups(examples: list[Example]) -> dict[str, list[int]]:
    """Held-out evaluation sets, as indices into `examples` (test split only)."""
    g: dict[str, list[int]] = {"openai_moderation": [], "toxicchat": [], "xstest": [],
                               "harmful_vs_benign": []}
    for i, e in enumerate(examples):
        if e.split != "test":
            continue
        if e.source in ("openai_moderation", "toxicchat", "xstest"):
            g[e.source].append(i)
        if e.source in ("harmbench", "jbb_artifacts", "simple_safety_tests", "u_safebench") or (
            e.source == "xstest" and not e.harmful
        ):
            g["harmful_vs_benign"].append(i)
    return g


def group_metrics(y: list[bool], scores: list[float], threshold: float = 0.5,
                  tags: list[list[str]] | None = None) -> dict[str, float]:
    from ..evals import metrics as M

    pred = [s >= threshold for s in scores]
    out = {
        "n": len(y),
        "positives": int(sum(y)),
        "precision": M.precision(y, pred),
        "recall": M.recall(y, pred),
        "f1": M.f1(y, pred),
        "auprc": M.auprc(y, scores),
    }
    benign = [p for p, t in zip(pred, y, strict=True) if not t]
    out["benign_flagged_rate"] = M.over_refusal_rate(benign) if benign else math.nan
    return {k: (round(v, 4) if isinstance(v, float) and not math.isnan(v) else v) for k, v in out.items()}


def evaluate(examples: list[Example], scores, threshold: float = 0.5) -> dict[str, dict]:
    res = {}
    for name, idx in eval_groups(examples).items():
        if idx:
            res[name] = group_metrics([examples[i].harmful for i in idx],
                                      [float(scores[i]) for i in idx], threshold)
    return res


# --- hidden states -----------------------------------------------------------------------------

async def pooled_cached(backend, texts: list[str], chat: bool, cache_dir: str | Path | None = None,
                        max_tokens: int = 256):
    """(last-token, token-mean) hidden states of `texts`, from `cache_dir` when an earlier run
    stored them for the same model, wrapping and texts (they take minutes on a CPU). The cache
    holds features derived from dataset rows: keep it out of version control."""
    import hashlib

    import numpy as np

    path = None
    if cache_dir is not None:
        model = Path(backend.model_path)
        h = hashlib.sha256(f"{model.name}|{model.stat().st_size}|{chat}|{max_tokens}".encode())
        for t in texts:
            h.update(t.encode("utf-8") + b"\0")
        path = Path(cache_dir) / f"hidden-{h.hexdigest()[:20]}.npz"
        if path.is_file():
            d = np.load(path)
            return d["last"], d["mean"]
    last, mean = await backend.pooled_hidden_states(texts, chat=chat, max_tokens=max_tokens)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, last=last, mean=mean)
    return last, mean


async def hidden_for(backend, texts: list[str], cfg: FastConfig, cache_dir: str | Path | None = None):
    last, mean = await pooled_cached(backend, texts, cfg.chat, cache_dir, cfg.max_tokens)
    return last if cfg.pooling == "last" else mean


# --- the artifact ------------------------------------------------------------------------------

async def train_artifact(
    cfg: FastConfig,
    *,
    backend=None,
    data_root: str | Path | None = None,
    name: str = "fast_default",
    output_stage: bool = True,
    threshold: float = 0.5,
    hidden_cache: str | Path | None = None,
) -> FastArtifact:
    """Train on the training split, score the held-out split, and return the artifact with its
    training record (sources and counts, configuration, held-out scores; never dataset text)."""
    require("sklearn", "guard")
    if cfg.uses_hidden and backend is None:
        raise ConfigError("A hidden-state probe needs the model: pass its backend.",
                          hint="`specguard guard train --features tfidf` needs none.")
    started = time.perf_counter()
    stages: dict[Stage, StageModel] = {}
    record: dict[str, Any] = {
        "name": name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": asdict(cfg),
        "label": cfg.label(),
        "threshold": threshold,
        "split": f"deterministic sha256(dataset:id); {TEST_SHARE:.0%} of each evaluation set held out",
        "python": platform.python_version(),
        "contains_dataset_text": False,
        "note": (
            "No dataset rows are stored. The fitted TF-IDF vocabulary (word and character "
            "n-grams with their IDF weights) is derived from the training texts, which include "
            f"{' and '.join(NON_COMMERCIAL)} (CC-BY-NC-4.0, non-commercial): check those "
            "licences before commercial use, or retrain without them."
        ),
        "stages": {},
    }
    if cfg.uses_hidden:
        record["model_file"] = Path(backend.model_path).name
    corpora = {Stage.INPUT: input_examples(data_root)}
    if output_stage:
        corpora[Stage.OUTPUT] = output_examples(data_root)
    for stage, examples in corpora.items():
        train = [e for e in examples if e.split == "train"]
        texts = [e.text for e in examples]
        hidden = await hidden_for(backend, texts, cfg, hidden_cache) if cfg.uses_hidden else None
        tr_idx = [i for i, e in enumerate(examples) if e.split == "train"]
        m = fit_stage([texts[i] for i in tr_idx], [examples[i].harmful for i in tr_idx], cfg,
                      hidden[tr_idx] if hidden is not None else None,
                      weights=[example_weight(examples[i], cfg) for i in tr_idx])
        fit_category_heads(m, examples, tr_idx, hidden)
        scores = predict_stage(m, texts, hidden)
        stages[stage] = m
        if stage is Stage.INPUT:
            held_out = evaluate(examples, scores, threshold)
        else:
            te = [i for i, e in enumerate(examples) if e.split == "test"]
            held_out = {"pairs": group_metrics([examples[i].harmful for i in te],
                                               [float(scores[i]) for i in te], threshold)}
        record["stages"][stage.value] = {
            "category_heads": {t: h.ids for t, h in m.category_heads.items()},
            "train_counts": _counts(train),
            "test_counts": _counts([e for e in examples if e.split == "test"]),
            "held_out": held_out,
        }
    record["train_seconds"] = round(time.perf_counter() - started, 1)
    hidden_cfg = HiddenFeatures(chat=cfg.chat, last_token=cfg.pooling == "last",
                                max_tokens=cfg.max_tokens) if cfg.uses_hidden else None
    return FastArtifact(name=name, stages=stages, hidden=hidden_cfg,
                        model_file=record.get("model_file"), record=record)


def _counts(examples: list[Example]) -> dict[str, dict[str, int]]:
    c = Counter((e.source, "harmful" if e.harmful else "benign") for e in examples)
    out: dict[str, dict[str, int]] = {}
    for (src, lab), n in sorted(c.items()):
        out.setdefault(src, {})[lab] = n
    return out
