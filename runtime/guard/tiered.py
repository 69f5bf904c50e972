"""Escalation (SafeRoute-style): the fast tier decides when it is confident; otherwise the
deliberative tier runs. The decision records every verdict and which tier decided."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..policy import CheckSettings, OnUndecided
from .base import Checker
from .verdict import CheckRequest, Label, Tier, Verdict


class GuardDecision(BaseModel):
    label: Label  # SAFE or UNSAFE after the policy's handling of UNDECIDED
    verdicts: list[Verdict] = Field(default_factory=list)
    decided_by: Tier | None = None
    escalated: bool = False
    categories: list[str] = Field(default_factory=list)
    undecided: bool = False  # the label came from on_undecided, not from a checker

    @property
    def blocked(self) -> bool:
        return self.label is Label.UNSAFE


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
        verdicts: list[Verdict] = []
        if self.fast is not None:
            v = await self.fast.check(request)
            verdicts.append(v)
            if _confident(v, settings) or self.deliberative is None or not settings.deliberative:
                return _decide(v, verdicts, settings, escalated=False)
        assert self.deliberative is not None
        v = await self.deliberative.check(request)
        verdicts.append(v)
        return _decide(v, verdicts, settings, escalated=self.fast is not None)


def _confident(v: Verdict, settings: CheckSettings) -> bool:
    if v.label is Label.UNDECIDED:
        return False
    if v.score is None:
        return True
    lo, hi = settings.escalate_band
    return not (lo <= v.score <= hi)


def _decide(v: Verdict, verdicts: list[Verdict], settings: CheckSettings, *, escalated: bool) -> GuardDecision:
    label = v.label
    if v.score is not None and label is not Label.UNDECIDED:
        label = Label.UNSAFE if v.score >= settings.threshold else Label.SAFE
    categories = [c for c in v.categories if c not in settings.disabled_categories]
    if label is Label.UNSAFE and v.categories and not categories:
        label = Label.SAFE  # every category it flagged is switched off by the policy
    undecided = label is Label.UNDECIDED
    if undecided:
        label = Label.UNSAFE if settings.on_undecided is OnUndecided.BLOCK else Label.SAFE
    return GuardDecision(
        label=label,
        verdicts=verdicts,
        decided_by=v.tier,
        escalated=escalated,
        categories=categories,
        undecided=undecided,
    )
