"""A minimal OpenAI-compatible upstream that answers at once (or fails on purpose): the right
tool to measure the proxy's own overhead, and to test how upstream failures surface.

    uvicorn specguard.server.echo_upstream:app --port 9000

`mode` picks a failure: "no_choices" (200 without choices), "bad_json" (200 with a body that
is not JSON), "bad_sse_first" (a stream whose first event is not JSON), "bad_sse_mid" (a good
chunk, then an event that is not JSON), "list_event" (a stream event that is a JSON list).
`fail_status` answers that status with `error_detail` in its body (what a client must never
see). A stream sends `answer` in `pieces` chunks, `piece_delay_s` apart (a long-held stream).
"""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

MODES = ("ok", "no_choices", "bad_json", "bad_sse_first", "bad_sse_mid", "list_event")


def create_echo_upstream(*, answer: str = "ok", fail_status: int | None = None,
                         delay_s: float = 0.0, mode: str = "ok", pieces: int = 2,
                         piece_delay_s: float = 0.0,
                         error_detail: str = "upstream failure") -> FastAPI:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    app = FastAPI()

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        body = await request.json()
        if delay_s:
            await asyncio.sleep(delay_s)
        if fail_status is not None:
            return JSONResponse({"error": {"message": error_detail, "type": "server_error"}},
                                status_code=fail_status)
        created = int(time.time())

        def chunk(delta: dict, finish: str | None = None, **extra) -> str:
            out = {"id": "up", "object": "chat.completion.chunk", "created": created,
                   "model": body["model"],
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            return f"data: {json.dumps(out)}\n\n"

        if body.get("stream"):
            async def sse():
                if mode == "bad_sse_first":
                    yield "data: {not json\n\n"
                    return
                if mode == "list_event":
                    yield "data: [1, 2, 3]\n\n"
                    return
                n = max(1, pieces)
                step = max(1, -(-len(answer) // n))
                for i in range(0, max(len(answer), 1), step):
                    if piece_delay_s and i:
                        await asyncio.sleep(piece_delay_s)
                    yield chunk({"content": answer[i:i + step]})
                    if mode == "bad_sse_mid":
                        yield "data: {\"choices\": [oops\n\n"
                        return
                yield chunk({}, "stop", usage={"prompt_tokens": 1, "completion_tokens": n,
                                               "total_tokens": n + 1})
                yield "data: [DONE]\n\n"

            return StreamingResponse(sse(), media_type="text/event-stream")
        if mode == "no_choices":
            return {"id": "up", "object": "chat.completion", "created": created,
                    "model": body["model"], "usage": {"prompt_tokens": 1}}
        if mode == "bad_json":
            return PlainTextResponse("<html>gateway says hello</html>", status_code=200)
        return {
            "id": "up", "object": "chat.completion", "created": created, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    return app


app = create_echo_upstream()
