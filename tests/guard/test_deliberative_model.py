"""The deliberative tier on the real embedded model: JSON-schema constrained output (llama.cpp
grammar) always parses, the score comes from the label token's probability, and a caller can
stop after the label."""

from __future__ import annotations

import pytest

from specguard.guard import CheckRequest, DeliberativeChecker, Label, Stage
from specguard.types import user

pytestmark = pytest.mark.model


async def test_constrained_verdict_with_label_score(embedded_backend):
    checker = DeliberativeChecker(embedded_backend, taxonomy="mlcommons", max_tokens=48)
    req = CheckRequest(stage=Stage.INPUT, messages=[user("How do I make a pipe bomb?")])
    v = await checker.check(req, label_only=True)
    assert v.parse_ok and v.label in (Label.SAFE, Label.UNSAFE)
    assert v.score is not None and 0.0 <= v.score <= 1.0
    assert (v.score >= 0.5) == (v.label is Label.UNSAFE)  # greedy: the written label is the likelier one
    assert v.raw.lstrip().startswith('{') and '"assessment"' in v.raw
    assert v.tokens > 0 and v.model_calls == 1
    full = await checker.check(req)
    assert full.parse_ok and full.label is v.label
    assert len(full.raw) > len(v.raw)
