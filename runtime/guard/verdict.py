"""What a check decides: a verdict with its reasons, never a bare boolean."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, Field

from ..policy import Controversial, OperatingPoint, Profile
from ..types import Message


class Label(StrEnum):
    SAFE = "safe"
    UNSAFE = "unsafe"
    UNDECIDED = "undecided"  # the check could not decide; the policy chooses what happens


class Stage(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


class Tier(StrEnum):
    FAST = "fast"
    DELIBERATIVE = "deliberative"


class Verdict(BaseModel):
    stage: Stage
    label: Label
    categories: list[str] = Field(default_factory=list)
    explanation: str = ""
    # Probability that the content is unsafe, when the checker has one.
    score: float | None = Field(None, ge=0.0, le=1.0)
    # Per-category probability, when the checker has one (category id -> score).
    category_scores: dict[str, float] = Field(default_factory=dict)
    tier: Tier
    checker: str
    latency_ms: float = 0.0
    tokens: int = 0  # prompt + completion tokens the checker's model calls used
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model_calls: int = 0
    raw: str | None = None  # the checker's raw output, kept for audit
    parse_ok: bool = True
    # Where the deciding text sits: the message index in the request (None: the whole
    # conversation, -1: the draft answer), that message's role, and the window of a long text.
    turn: int | None = None
    role: str | None = None
    window: int | None = None
    # Units of this check TF-IDF was unsure of and no encoder read, because the check had more
    # such units than the fast tier's per-check budget (FastChecker.encoder_units); 0 when every
    # unit was read as usual. They do not set the score (see FastChecker._score_within_budget).
    over_budget: int = 0
    # The P(unsafe) threshold the checker applied (its calibrated operating point).
    threshold: float | None = None


class CheckRequest(BaseModel):
    """What a checker looks at: the conversation, and the draft answer on output checks."""

    stage: Stage
    messages: Sequence[Message]
    response: str | None = None
    profile: Profile | None = None
    guidelines: list[str] = Field(default_factory=list)  # derived per-profile guidelines
    # The policy's taxonomy (None: the checker's own) and the categories it switched off;
    # TieredGuard fills disabled_categories from the CheckSettings it is given.
    taxonomy: str | None = None
    disabled_categories: list[str] = Field(default_factory=list)
    # TieredGuard fills these from CheckSettings too: which calibrated threshold applies.
    operating_point: OperatingPoint = OperatingPoint.BALANCED
    threshold: float | None = None
    # The scope's active spec text (specguard.context builds every request with it): the
    # deliberative tier judges against it. None: the checker's own default spec.
    spec_text: str | None = None
    # What a guard's "controversial" label means here (TieredGuard fills it from CheckSettings).
    controversial: Controversial = Controversial.REFUSE

    @property
    def last_user_text(self) -> str:
        for m in reversed(self.messages):
            if m.role == "user":
                return m.content
        return ""
