"""POST /v1/moderations in the OpenAI moderation API's shape, backed by the runtime's guard and
the caller's resolved policy (its input-check settings and taxonomy).

The app provides `app.state.guard` (a TieredGuard) and `app.state.policy` (a Policy); the
caller authenticates with `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import AuthenticationError, InvalidRequestError
from ..guard import CheckRequest, GuardDecision, Stage, load_taxonomy
from ..policy import Caller
from ..types import Message, Role

router = APIRouter()

MAX_INPUTS = 64
DEFAULT_MODEL = "specguard-guard"


class TextInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = "text"
    text: str

    @field_validator("type")
    @classmethod
    def _text_only(cls, v: str) -> str:
        if v != "text":
            raise ValueError("only text inputs are supported")
        return v


class ModerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str | list[str] | list[TextInput]
    model: str | None = None

    def texts(self) -> list[str]:
        items = [self.input] if isinstance(self.input, str) else list(self.input)
        texts = [i.text if isinstance(i, TextInput) else i for i in items]
        if not texts:
            raise InvalidRequestError("`input` is empty.", hint="Send a string or a list of strings.")
        if len(texts) > MAX_INPUTS:
            raise InvalidRequestError(
                f"`input` has {len(texts)} items; at most {MAX_INPUTS} per request.",
                hint="Split the list over several requests.",
            )
        return texts


class ModerationResult(BaseModel):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    # specguard's own fields: which tier decided, the overall score, whether it escalated.
    specguard: dict = Field(default_factory=dict)


class ModerationResponse(BaseModel):
    id: str
    model: str
    results: list[ModerationResult]


async def _caller(request: Request) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AuthenticationError("Missing API key.", hint="Send it as `Authorization: Bearer <key>`.")
    caller = request.app.state.policy.authenticate(key.strip())
    limiter = getattr(request.app.state, "limiter", None)
    if limiter is not None:
        limiter.take(caller.key_name)
    return caller


def _result(decision: GuardDecision, category_ids: list[str]) -> ModerationResult:
    scores = {c: 0.0 for c in category_ids}
    for c, s in decision.category_scores.items():
        if c in scores:
            scores[c] = round(float(s), 6)
    flagged_cats = {c: (c in decision.categories) for c in category_ids}
    return ModerationResult(
        flagged=decision.blocked,
        categories=flagged_cats,
        category_scores=scores,
        specguard={
            "decided_by": decision.decided_by.value if decision.decided_by else None,
            "escalated": decision.escalated,
            "undecided": decision.undecided,
            "score": decision.score,
            "other_categories": [c for c in decision.categories if c not in flagged_cats],
            "latency_ms": round(decision.latency_ms, 2),
        },
    )


@router.post("/v1/moderations", response_model=ModerationResponse)
async def create_moderation(body: ModerationRequest, request: Request) -> ModerationResponse:
    caller = await _caller(request)
    texts = body.texts()
    resolved = request.app.state.policy.resolve(caller.tenant, caller.user)
    settings = resolved.settings
    guard = request.app.state.guard
    taxonomy = load_taxonomy(settings.taxonomy)
    off = {c.lower() for c in settings.input_check.disabled_categories}
    category_ids = [c.id for c in taxonomy.categories if c.id.lower() not in off]
    checks = [
        CheckRequest(stage=Stage.INPUT, messages=[Message(role=Role.USER, content=t)],
                     profile=resolved.profile, taxonomy=settings.taxonomy)
        for t in texts
    ]
    decisions = await guard.check_many(checks, settings.input_check)
    return ModerationResponse(
        id=f"modr-{uuid.uuid4().hex[:24]}",
        model=body.model or DEFAULT_MODEL,
        results=[_result(d, category_ids) for d in decisions],
    )
