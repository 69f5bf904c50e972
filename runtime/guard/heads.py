"""Trained heads as plain arrays: inference is numpy, storage is NPZ, nothing is unpickled.

scikit-learn fits them (training extra); `from_sklearn` keeps only the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def sigmoid(z):
    import numpy as np

    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def logit(p, eps: float = 1e-6):
    import numpy as np

    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return np.log(p / (1 - p))


def _sparse_logits(x, coef):
    """x @ coef.T for a sparse CSR x (n, d) and a dense coef (k, d), reading only the columns
    x uses. scipy's own product copies and upcasts the whole transposed coef (d x k: 100k x 14
    for the TF-IDF category head, ~11 MB) on every call, which was a quarter of a served
    request's CPU (bench/guard_heads.py)."""
    import numpy as np
    from scipy.sparse import csr_matrix

    n = x.shape[0]
    if x.nnz == 0:
        return np.zeros((n, coef.shape[0]))
    cols, inverse = np.unique(x.indices, return_inverse=True)
    small = csr_matrix((x.data, inverse.reshape(-1), x.indptr), shape=(n, len(cols)))
    return np.asarray(small @ coef[:, cols].T.astype(np.float64))


@dataclass
class LinearHead:
    """z = x @ coef.T + intercept; one row of `coef` per output (binary: one row)."""

    coef: Any  # (k, d) float32
    intercept: Any  # (k,)

    def logits(self, x):
        """(n, k) logits."""
        import numpy as np

        if hasattr(x, "tocsr"):
            return _sparse_logits(x.tocsr(), self.coef) + self.intercept
        z = x @ self.coef.T
        return np.asarray(z, dtype=np.float64) + self.intercept

    def score(self, x):
        """(n,) logits of a binary head."""
        return self.logits(x)[:, 0]

    @classmethod
    def from_sklearn(cls, model: Any) -> LinearHead:
        import numpy as np

        return cls(np.asarray(model.coef_, dtype=np.float32),
                   np.asarray(model.intercept_, dtype=np.float64))

    def arrays(self, prefix: str) -> dict[str, Any]:
        return {f"{prefix}coef": self.coef, f"{prefix}intercept": self.intercept}

    @classmethod
    def load(cls, arrays: Any, prefix: str) -> LinearHead:
        return cls(arrays[f"{prefix}coef"], arrays[f"{prefix}intercept"])


@dataclass
class MLPHead:
    """One ReLU hidden layer, then a linear output (scikit-learn's MLPClassifier, binary)."""

    w1: Any
    b1: Any
    w2: Any
    b2: Any

    def logits(self, x):
        """(n, k) logits."""
        import numpy as np

        h = np.maximum(np.asarray(x @ self.w1) + self.b1, 0.0)
        return (h @ self.w2 + self.b2).astype(np.float64)

    def score(self, x):
        """(n,) logits of a binary head."""
        return self.logits(x)[:, 0]

    @classmethod
    def from_sklearn(cls, model: Any) -> MLPHead:
        import numpy as np

        (w1, w2), (b1, b2) = model.coefs_, model.intercepts_
        return cls(*(np.asarray(a, dtype=np.float32) for a in (w1, b1, w2, b2)))

    def arrays(self, prefix: str) -> dict[str, Any]:
        return {f"{prefix}w1": self.w1, f"{prefix}b1": self.b1, f"{prefix}w2": self.w2,
                f"{prefix}b2": self.b2}

    @classmethod
    def load(cls, arrays: Any, prefix: str) -> MLPHead:
        return cls(arrays[f"{prefix}w1"], arrays[f"{prefix}b1"], arrays[f"{prefix}w2"],
                   arrays[f"{prefix}b2"])


HEAD_KINDS = {"linear": LinearHead, "mlp": MLPHead}


def head_kind(head: LinearHead | MLPHead) -> str:
    return "mlp" if isinstance(head, MLPHead) else "linear"
