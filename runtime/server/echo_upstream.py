"""A minimal OpenAI-compatible upstream that answers at once (or fails on purpose): the right
tool to measure the proxy's own overhead, and to test how upstream failures surface.

    uvicorn specguard.server.echo_upstream:app --port 9000
"""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


def create_echo_upstream(*, answer: str = "ok", fail_status: int | None = None,
                         delay_s: float = 0.0) -> FastAPI:
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
            return JSONResponse({"error": {"message": "upstream failure", "type": "server_error"}},
                                status_code=fail_status)
        created = int(time.time())
        if body.get("stream"):
            async def sse():
                for piece in (answer[: len(answer) // 2], answer[len(answer) // 2:]):
                    chunk = {"id": "up", "object": "chat.completion.chunk", "created": created,
                             "model": body["model"],
                             "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                end = {"id": "up", "object": "chat.completion.chunk", "created": created,
                       "model": body["model"],
                       "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                yield f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n"

            return StreamingResponse(sse(), media_type="text/event-stream")
        return {
            "id": "up", "object": "chat.completion", "created": created, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    return app


app = create_echo_upstream()
