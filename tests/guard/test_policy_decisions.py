"""Taxonomies as data, and how policy settings turn verdicts into decisions: threshold,
per-category thresholds, switched-off categories, the escalation band, on_undecided."""

from __future__ import annotations

import pytest

from specguard.errors import ConfigError
from specguard.guard import Label, Stage, Tier, Verdict, available_taxonomies, load_taxonomy
from specguard.guard.tiered import confident, decide
from specguard.policy import CheckSettings, OnUndecided


def test_builtin_taxonomies():
    assert {"beavertails", "mlcommons"} <= set(available_taxonomies())
    bt, ml = load_taxonomy("beavertails"), load_taxonomy("mlcommons")
    assert len(bt.categories) == 14 and len(ml.categories) == 14
    assert ml.ids == [f"S{i}" for i in range(1, 15)]
    assert ml.get("s10").name == "Hate"
    assert bt.get("self_harm").description
    assert bt.normalise(["Self-harm", "self_harm", "made_up"]) == ["self_harm", "made_up"]
    assert [c.id for c in ml.enabled(["S1", "Hate"])][:2] == ["S2", "S3"]
    assert len(ml.enabled(["S1", "Hate"])) == 12
    with pytest.raises(ConfigError, match="Unknown taxonomy"):
        load_taxonomy("nope")


def _v(label=Label.UNSAFE, score=None, cats=(), cat_scores=None, tier=Tier.FAST):
    return Verdict(stage=Stage.INPUT, label=label, score=score, categories=list(cats),
                   category_scores=cat_scores or {}, tier=tier, checker="t")


def test_operating_point_threshold_comes_from_the_checker_unless_fixed():
    v = Verdict(stage=Stage.INPUT, label=Label.SAFE, score=0.4, threshold=0.35, tier=Tier.FAST,
                checker="t")
    assert decide(v, [], CheckSettings(), escalated=False).label is Label.UNSAFE
    assert decide(v, [], CheckSettings(threshold=0.5), escalated=False).label is Label.SAFE


def test_threshold_applies_to_the_score():
    s = CheckSettings(threshold=0.7)
    assert decide(_v(score=0.65), [], s, escalated=False).label is Label.SAFE
    assert decide(_v(Label.SAFE, score=0.75), [], s, escalated=False).label is Label.UNSAFE
    assert decide(_v(score=None), [], s, escalated=False).label is Label.UNSAFE


def test_category_thresholds_and_disabled_categories():
    # The checker named self_harm (its category head was sure); violence has a score only.
    v = _v(score=0.6, cats=["self_harm"], cat_scores={"self_harm": 0.6, "violence": 0.3})
    assert decide(v, [], CheckSettings(), escalated=False).categories == ["self_harm"]
    # A category the checker is not sure of is not named, though the text is unsafe.
    unsure = _v(score=0.6, cat_scores={"self_harm": 0.6, "violence": 0.3})
    d = decide(unsure, [], CheckSettings(), escalated=False)
    assert d.label is Label.UNSAFE and d.categories == []
    # A stricter threshold for one category flags it below the global threshold...
    d = decide(v, [], CheckSettings(category_thresholds={"violence": 0.25}), escalated=False)
    assert d.label is Label.UNSAFE and d.categories == ["self_harm", "violence"]
    # ...a laxer one lets it through.
    d = decide(v, [], CheckSettings(category_thresholds={"self_harm": 0.9}), escalated=False)
    assert d.label is Label.SAFE
    # Switched off: it never flags, and its score is not reported.
    d = decide(v, [], CheckSettings(disabled_categories=["self_harm"]), escalated=False)
    assert d.label is Label.SAFE and "self_harm" not in d.category_scores
    # A deliberative verdict that named only switched-off categories is safe.
    d = decide(_v(cats=["S12"], tier=Tier.DELIBERATIVE), [], CheckSettings(disabled_categories=["S12"]),
               escalated=True)
    assert d.label is Label.SAFE and d.decided_by is Tier.DELIBERATIVE and d.escalated


def test_undecided_follows_the_policy():
    d = decide(_v(Label.UNDECIDED), [], CheckSettings(), escalated=True)
    assert d.label is Label.UNSAFE and d.undecided  # fail closed by default
    d = decide(_v(Label.UNDECIDED), [], CheckSettings(on_undecided=OnUndecided.ALLOW), escalated=True)
    assert d.label is Label.SAFE and d.undecided


def test_escalation_band():
    s = CheckSettings(escalate_band=(0.3, 0.7))
    assert confident(_v(score=0.1), s) and confident(_v(score=0.9), s)
    assert not confident(_v(score=0.5), s)
    assert not confident(_v(Label.UNDECIDED), s)
    assert confident(_v(score=0.5), CheckSettings(escalate_band=(0.5, 0.5))) is False
    assert confident(_v(score=0.51), CheckSettings(escalate_band=(0.5, 0.5)))
