"""The fast tier: a small trained classifier that scores a request in milliseconds.

An artifact (joblib, built by `specguard guard train`) holds one classifier per stage (input
prompts; prompt+response pairs for output checks) over TF-IDF features, the local model's
final hidden states, both side by side, or two classifiers whose probabilities are averaged.
The score is the probability that the content is unsafe; the escalation band around it decides
whether the deliberative tier runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError, require
from .verdict import CheckRequest, Label, Stage, Tier, Verdict

ARTIFACT_FORMAT = 1
DEFAULT_ARTIFACT = "fast_default"  # specs/guard/fast_default.joblib (+ .json training record)
# What a guard uses when not told, in order of preference: the first that fits the backend.
SHIPPED_ARTIFACTS = (DEFAULT_ARTIFACT, "fast_tfidf")


@dataclass
class HiddenFeatures:
    """Which hidden states a probe reads: chat-template wrapping, last token or token mean."""

    chat: bool = True
    last_token: bool = True
    max_tokens: int = 256  # of each text's end: the hidden pass costs time per token


@dataclass
class CategoryHead:
    """Which category an unsafe text is in: one-vs-rest probabilities over a taxonomy's ids,
    fitted on harmful training texts whose dataset labels map onto that taxonomy."""

    ids: list[str]
    coef: Any  # (len(ids), n_features) float32: one logistic regression per category
    intercept: Any  # (len(ids),)

    def predict_proba(self, x):
        """(n, len(ids)) independent per-category probabilities: one sparse product."""
        import numpy as np

        z = np.asarray(x @ self.coef.T) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


@dataclass
class FusedClassifier:
    """Score fusion: the mean P(unsafe) of a classifier over the TF-IDF columns and one over
    the hidden-state columns of the stacked features (each reads only its own block)."""

    text: Any  # predict_proba over columns [0, split)
    hidden: Any  # predict_proba over columns [split, end), dense
    split: int

    def predict_proba(self, x):
        from scipy import sparse

        h = x[:, self.split:]
        p_hidden = self.hidden.predict_proba(h.toarray() if sparse.issparse(h) else h)
        return (self.text.predict_proba(x[:, :self.split]) + p_hidden) / 2


@dataclass
class StageModel:
    """Features and classifier for one stage. `hidden_weight` scales the standardised hidden
    states relative to the TF-IDF block when both are used."""

    vectorizer: Any | None  # a fitted TfidfVectorizer, or None
    scaler: Any | None  # a fitted StandardScaler over hidden states, or None
    classifier: Any  # predict_proba over the stacked features
    hidden_weight: float = 1.0
    category_heads: dict[str, CategoryHead] = field(default_factory=dict)  # by taxonomy name


@dataclass
class FastArtifact:
    name: str
    stages: dict[Stage, StageModel]
    hidden: HiddenFeatures | None = None  # None: the artifact needs no model
    model_file: str | None = None  # the GGUF the probe was trained on (file name)
    record: dict[str, Any] = field(default_factory=dict)
    format: int = ARTIFACT_FORMAT

    @property
    def needs_model(self) -> bool:
        return self.hidden is not None

    def save(self, path: str | Path) -> Path:
        joblib = require("joblib", "guard")
        path = Path(path).with_suffix(".joblib")
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, path, compress=3)
        path.with_suffix(".json").write_text(json.dumps(self.record, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> FastArtifact:
        joblib = require("joblib", "guard")
        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                f"Fast-tier artifact {path} does not exist.",
                hint=f"Name a shipped one ({', '.join(SHIPPED_ARTIFACTS)}) or build one with "
                "`specguard guard train`.",
            )
        art = joblib.load(path)
        if not isinstance(art, FastArtifact) or art.format != ARTIFACT_FORMAT:
            raise ConfigError(
                f"{path} is not a specguard fast-tier artifact of format {ARTIFACT_FORMAT}.",
                hint="Rebuild it with `specguard guard train`.",
            )
        return art


def shipped_artifact_path(name: str = DEFAULT_ARTIFACT) -> Path | None:
    """The artifact shipped in the package (specs/guard/<name>.joblib), if present."""
    p = resources.files("specguard.specs") / "guard" / f"{name}.joblib"
    return Path(str(p)) if p.is_file() else None


def stage_text(request: CheckRequest) -> str:
    """What the fast tier reads: the last user turn, plus the draft on output checks."""
    prompt = request.last_user_text
    if request.stage is Stage.OUTPUT and request.response is not None:
        return pair_text(prompt, request.response)
    return prompt


def pair_text(prompt: str, response: str) -> str:
    return f"User: {prompt}\nAssistant: {response}"


class FastChecker:
    """The trained fast tier. Needs a hidden-state backend only when its artifact reads hidden
    states (and then of the model it was trained on)."""

    tier = Tier.FAST

    def __init__(self, artifact: FastArtifact, backend: Any | None = None, *,
                 taxonomy: str = "beavertails") -> None:
        if artifact.needs_model:
            if backend is None or not getattr(backend.capabilities, "hidden_states", False):
                raise ConfigError(
                    f"The fast-tier artifact {artifact.name!r} reads hidden states of "
                    f"{artifact.model_file}; it needs that model's backend.",
                    hint="Pass the embedded backend, or train a TF-IDF artifact for this model.",
                )
            model_file = Path(getattr(backend, "model_path", "")).name
            if artifact.model_file and model_file != artifact.model_file:
                raise ConfigError(
                    f"The artifact was trained on {artifact.model_file}, not {model_file}.",
                    hint="Retrain it for this model with `specguard guard train --model PATH`.",
                )
        self.artifact = artifact
        self.backend = backend
        self.taxonomy = taxonomy
        self.name = f"fast:{artifact.name}"

    @classmethod
    def from_path(cls, path: str | Path, backend: Any | None = None) -> FastChecker:
        return cls(FastArtifact.load(path), backend)

    def _model_for(self, stage: Stage) -> StageModel:
        m = self.artifact.stages.get(stage) or self.artifact.stages.get(Stage.INPUT)
        if m is None:
            raise ConfigError(f"The artifact {self.artifact.name!r} has no classifier for {stage}.")
        return m

    async def features(self, texts: Sequence[str], stage: Stage):
        """The feature matrix the stage's classifier reads (sparse when TF-IDF is in it)."""
        import numpy as np
        from scipy import sparse

        m = self._model_for(stage)
        blocks = []
        if m.vectorizer is not None:
            blocks.append(m.vectorizer.transform(list(texts)))
        if m.scaler is not None:
            assert self.artifact.hidden is not None and self.backend is not None
            h = await _hidden(self.backend, texts, self.artifact.hidden)
            blocks.append(sparse.csr_matrix(m.scaler.transform(np.asarray(h)) * m.hidden_weight))
        return blocks[0] if len(blocks) == 1 else sparse.hstack(blocks, format="csr")

    async def scores(self, texts: Sequence[str], stage: Stage = Stage.INPUT) -> list[float]:
        """P(unsafe) for each text, batched (one hidden-state pass for all of them)."""
        return [s for s, _ in await self.scores_with_categories(texts, stage)]

    async def scores_with_categories(
        self, texts: Sequence[str], stage: Stage = Stage.INPUT, taxonomy: str | None = None
    ) -> list[tuple[float, dict[str, float]]]:
        """(P(unsafe), per-category scores) for each text. A category's score is P(unsafe)
        times the category head's probability relative to its most likely category, so the
        top category scores P(unsafe) and the others less."""
        if not texts:
            return []
        m = self._model_for(stage)
        x = await self.features(texts, stage)
        proba = m.classifier.predict_proba(x)[:, 1]
        head = m.category_heads.get(taxonomy or self.taxonomy)
        cats: list[dict[str, float]] = [{} for _ in texts]
        if head is not None:
            q = head.predict_proba(x)
            for i, row in enumerate(q):
                top = float(row.max()) or 1.0
                cats[i] = {cid: float(proba[i]) * float(v) / top for cid, v in zip(head.ids, row, strict=True)}
        return [(float(p), c) for p, c in zip(proba, cats, strict=True)]

    async def check(self, request: CheckRequest) -> Verdict:
        return (await self.check_many([request]))[0]

    async def check_many(self, requests: Sequence[CheckRequest]) -> list[Verdict]:
        start = time.perf_counter()
        out: list[Verdict | None] = [None] * len(requests)
        for stage in (Stage.INPUT, Stage.OUTPUT):
            idx = [i for i, r in enumerate(requests) if r.stage is stage]
            if not idx:
                continue
            for tax in {requests[i].taxonomy for i in idx}:
                group = [i for i in idx if requests[i].taxonomy == tax]
                scored = await self.scores_with_categories(
                    [stage_text(requests[i]) for i in group], stage, tax
                )
                for i, (s, cats) in zip(group, scored, strict=True):
                    s = min(1.0, max(0.0, s))
                    top = [c for c, v in sorted(cats.items(), key=lambda kv: -kv[1]) if v >= 0.5 * s][:3]
                    out[i] = Verdict(
                        stage=stage,
                        label=Label.UNSAFE if s >= 0.5 else Label.SAFE,
                        score=s,
                        categories=top if s >= 0.5 else [],
                        category_scores={c: round(min(1.0, v), 6) for c, v in cats.items()},
                        tier=self.tier,
                        checker=self.name,
                    )
        per = (time.perf_counter() - start) * 1000 / max(1, len(requests))
        return [v.model_copy(update={"latency_ms": per}) for v in out if v is not None]


