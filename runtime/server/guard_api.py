"""POST /v1/guard/check: the chat graph's checks without generating (specguard.checks), for
callers that generate elsewhere (a gateway's guardrail, a batch job) and want specguard's
verdicts. Wire <-> domain only; the runtime checks under the caller's policy, with the same
authentication, limits and request budget as a chat request.

    {"messages": [...], "answer": "...", "stage": "input" | "output" | "both"}
    -> {"id", "object": "guard.check", "flagged", "refusal", "checks": [{stage, ran, flagged,
        label, decided_by, tiers, categories, category_scores, verdicts, latency_ms, ...}],
        "specs": [{name, scope, version}], "tenant", "user", "profile", "latency_ms"}
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..checks import CheckStage
from ..policy import Caller
from ._cancel import ClientGone, until_done
from .auth import authenticate, end_user
from .errors import REQUEST_ID, request_id
from .wire import WireMessage, checked_text

router = APIRouter()


class GuardCheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored

    messages: list[WireMessage] = Field(min_length=1, max_length=4096)
    answer: str | None = None  # the answer to check (the output check); generated elsewhere
    stage: CheckStage | None = None  # default: both with an answer, else input


@router.post("/v1/guard/check")
async def guard_check(body: GuardCheckRequest, request: Request,
                      caller: Caller = Depends(authenticate)):
    state = request.app.state
    messages = [m.to_message() for m in body.messages]
    answer = checked_text(body.answer, "answer") if body.answer is not None else None
    user = end_user(request, caller)
    rid = request_id(request)
    with state.in_flight.hold(caller.key_name):
        try:
            result = await until_done(request, state.runtime.check(
                messages, answer=answer, stage=body.stage, tenant=caller.tenant, user=user,
                request_id=rid), state.settings.request_timeout_s)
        except ClientGone:
            return Response(status_code=499)
    content = {"id": f"gchk-{rid.removeprefix('sg-')}", "object": "guard.check",
               **result.model_dump(mode="json")}
    headers = {REQUEST_ID: rid, "x-specguard-flagged": str(result.flagged).lower()}
    for check in result.checks:
        if check.ran:
            headers[f"x-specguard-{check.stage.value}-verdict"] = check.label.value
    return JSONResponse(content, headers=headers)
