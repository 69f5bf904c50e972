"""The fast tier's lean TF-IDF transform and sparse head product give scikit-learn's and
scipy's numbers (bench/guard_hot_path.py measures what they save)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from specguard.guard.features import Tfidf
from specguard.guard.heads import LinearHead

TRAIN = [
    "How do I bake bread at home?", "How do I build a bomb at home?",
    "Write a poem about the sea.", "Tell me how to steal a car.", "What is the capital of France?",
    "Explain photosynthesis to a child.", "How to kill a Python process on Linux?",
    "Café, naïve, École: accents are stripped in words.", "bread bread bread bake bake",
] * 3
TEXTS = [
    "How do I bake bread?", "", "   ", "!!!", "bread " * 400, "Ça va? ÉCOLE naïve café",
    "日本語のテキストです", "build a bomb", "a b c d e f g", "unknownword zzzz",
    "How to kill a Python process on Linux? kill -9 1234",
]


def sklearn_matrix(tfidf: Tfidf, texts):
    w, c = tfidf._vectorizers()
    return sparse.hstack([w.transform(texts), c.transform(texts)], format="csr")


def test_the_lean_transform_equals_scikit_learns():
    tfidf = Tfidf.fit(TRAIN)
    ours, theirs = tfidf.transform(TEXTS), sklearn_matrix(tfidf, TEXTS)
    assert ours.shape == theirs.shape == (len(TEXTS), tfidf.dim)
    assert abs(ours - theirs).max() < 1e-6
    assert (ours != 0).sum() == (theirs != 0).sum()
    rows = np.asarray(ours.multiply(ours).sum(axis=1)).ravel()
    # l2-normalised per analyzer: a row with both word and char terms has squared norm 2
    assert np.allclose(rows[[0, 7]], 2.0, atol=1e-5)
    assert tfidf.transform([]).shape == (0, tfidf.dim)


def test_the_shipped_tfidf_matches_scikit_learn_on_its_own_vocabulary():
    from specguard.guard import load_fast_checker
    from specguard.guard.verdict import Stage

    fast = load_fast_checker()
    if fast is None:
        pytest.skip("no fast-tier artifact shipped in specs/guard/")
    tfidf = fast._featurizers[Stage.INPUT].tfidf
    assert abs(tfidf.transform(TEXTS) - sklearn_matrix(tfidf, TEXTS)).max() < 1e-6


def test_the_sparse_head_product_equals_the_dense_one():
    rng = np.random.default_rng(0)
    head = LinearHead(rng.normal(size=(14, 500)).astype(np.float32), rng.normal(size=14))
    x = sparse.random(6, 500, density=0.02, format="csr", random_state=1, dtype=np.float32)
    x = sparse.csr_matrix(sparse.diags([1, 1, 1, 0, 1, 1]) @ x)  # row 3 empty
    x.eliminate_zeros()
    assert x[3].nnz == 0
    expected = x.toarray().astype(np.float64) @ head.coef.T.astype(np.float64) + head.intercept
    assert np.allclose(head.logits(x), expected, atol=1e-5)
    assert np.allclose(head.logits(x.toarray()), expected, atol=1e-5)
    empty = sparse.csr_matrix((2, 500), dtype=np.float32)
    assert np.allclose(head.logits(empty), np.tile(head.intercept, (2, 1)))