async def _hidden(backend: Any, texts: Sequence[str], cfg: HiddenFeatures):
    """The same features the probe was trained on: the backend's batched `pooled_hidden_states`
    where it has them (the embedded model), else its `hidden_states`."""
    pooled = getattr(backend, "pooled_hidden_states", None)
    if pooled is not None:
        # getattr: artifacts saved before max_tokens existed read 256 tokens.
        last, mean = await pooled(texts, chat=cfg.chat, max_tokens=getattr(cfg, "max_tokens", 256))
        return last if cfg.last_token else mean
    return await backend.hidden_states(list(texts), chat=cfg.chat, last_token=cfg.last_token)


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int) -> FastArtifact:
    # Artifacts are read-only once loaded; every guard in the process shares one copy.
    return FastArtifact.load(path)


def fits(artifact: FastArtifact, backend: Any | None) -> bool:
    """Whether `backend` can run the artifact: any backend when it reads no hidden states,
    else a hidden-state backend over the model file it was trained on."""
    if not artifact.needs_model:
        return True
    model_file = Path(getattr(backend, "model_path", "") or "").name
    return bool(getattr(getattr(backend, "capabilities", None), "hidden_states", False)) and (
        not artifact.model_file or model_file == artifact.model_file)


def load_fast_checker(backend: Any | None = None, path: str | Path | None = None, *,
                      taxonomy: str = "beavertails") -> FastChecker | None:
    """The fast tier from `path` (a file, or the name of a shipped artifact), else the first
    shipped artifact in SHIPPED_ARTIFACTS that fits `backend` (the embedded model's probe, then
    the model-free TF-IDF classifier); None when none does."""
    if path is not None:
        shipped = shipped_artifact_path(str(path)) if not Path(path).suffix else None
        art = _load_cached(str(shipped), shipped.stat().st_mtime_ns) if shipped else FastArtifact.load(path)
        return FastChecker(art, backend, taxonomy=taxonomy)
    for name in SHIPPED_ARTIFACTS:
        shipped = shipped_artifact_path(name)
        if shipped is None:
            continue
        art = _load_cached(str(shipped), shipped.stat().st_mtime_ns)
        if fits(art, backend):
            return FastChecker(art, backend, taxonomy=taxonomy)
    return None
