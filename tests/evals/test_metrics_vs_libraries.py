"""The hand-written metrics against the libraries that would replace them (issue 19, item 7):
precision, recall, F1 and average precision against scikit-learn, the Wilson interval against
statsmodels' formula (written out here, as statsmodels is not a dependency), the percentile
bootstrap against scipy.stats.bootstrap. Where they agree, specguard keeps its own for the
reasons in evals/metrics.py's docstring; where a library's answer differs by design (NaN vs a
warning and 0), the test says which."""

from __future__ import annotations

import math

import numpy as np
import pytest
from specguard.evals import metrics

sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn (guard extra)")
scipy_stats = pytest.importorskip("scipy.stats", reason="scipy (comes with scikit-learn)")


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_equal_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    t = rng.random(300) < 0.3
    p = rng.random(300) < 0.4
    scores = np.round(rng.random(300), 1)  # many ties: one threshold per distinct score
    assert metrics.precision(t, p) == pytest.approx(sklearn_metrics.precision_score(t, p))
    assert metrics.recall(t, p) == pytest.approx(sklearn_metrics.recall_score(t, p))
    assert metrics.f1(t, p) == pytest.approx(sklearn_metrics.f1_score(t, p))
    assert metrics.auprc(t, scores) == pytest.approx(
        sklearn_metrics.average_precision_score(t, scores))


def test_undefined_metrics_are_nan_where_scikit_learn_warns_and_says_zero():
    t, p = np.zeros(10, bool), np.zeros(10, bool)
    assert math.isnan(metrics.precision(t, p))
    with pytest.warns(sklearn_metrics._classification.UndefinedMetricWarning):
        assert sklearn_metrics.precision_score(t, p) == 0.0


def test_wilson_interval_is_the_textbook_one():
    for k, n in ((0, 12), (5, 20), (19, 20), (300, 1000)):
        z = scipy_stats.norm.ppf(0.975)
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        lo, hi = metrics.wilson_interval(k, n)
        assert (lo, hi) == pytest.approx((max(0, centre - half), min(1, centre + half)))


@pytest.mark.parametrize("statistic", ["rate", "f1"])
def test_percentile_bootstrap_agrees_with_scipy(statistic):
    rng = np.random.default_rng(7)
    t = rng.random(400) < 0.35
    p = t ^ (rng.random(400) < 0.2)
    ours_fn = getattr(metrics, statistic)
    args = (p,) if statistic == "rate" else (t, p)
    ours = metrics.bootstrap(ours_fn, *args, n_resamples=4000, seed=1)

    def stat(*cols, axis=-1):
        if statistic == "rate":
            return np.mean(cols[0], axis=axis)
        return metrics._batched_f1(*cols)

    theirs = scipy_stats.bootstrap(args, stat, paired=True, vectorized=True, n_resamples=4000,
                                   method="percentile", random_state=1).confidence_interval
    # Two Monte Carlo estimates of the same quantiles: equal within resampling noise.
    assert ours.low == pytest.approx(theirs.low, abs=0.01)
    assert ours.high == pytest.approx(theirs.high, abs=0.01)
