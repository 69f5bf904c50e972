"""POST /v1/moderations in the OpenAI moderation API's shape: wire <-> domain only. The
runtime checks the texts under the caller's policy (`Runtime.moderate`: the same context
builder, and so the same CheckRequest, as a chat request)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import InvalidRequestError
from ..guard import GuardDecision
from ..policy import Caller
from ._cancel import ClientGone, until_done
from .auth import authenticate, end_user
from .errors import request_id
from .wire import checked_text

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
    model: str | None = Field(None, max_length=256)

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
        return [checked_text(t, f"input[{i}]") for i, t in enumerate(texts)]


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
async def create_moderation(body: ModerationRequest, request: Request,
                            caller: Caller = Depends(authenticate)) -> ModerationResponse:
    """Under the same budget as a chat request: one slot in flight per request, cancelled
    past the request timeout or when the client goes away (however many inputs escalate)."""
    state = request.app.state
    texts = body.texts()
    user = end_user(request, caller)
    with state.in_flight.hold(caller.key_name):
        try:
            moderation = await until_done(request, state.runtime.moderate(
                texts, tenant=caller.tenant, user=user), state.settings.request_timeout_s)
        except ClientGone:
            return Response(status_code=499)
    return ModerationResponse(
        id=f"modr-{request_id(request).removeprefix('sg-')}",
        model=body.model or DEFAULT_MODEL,
        results=[_result(d, moderation.category_ids) for d in moderation.decisions],
    )
