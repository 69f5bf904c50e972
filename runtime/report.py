"""The safety report every answer carries: what was checked, by whom, what was decided,
which spec versions applied, and what it cost."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from .guard.verdict import Label, Stage, Tier, Verdict
from .policy import StreamProtection
from .review import ReviewRecord
from .revision import RevisionFate
from .types import Cost

if TYPE_CHECKING:
    from .guard import GuardDecision


class Action(StrEnum):
    ALLOWED = "allowed"  # the draft passed as written
    REVISED = "revised"  # the draft was critiqued and revised against the spec
    REFUSED = "refused"  # the request or every revision was judged unsafe


class StepRecord(Cost):
    """One node's work: its name, its time and what it cost."""

    name: str
    ms: float

    @classmethod
    def timed(cls, name: str, start: float, cost: Cost | None = None) -> StepRecord:
        """The record of a step that started at `start` (time.perf_counter()) and ends now."""
        return cls(name=name, ms=(time.perf_counter() - start) * 1000,
                   **(cost or Cost()).model_dump())


class SpecRef(BaseModel):
    name: str
    scope: str
    version: int

    def __str__(self) -> str:
        return f"{self.name}@{self.scope}#v{self.version}"


class StageDecision(BaseModel):
    stage: Stage
    label: Label
    decided_by: Tier | None = None
    escalated: bool = False
    undecided: bool = False
    categories: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, stage: Stage, d: GuardDecision) -> StageDecision:
        return cls(stage=stage, label=d.label, decided_by=d.decided_by, escalated=d.escalated,
                   undecided=d.undecided, categories=d.categories)


class SafetyReport(Cost):
    request_id: str
    tenant: str
    user: str | None = None
    profile: str | None = None
    client_user: str | None = None  # the request's `user` field: an identifier only
    action: Action
    decisions: list[StageDecision] = Field(default_factory=list)
    verdicts: list[Verdict] = Field(default_factory=list)
    checks_run: list[str] = Field(default_factory=list)
    specs: list[SpecRef] = Field(default_factory=list)
    critique_rounds: int = 0
    # Each revision's fate: accepted (it replaced the draft) or rejected, and why.
    revisions: list[RevisionFate] = Field(default_factory=list)
    # Asynchronous reviews (`review: async`): this conversation's earlier ones (with their
    # verdicts) and the ones this request started (pending when the answer went out).
    reviews: list[ReviewRecord] = Field(default_factory=list)
    # How the output was protected (the policy's choice, or "pass" when nothing checks it).
    stream_protection: StreamProtection | None = None
    # The output check flagged text the client had already received: detox streams tokens as
    # they are generated, so its check can only report afterwards (and append the refusal).
    flagged_after_release: bool = False
    decoding: dict[str, Any] | None = None
    total_ms: float = 0.0
    steps: list[StepRecord] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def headers(self) -> dict[str, str]:
        """The report's headline as HTTP headers (x-specguard-*)."""
        h = {
            "x-specguard-request-id": self.request_id,
            "x-specguard-action": self.action.value,
            "x-specguard-specs": ",".join(str(s) for s in self.specs),
            "x-specguard-checks": ",".join(self.checks_run),
            "x-specguard-model-calls": str(self.model_calls),
            "x-specguard-tokens": str(self.total_tokens),
            "x-specguard-total-ms": f"{self.total_ms:.1f}",
        }
        if self.stream_protection is not None:
            h["x-specguard-stream-protection"] = self.stream_protection.value
        for d in self.decisions:
            h[f"x-specguard-{d.stage.value}-verdict"] = d.label.value
        return h
