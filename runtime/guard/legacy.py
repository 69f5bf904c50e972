"""Fast-tier artifacts from specguard 0.1: joblib pickles. They still load, with a warning,
because loading a pickle runs whatever code it names: load only files you trust, and retrain
with `specguard guard train` to get a JSON + NPZ artifact.

Only TF-IDF artifacts load; the 0.1 hidden-state probes read the embedded model's hidden states,
which the fast tier no longer uses.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, require
from .conversation import last_user_text
from .verdict import CheckRequest, Label, Stage, Tier, Verdict


# The classes 0.1 pickled (as specguard.guard.fast.<name>; fast.py resolves those names here).
@dataclass
class HiddenFeatures:
    chat: bool = True
    last_token: bool = True
    max_tokens: int = 256


@dataclass
class CategoryHead:
    ids: list[str]
    coef: Any
    intercept: Any

    def predict_proba(self, x):
        import numpy as np

        z = np.asarray(x @ self.coef.T) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


@dataclass
class FusedClassifier:
    text: Any
    hidden: Any
    split: int


@dataclass
class StageModel:
    vectorizer: Any | None
    scaler: Any | None
    classifier: Any
    hidden_weight: float = 1.0
    category_heads: dict[str, CategoryHead] = field(default_factory=dict)


@dataclass
class FastArtifact:
    name: str
    stages: dict[Stage, StageModel]
    hidden: HiddenFeatures | None = None
    model_file: str | None = None
    record: dict[str, Any] = field(default_factory=dict)
    format: int = 1


LEGACY_NAMES = ("HiddenFeatures", "CategoryHead", "FusedClassifier", "StageModel", "FastArtifact")


class LegacyFastChecker:
    """A 0.1 TF-IDF artifact as a checker: the last user turn (and the draft), as 0.1 read it."""

    tier = Tier.FAST

    def __init__(self, artifact: FastArtifact, taxonomy: str = "beavertails") -> None:
        self.artifact = artifact
        self.taxonomy = taxonomy
        self.name = f"fast:{artifact.name}"

    async def check(self, request: CheckRequest) -> Verdict:
        return (await self.check_many([request]))[0]

    async def check_many(self, requests: Sequence[CheckRequest]) -> list[Verdict]:
        start = time.perf_counter()
        out = []
        for r in requests:
            m = self.artifact.stages.get(r.stage) or self.artifact.stages[Stage.INPUT]
            text = last_user_text(r.messages)
            if r.stage is Stage.OUTPUT and r.response is not None:
                text = f"User: {text}\nAssistant: {r.response}"
            p = float(m.classifier.predict_proba(m.vectorizer.transform([text]))[0, 1])
            threshold = r.threshold if r.threshold is not None else 0.5
            out.append(Verdict(stage=r.stage, label=Label.UNSAFE if p >= threshold else Label.SAFE,
                               score=p, tier=self.tier, checker=self.name, threshold=threshold))
        per = (time.perf_counter() - start) * 1000 / max(1, len(requests))
        return [v.model_copy(update={"latency_ms": per}) for v in out]


def load_legacy_checker(path: str | Path, taxonomy: str = "beavertails") -> LegacyFastChecker:
    joblib = require("joblib", "guard")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Fast-tier artifact {path} does not exist.",
                          hint="Build one with `specguard guard train`.")
    warnings.warn(f"{path} is a pickle: loading it runs code. Load only files you trust, and "
                  "retrain with `specguard guard train` for a JSON + NPZ artifact.",
                  UserWarning, stacklevel=2)
    art = joblib.load(path)
    if type(art).__name__ != "FastArtifact" or getattr(art, "format", None) != 1:
        raise ConfigError(f"{path} is not a specguard 0.1 fast-tier artifact.",
                          hint="Rebuild it with `specguard guard train`.")
    if art.hidden is not None:
        raise ConfigError(f"{path} is a 0.1 hidden-state probe; the fast tier no longer reads "
                          "the serving model's hidden states.",
                          hint="Retrain with `specguard guard train`.")
    return LegacyFastChecker(art, taxonomy)
