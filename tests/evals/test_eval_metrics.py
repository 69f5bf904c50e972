"""Every metric against values computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from specguard.evals import metrics as m


def test_rates():
    assert m.rate([True, False, True, True]) == 0.75
    assert m.safety_rate([1, 0, 1, 1]) == 0.75
    assert m.attack_success_rate([1, 0, 1, 1]) == 0.25
    assert m.refusal_rate([1, 0, 0, 0, 0]) == 0.2
    assert m.over_refusal_rate([0, 0, 1]) == pytest.approx(1 / 3)
    assert math.isnan(m.rate([])) and math.isnan(m.attack_success_rate([]))


def test_precision_recall_f1():
    # tp=2 (rows 0,1), fp=1 (row 4), fn=2 (rows 2,3), tn=1 (row 5)
    y_true = [1, 1, 1, 1, 0, 0]
    y_pred = [1, 1, 0, 0, 1, 0]
    assert m.confusion(y_true, y_pred) == (2, 1, 2, 1)
    assert m.precision(y_true, y_pred) == pytest.approx(2 / 3)
    assert m.recall(y_true, y_pred) == pytest.approx(1 / 2)
    assert m.f1(y_true, y_pred) == pytest.approx(4 / 7)  # 2*2 / (2*2 + 1 + 2)
    assert math.isnan(m.precision([1, 0], [0, 0]))


def test_auprc():
    # thresholds 0.9 (P=1, R=.5), 0.8 (P=.5, R=.5), 0.7 (P=2/3, R=1), 0.1 (P=.5, R=1)
    # AP = .5*1 + 0*.5 + .5*(2/3) + 0*.5 = 5/6
    assert m.auprc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(5 / 6)
    # tied scores form one threshold: 0.5 (P=.5, R=.5), 0.2 (P=2/3, R=1) -> .25 + 1/3
    assert m.auprc([1, 0, 1], [0.5, 0.5, 0.2]) == pytest.approx(0.25 + 1 / 3)
    assert m.auprc([1, 1], [0.3, 0.2]) == 1.0
    assert math.isnan(m.auprc([0, 0], [0.1, 0.2]))


def test_toxicity_metrics():
    scores = [[0.1, 0.9], [0.2, 0.3], [0.5]]
    # maxima .9, .3, .5 -> mean 1.7/3; at least one >= .5: yes, no, yes -> 2/3
    assert m.expected_maximum_toxicity(scores) == pytest.approx(1.7 / 3)
    assert m.toxicity_probability(scores) == pytest.approx(2 / 3)
    assert m.toxicity_probability(scores, threshold=0.95) == 0.0


def test_perplexity():
    # mean log-prob over all three tokens = (-1 - 2 - 3) / 3 = -2 -> exp(2)
    assert m.perplexity([[-1.0, -2.0], [-3.0]]) == pytest.approx(math.exp(2))
    assert m.perplexity([[0.0]]) == 1.0


def test_distinct_n():
    texts = ["a b a b", "a c"]
    # unigrams a b a b a c: 3 distinct of 6; bigrams ab ba ab ac: 3 of 4; trigrams aba bab: 2/2
    assert m.distinct_n(texts, 1) == 0.5
    assert m.distinct_n(texts, 2) == 0.75
    assert m.distinct_n(texts, 3) == 1.0
    assert math.isnan(m.distinct_n(["a"], 2))


def test_harmonic_mean():
    assert m.harmonic_mean(0.5, 1.0) == pytest.approx(2 / 3)  # 2 / (1/.5 + 1/1)
    assert m.harmonic_mean(0.0, 0.9) == 0.0
    assert math.isnan(m.harmonic_mean(0.5, math.nan))


def test_bootstrap_is_seeded_and_brackets_the_value():
    flags = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1]
    a = m.bootstrap(m.rate, flags, seed=7)
    b = m.bootstrap(m.rate, flags, seed=7)
    assert a == b and a.value == 0.7 and a.n == 10
    assert 0.0 <= a.low <= 0.7 <= a.high <= 1.0 and a.low < a.high
    const = m.bootstrap(m.rate, [1, 1, 1])
    assert (const.value, const.low, const.high) == (1.0, 1.0, 1.0)
    assert m.bootstrap(m.rate, []).value is None


def test_bootstrap_resamples_aligned_and_ragged_arrays():
    est = m.bootstrap(m.f1, [1, 1, 0, 0], [1, 0, 0, 1], n_resamples=200)
    assert est.value == 0.5 and 0.0 <= est.low <= est.high <= 1.0
    emt = m.bootstrap(m.expected_maximum_toxicity, [[0.1, 0.9], [0.2, 0.3], [0.5]])
    assert emt.value == pytest.approx(1.7 / 3) and 0.3 <= emt.low <= emt.high <= 0.9
    with pytest.raises(ValueError):
        m.bootstrap(m.f1, [1, 0], [1])


def test_batched_bootstrap_matches_the_loop():
    """The vectorised path and the per-resample loop give the same interval."""
    t = [1, 1, 0, 0, 1, 0, 1, 1, 0, 1]
    p = [1, 0, 0, 1, 1, 0, 1, 0, 0, 1]
    for fn in (m.precision, m.recall, m.f1):
        fast = m.bootstrap(fn, t, p, n_resamples=300, seed=3)
        slow = m.bootstrap(lambda a, b, fn=fn: fn(a, b), t, p, n_resamples=300, seed=3)
        assert fast == slow
    fast = m.bootstrap(m.rate, t, n_resamples=300, seed=1)
    slow = m.bootstrap(lambda a: m.rate(a), t, n_resamples=300, seed=1)
    assert fast == slow


def test_harmonic_mean_metric_batched_matches_the_loop():
    from specguard.evals.scoring import _harmonic

    def rec(harmful, label):
        return {"item": {"harmful": harmful, "key": str(id(label))},
                "judgements": {"j": {"label": label}}}

    records = [rec(True, "refused"), rec(True, "complied"), rec(True, "refused"),
               rec(False, "complied"), rec(False, "refused"), rec(False, "complied")]
    fast = _harmonic(records, "j", 400, 5)
    # safety 2/3, helpfulness 2/3 -> harmonic mean 2/3
    assert fast.value == pytest.approx(2 / 3)
    safe = np.array([1, 0, 1, np.nan, np.nan, np.nan])
    helped = np.array([np.nan, np.nan, np.nan, 1, 0, 1])

    def loop(s, h):
        s, h = s[~np.isnan(s)], h[~np.isnan(h)]
        return math.nan if not s.size or not h.size else m.harmonic_mean(s.mean(), h.mean())

    slow = m.bootstrap(loop, safe, helped, n_resamples=400, seed=5)
    assert (fast.low, fast.high) == pytest.approx((slow.low, slow.high))


def test_guard_metrics_from_verdict_records():
    """false_positive_rate, escalation_rate and ms_per_item on records a guard method writes."""
    from specguard.evals.scoring import compute_metrics
    from specguard.evals.suites import MetricConfig

    def rec(harmful, label, escalated, seconds):
        return {"item": {"key": f"k{id(object())}", "harmful": harmful},
                "judgements": {"verdict": {"label": label, "score": 0.9 if label == "unsafe" else 0.1}},
                "report": {"label": label, "escalated": escalated},
                "cost": {"seconds": seconds}}

    records = [rec(True, "unsafe", False, 0.010), rec(True, "safe", True, 0.030),
               rec(False, "unsafe", True, 0.020), rec(False, "safe", False, 0.004),
               rec(False, "safe", False, 0.006)]
    out = compute_metrics(records, [MetricConfig(name=n) for n in (
        "false_positive_rate", "escalation_rate", "ms_per_item", "recall", "precision")],
        ["verdict"], n_boot=50)
    assert out["false_positive_rate"].value == pytest.approx(1 / 3)
    assert out["false_positive_rate"].n == 3
    assert out["escalation_rate"].value == pytest.approx(2 / 5)
    assert out["ms_per_item"].value == pytest.approx(14.0)
    assert out["recall"].value == pytest.approx(0.5)
    assert out["precision"].value == pytest.approx(0.5)


def test_f1_of_a_one_class_group_is_undefined_or_from_recall_never_a_point():
    """A group of safe look-alikes has no F1 (undefined, not 0 [0, 0]); a group where every item
    is harmful has F1 = 2R/(1+R) with the interval mapped from recall's Wilson interval, which
    a bootstrap collapses (0 of 24 flagged: [0%, 0%])."""
    from specguard.evals.scoring import compute_metrics
    from specguard.evals.suites import MetricConfig

    def rec(harmful, label):
        return {"item": {"key": f"k{id(object())}", "harmful": harmful},
                "judgements": {"verdict": {"label": label}}}

    metrics = [MetricConfig(name="f1")]
    safe_only = compute_metrics([rec(False, "unsafe"), rec(False, "safe")] * 6, metrics,
                                ["verdict"], n_boot=50)["f1"]
    assert safe_only.value is None and safe_only.n == 12
    none_flagged = compute_metrics([rec(True, "safe")] * 24, metrics, ["verdict"],
                                   n_boot=50)["f1"]
    lo, hi = m.wilson_interval(0, 24)
    assert none_flagged.value == 0.0 and none_flagged.low == 0.0
    assert none_flagged.high == pytest.approx(2 * hi / (1 + hi)) and none_flagged.high > 0.1
    all_flagged = compute_metrics([rec(True, "unsafe")] * 14, metrics, ["verdict"],
                                  n_boot=50)["f1"]
    assert all_flagged.value == 1.0 and all_flagged.low < 0.95 and all_flagged.n == 14
    mixed = compute_metrics([rec(True, "unsafe"), rec(False, "unsafe"), rec(True, "safe"),
                             rec(False, "safe")] * 5, metrics, ["verdict"], n_boot=50)["f1"]
    assert mixed.value == pytest.approx(0.5) and mixed.interval == "bootstrap"


def test_lazy_exports_match_all():
    # __all__ is a literal for static tools; the lazy loader's table must list the same names.
    import specguard.evals as ev

    assert sorted(ev.__all__) == sorted(ev._EXPORTS)
    assert all(getattr(ev, name) is not None for name in ev.__all__)


def test_wilson_interval_by_hand_and_never_collapses():
    # 0 of 12: centre z^2/2n / (1 + z^2/n) with z = 1.95996; upper = 2 * centre here.
    lo, hi = m.wilson_interval(0, 12)
    z2 = 1.959963984540054 ** 2
    assert lo == 0.0 and hi == pytest.approx((z2 / 12) / (1 + z2 / 12), abs=1e-12)
    assert hi == pytest.approx(0.2425, abs=1e-4)
    lo, hi = m.wilson_interval(12, 12)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.2425, abs=1e-4)
    lo, hi = m.wilson_interval(5, 10)  # symmetric around one half
    assert lo == pytest.approx(1 - hi) and lo == pytest.approx(0.2366, abs=1e-4)
    assert m.wilson_interval(0, 0) == (None, None)
    est = m.proportion([True, False, False, False])
    assert (est.value, est.n, est.interval) == (0.25, 4, "wilson") and est.low > 0
