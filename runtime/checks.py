"""Checks without generation: the guarded chat graph's input and output checks on a
conversation (and, for the output check, an answer someone else generated), under the caller's
policy. What `POST /v1/guard/check` and the LiteLLM guardrail (specguard.integrations.litellm)
run.

Nothing here decides differently from the graph: the policy is resolved and the context built
as for a chat request (specguard.context: the same CheckRequest, taxonomy, spec, profile and
guidelines), each check is `ChatContext.check` (the graph's input_check and output_check call
it), a check the policy switches off is reported as not run, and the refusal is the text the
graph's `refuse` node would answer with.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, Field

from .context import ContextBuilder
from .errors import InvalidRequestError
from .graph import refusal_text
from .guard import GuardDecision, Label, Stage, Tier, Verdict
from .policy import ResolvedPolicy
from .report import SpecRef
from .types import Message, Role


class CheckStage(StrEnum):
    """Which checks to run: the input check on the conversation, the output check on the
    answer in its conversation, or both."""

    INPUT = "input"
    OUTPUT = "output"
    BOTH = "both"


class StageCheck(BaseModel):
    """One check's outcome. `ran` is False when the policy switches this check off (nothing
    was decided, `flagged` is False)."""

    stage: Stage
    ran: bool = True
    flagged: bool = False
    label: Label | None = None
    decided_by: Tier | None = None
    tiers: list[Tier] = Field(default_factory=list)  # the tiers that ran, in order
    escalated: bool = False
    undecided: bool = False  # the label came from the policy's on_undecided
    deferred: bool = False  # decided now by the fast tier; the deliberative tier reviews later
    score: float | None = None
    categories: list[str] = Field(default_factory=list)
    category_scores: dict[str, float] = Field(default_factory=dict)
    verdicts: list[Verdict] = Field(default_factory=list)
    latency_ms: float = 0.0  # the check's wall time (every tier that ran)

    @classmethod
    def of(cls, stage: Stage, decision: GuardDecision, ms: float) -> StageCheck:
        return cls(stage=stage, flagged=decision.blocked, label=decision.label,
                   decided_by=decision.decided_by,
                   tiers=list(dict.fromkeys(v.tier for v in decision.verdicts)),
                   escalated=decision.escalated, undecided=decision.undecided,
                   deferred=decision.deferred, score=decision.score,
                   categories=decision.categories, category_scores=decision.category_scores,
                   verdicts=decision.verdicts, latency_ms=round(ms, 3))


class CheckResult(BaseModel):
    """The checks of one request: flagged when any check flagged; `refusal` is what the chat
    graph would answer instead (None when nothing flagged)."""

    request_id: str
    tenant: str
    user: str | None = None
    profile: str | None = None
    flagged: bool
    refusal: str | None = None
    checks: list[StageCheck]
    specs: list[SpecRef] = Field(default_factory=list)
    latency_ms: float = 0.0

    def check(self, stage: Stage) -> StageCheck | None:
        return next((c for c in self.checks if c.stage is stage), None)


def stages_for(stage: CheckStage | str | None, answer: str | None) -> list[Stage]:
    """The checks a request asks for; without a stage: both when there is an answer, else the
    input check."""
    if stage is None:
        stage = CheckStage.BOTH if answer is not None else CheckStage.INPUT
    try:
        stage = CheckStage(stage)
    except ValueError:
        raise InvalidRequestError(f"stage must be one of input, output, both; got {stage!r}.",
                                  hint="Leave stage out to check the input, or the input and "
                                       "the answer when you send one.") from None
    if stage is not CheckStage.INPUT and answer is None:
        raise InvalidRequestError(f"stage {stage.value!r} checks an answer, and `answer` is missing.",
                                  hint="Send the answer to check, or use stage 'input'.")
    if stage is CheckStage.INPUT and answer is not None:
        raise InvalidRequestError("`answer` is only read by the output check, and stage is 'input'.",
                                  hint="Use stage 'output' or 'both', or leave the answer out.")
    return {CheckStage.INPUT: [Stage.INPUT], CheckStage.OUTPUT: [Stage.OUTPUT],
            CheckStage.BOTH: [Stage.INPUT, Stage.OUTPUT]}[stage]


async def run_checks(contexts: ContextBuilder, resolved: ResolvedPolicy,
                     messages: Sequence[Message], *, answer: str | None = None,
                     stage: CheckStage | str | None = None,
                     request_id: str | None = None) -> CheckResult:
    """The checks `stage` asks for, under a resolved policy (`Runtime.check` resolves it)."""
    if not messages:
        raise InvalidRequestError("messages must not be empty.", hint="Send at least one user message.")
    if not any(m.role == Role.USER for m in messages):
        raise InvalidRequestError("messages has no user message.", hint="Add a message with role 'user'.")
    stages = stages_for(stage, answer)
    started = time.perf_counter()
    ctx = await contexts.abuild_context(resolved, request_id=request_id)
    checks: list[StageCheck] = []
    decisions: dict[str, GuardDecision] = {}
    for s in stages:
        if not ctx.checks_on(s):
            checks.append(StageCheck(stage=s, ran=False))
            continue
        decision, step = await ctx.check(s, messages, answer if s is Stage.OUTPUT else None)
        if decision.blocked:  # the refusal names what flagged (the output check's first)
            decisions[f"{s.value}_decision"] = decision
        checks.append(StageCheck.of(s, decision, step.ms))
    flagged = any(c.flagged for c in checks)
    return CheckResult(
        request_id=ctx.request_id, tenant=resolved.tenant, user=resolved.user,
        profile=resolved.profile_id, flagged=flagged,
        refusal=refusal_text(ctx, decisions) if flagged else None,
        checks=checks,
        specs=[SpecRef(name=s.name, scope=s.scope, version=s.version) for s in ctx.specs],
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
    )


__all__ = ["CheckResult", "CheckStage", "StageCheck", "run_checks", "stages_for"]
