"""The safety report every answer carries: what was checked, by whom, what was decided,
which spec versions applied, and what it cost."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from .guard.verdict import Stage, Tier, Verdict


class Action(StrEnum):
    ALLOWED = "allowed"  # the draft passed as written
    REVISED = "revised"  # the draft was critiqued and revised against the spec
    REFUSED = "refused"  # the request or every revision was judged unsafe


class StepRecord(BaseModel):
    name: str
    ms: float
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class SpecRef(BaseModel):
    name: str
    scope: str
    version: int

    def __str__(self) -> str:
        return f"{self.name}@{self.scope}#v{self.version}"


class StageDecision(BaseModel):
    stage: Stage
    label: str
    decided_by: Tier | None = None
    escalated: bool = False
    undecided: bool = False
    categories: list[str] = Field(default_factory=list)


class SafetyReport(BaseModel):
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
    stream_protection: str | None = None
    decoding: dict[str, Any] | None = None
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
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
            "x-specguard-tokens": str(self.prompt_tokens + self.completion_tokens),
            "x-specguard-total-ms": f"{self.total_ms:.1f}",
        }
        for d in self.decisions:
            h[f"x-specguard-{d.stage.value}-verdict"] = d.label
        return h
