"""Classifier heads as plain arrays: fitted with scikit-learn at training time, shipped as an
NPZ of weights (read with allow_pickle=False) and run with numpy, so a judge artifact is data,
never code (no pickle, no joblib).

A head standardises its input (mean, scale), then applies either one linear layer (`linear`:
logistic regression) or one hidden ReLU layer and a linear layer (`mlp`), and ends in a softmax
over the labels (a sigmoid when there are two labels and one output, as scikit-learn fits them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

HeadKind = Literal["linear", "mlp"]


@dataclass
class Head:
    kind: HeadKind
    labels: list[str]
    mean: Any  # (d,)
    scale: Any  # (d,)
    weights: list[Any]  # linear: [W (d, k)]; mlp: [W1 (d, h), W2 (h, k)]
    biases: list[Any]

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def proba(self, x: Any):
        """(n, len(labels)) probabilities, rows summing to 1."""
        import numpy as np

        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = z @ w + b
            if i < len(self.weights) - 1:
                z = np.maximum(z, 0.0)
        if z.shape[1] == 1:  # binary: one logit for labels[1]
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.stack([1.0 - p1, p1], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def save(self, path: str | Path) -> None:
        import numpy as np

        arrays = {"mean": self.mean, "scale": self.scale}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            arrays[f"w{i}"] = np.asarray(w, dtype=np.float32)
            arrays[f"b{i}"] = np.asarray(b, dtype=np.float32)
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: str | Path, kind: HeadKind, labels: list[str]) -> Head:
        import numpy as np

        with np.load(path, allow_pickle=False) as z:
            layers = sum(1 for k in z.files if k.startswith("w"))
            return cls(kind=kind, labels=list(labels), mean=z["mean"].astype(np.float64),
                       scale=z["scale"].astype(np.float64),
                       weights=[z[f"w{i}"].astype(np.float64) for i in range(layers)],
                       biases=[z[f"b{i}"].astype(np.float64) for i in range(layers)])


def head_from_sklearn(scaler: Any, model: Any, kind: HeadKind) -> Head:
    """A Head from a fitted StandardScaler and LogisticRegression / MLPClassifier."""
    import numpy as np

    labels = [str(c) for c in model.classes_]
    if kind == "linear":
        weights, biases = [model.coef_.T.copy()], [model.intercept_.copy()]
    else:
        weights = [w.copy() for w in model.coefs_]
        biases = [b.copy() for b in model.intercepts_]
        if getattr(model, "out_activation_", "softmax") not in ("softmax", "logistic"):
            raise ValueError(f"unsupported MLP output {model.out_activation_!r}")
        if getattr(model, "activation", "relu") != "relu":
            raise ValueError("only ReLU MLPs can be exported")
    return Head(kind=kind, labels=labels, mean=np.asarray(scaler.mean_, dtype=np.float64),
                scale=np.asarray(scaler.scale_, dtype=np.float64), weights=weights,
                biases=biases)
