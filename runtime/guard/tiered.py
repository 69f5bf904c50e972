"""Escalation (SafeRoute-style): the fast tier decides when it is confident; otherwise the
deliberative tier runs. The decision records every verdict and which tier decided.

Policy settings act here, the same way whichever tier decided:
- `operating_point` (strict | balanced | permissive): the fast tier's calibrated threshold;
  `threshold` replaces it with a fixed P(unsafe) when set;
- `category_thresholds`: per category, a score at or above it flags that category even when
  the overall score is below the threshold (stricter), and a category named by the checker
  whose score is below its own threshold does not count (laxer);
- `disabled_categories`: those categories never flag (and are left out of deliberative prompts);
- `escalate_band`: fast-tier scores inside [low, high] go to the deliberative tier;
- `deliberative`: off means the fast tier always decides;
- `on_undecided`: what an UNDECIDED verdict becomes (block by default: fail closed);
- `review: async`: an uncertain fast verdict decides now (the decision is `deferred`) and the
  caller sends the case to the deliberative tier off the request path (`review`;
  specguard.review).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..policy import CheckSettings, OnUndecided, Review
from .base import Checker
from .verdict import CheckRequest, Label, Tier, Verdict


class GuardDecision(BaseModel):
    label: Label  # SAFE or UNSAFE after the policy's handling of UNDECIDED
    verdicts: list[Verdict] = Field(default_factory=list)
    decided_by: Tier | None = None
    escalated: bool = False
    categories: list[str] = Field(default_factory=list)  # enabled categories that flagged
    undecided: bool = False  # the label came from on_undecided, not from a checker
    score: float | None = None  # the deciding verdict's P(unsafe), when it has one
    category_scores: dict[str, float] = Field(default_factory=dict)  # enabled categories only
    # The fast tier decided an uncertain case now; the deliberative tier reviews it later
    # (`review: async`); `review` is the key of that review (specguard.review).
    deferred: bool = False
    review: str | None = None

    @property
    def blocked(self) -> bool:
        return self.label is Label.UNSAFE

    @property
    def latency_ms(self) -> float:
        return sum(v.latency_ms for v in self.verdicts)


class TieredGuard:
    def __init__(self, fast: Checker | None = None, deliberative: Checker | None = None) -> None:
        if fast is None and deliberative is None:
            raise ValueError("a guard needs at least one tier")
        self.fast = fast
        self.deliberative = deliberative

    @property
    def tiers(self) -> list[str]:
        return [c.name for c in (self.fast, self.deliberative) if c is not None]

    async def check(self, request: CheckRequest, settings: CheckSettings) -> GuardDecision:
        if not settings.enabled:
            return GuardDecision(label=Label.SAFE)
        request = _with_settings(request, settings)
        verdicts: list[Verdict] = []
        if self.fast is not None:
            v = await self.fast.check(request)
            verdicts.append(v)
            if confident(v, settings) or self.deliberative is None or not settings.deliberative:
                return decide(v, verdicts, settings, escalated=False)
            if settings.review is Review.ASYNC:
                return _deferred(decide(v, verdicts, settings, escalated=False))
        assert self.deliberative is not None
        v = await self.deliberative.check(request)
        verdicts.append(v)
        return decide(v, verdicts, settings, escalated=self.fast is not None)

    async def check_many(self, requests: list[CheckRequest], settings: CheckSettings) -> list[GuardDecision]:
        """Many requests at once: the fast tier scores them in one batch; only the uncertain
        ones escalate, one by one."""
        check_many = getattr(self.fast, "check_many", None)
        if check_many is None or not settings.enabled:
            return [await self.check(r, settings) for r in requests]
        requests = [_with_settings(r, settings) for r in requests]
        fast_verdicts = await check_many(requests)
        out = []
        for r, v in zip(requests, fast_verdicts, strict=True):
            if confident(v, settings) or self.deliberative is None or not settings.deliberative:
                out.append(decide(v, [v], settings, escalated=False))
            elif settings.review is Review.ASYNC:
                out.append(_deferred(decide(v, [v], settings, escalated=False)))
            else:
                d = await self.deliberative.check(r)
                out.append(decide(d, [v, d], settings, escalated=True))
        return out


    async def review(self, request: CheckRequest, settings: CheckSettings) -> GuardDecision:
        """The deliberative tier's decision on a case the fast tier deferred (off the request
        path; specguard.review)."""
        assert self.deliberative is not None, "only a guard with a deliberative tier defers"
        v = await self.deliberative.check(_with_settings(request, settings))
        return decide(v, [v], settings, escalated=True)


def _deferred(decision: GuardDecision) -> GuardDecision:
    decision.deferred = True
    return decision


def confident(v: Verdict, settings: CheckSettings) -> bool:
    """Whether a fast verdict may decide alone: decided, and its score outside the band."""
    if v.label is Label.UNDECIDED:
        return False
    if v.score is None:
        return True
    lo, hi = settings.escalate_band
    return not (lo <= v.score <= hi)


def category_scores(v: Verdict) -> dict[str, float]:
    """Per-category scores: the checker's own, else the verdict's score (1.0 for an unsafe
    verdict without one) for each category it named."""
    scores = dict(v.category_scores)
    base = v.score if v.score is not None else (1.0 if v.label is Label.UNSAFE else 0.0)
    for c in v.categories:
        scores.setdefault(c, base)
    return scores


def _with_settings(request: CheckRequest, settings: CheckSettings) -> CheckRequest:
    """The request as the checkers should see it under `settings`."""
    return request.model_copy(update={
        "disabled_categories": list(settings.disabled_categories),
        "operating_point": settings.operating_point,
        "threshold": settings.threshold,
        "controversial": settings.controversial,
    })


def _threshold(v: Verdict, settings: CheckSettings) -> float:
    if settings.threshold is not None:
        return settings.threshold
    return v.threshold if v.threshold is not None else 0.5


def decide(v: Verdict, verdicts: list[Verdict], settings: CheckSettings, *, escalated: bool) -> GuardDecision:
    """Apply the policy to the deciding verdict."""
    common = dict(verdicts=verdicts, decided_by=v.tier, escalated=escalated, score=v.score)
    if v.label is Label.UNDECIDED:
        label = Label.UNSAFE if settings.on_undecided is OnUndecided.BLOCK else Label.SAFE
        return GuardDecision(label=label, undecided=True, **common)
    off = {c.lower() for c in settings.disabled_categories}
    scores = {c: s for c, s in category_scores(v).items() if c.lower() not in off}
    named = [c for c in v.categories if c.lower() not in off]
    if v.score is None:
        # A verdict without a score (a deliberative label): unsafe unless every category it
        # named is switched off.
        unsafe = v.label is Label.UNSAFE and (bool(named) or not v.categories)
        flagged = named if unsafe else []
    else:
        threshold = _threshold(v, settings)
        unsafe = v.score >= threshold
        if unsafe and v.categories and not named:
            unsafe = False  # every category it is sure of is switched off
        per_cat = settings.category_thresholds
        if unsafe and named and all(scores.get(c, 0.0) < per_cat.get(c, threshold) for c in named
                                    if c in per_cat) and all(c in per_cat for c in named):
            unsafe = False  # laxer thresholds for every named category
        stricter = [c for c, t in per_cat.items() if c in scores and scores[c] >= t]
        if not unsafe and stricter:
            unsafe = True
        flagged = list(dict.fromkeys([*(named if unsafe else []), *stricter])) if unsafe else []
    label = Label.UNSAFE if unsafe else Label.SAFE
    return GuardDecision(label=label, categories=flagged, category_scores=scores, **common)
