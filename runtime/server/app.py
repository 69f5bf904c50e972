"""The OpenAI-compatible guarded chat server (FastAPI): edge duties only.

A chat request: `authenticate` (auth.py: key, rate and concurrency limits) -> wire body to
messages and parameters (wire.py) -> `Runtime.chat` / `Runtime.stream` (core.py), which runs
the guarded chat graph (graph.py) -> the answer and its safety report back to the wire.
Errors become OpenAI-shaped bodies with the right status (errors.py). No route resolves a
policy or decides anything about a request; the runtime does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..core import Runtime
from ..errors import (
    BackendTimeoutError,
    NotFoundError,
    RequestTooLargeError,
    SpecguardError,
)
from ..policy import Caller
from . import errors
from .auth import ConcurrencyLimit, TokenBucket, authenticate, end_user
from .wire import ChatCompletionRequest, chunk_body, completion_body, error_body


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int = Field(1_000_000, ge=1024)
    request_timeout_s: float = Field(300.0, gt=0)
    rate_limit_per_minute: int = Field(0, ge=0)  # per API key; 0 = unlimited
    max_concurrent_per_key: int = Field(0, ge=0)  # requests in flight per API key; 0 = unlimited
    model_aliases: list[str] = Field(default_factory=lambda: ["specguard"])
    trusted_user_header: str | None = "x-specguard-user"


def create_app(runtime: Runtime, settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Load the model before serving (readyz says "loading" until then) and run the spec
        # updater for the server's lifetime.
        await runtime.load()
        updater = runtime.spec_updater
        if updater is not None:
            await updater.start()
        app.state.ready = True
        try:
            yield
        finally:
            if updater is not None:
                await updater.stop()

    app = FastAPI(title="specguard", version="0.1.0", docs_url="/docs", redoc_url=None,
                  lifespan=lifespan)
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.limiter = TokenBucket(settings.rate_limit_per_minute)
    app.state.in_flight = ConcurrencyLimit(settings.max_concurrent_per_key)
    app.state.ready = False
    errors.install(app)
    app.add_middleware(_BodyLimit, max_bytes=settings.max_body_bytes)

    models = [*settings.model_aliases, runtime.backend.name]

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        if not app.state.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ready", "model": runtime.backend.name}

    @app.get("/v1/models")
    async def list_models(_: Caller = Depends(authenticate)):
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": 0, "owned_by": "specguard"} for m in models],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request,
                               caller: Caller = Depends(authenticate)):
        if body.model not in models:
            raise NotFoundError(
                f"The model {body.model!r} does not exist.",
                hint=f"Use one of: {', '.join(models)} (GET /v1/models).",
            )
        user = end_user(request, caller)
        params = body.params()
        messages = [m.to_message() for m in body.messages]
        if body.stream:
            return await _stream(runtime, settings, body, messages, caller, user, params,
                                 app.state.in_flight)
        try:
            with app.state.in_flight.hold(caller.key_name):
                result = await asyncio.wait_for(
                    runtime.chat(messages, tenant=caller.tenant, user=user, params=params),
                    settings.request_timeout_s,
                )
        except TimeoutError as exc:
            raise BackendTimeoutError(
                f"The request took longer than {settings.request_timeout_s:.0f} s."
            ) from exc
        report = result.report.model_copy(update={"client_user": body.user})
        content = completion_body(
            request_id=report.request_id,
            model=body.model,
            answer=result.answer,
            finish_reason=result.finish_reason,
            prompt_tokens=report.prompt_tokens,
            completion_tokens=report.completion_tokens,
            report=report.model_dump(mode="json"),
        )
        return JSONResponse(content, headers=report.headers())

    try:
        from .moderations import router as moderations_router
    except ImportError:  # the guard's router ships with the guard extra
        moderations_router = None
    if moderations_router is not None:
        app.include_router(moderations_router)
    from .admin import router as admin_router  # users, profiles, keys, guidelines (admin keys only)

    app.include_router(admin_router)
    return app


async def _stream(runtime: Runtime, settings: ServerSettings, body: ChatCompletionRequest,
                  messages, caller: Caller, user: str | None, params,
                  in_flight: ConcurrencyLimit) -> StreamingResponse:
    created = int(time.time())
    events = runtime.stream(messages, tenant=caller.tenant, user=user, params=params)
    request_id = events.request_id
    deadline = time.monotonic() + settings.request_timeout_s

    async def next_event():
        remaining = deadline - time.monotonic()
        return await asyncio.wait_for(anext(events), max(remaining, 0.001))

    # Pull the first event before answering: input checks (and, in buffer mode, the whole
    # guarded answer) finish before the first byte, so errors still get a proper status. The
    # request holds its in-flight slot until the stream ends, however it ends.
    in_flight.acquire(caller.key_name)
    try:
        first = await next_event()
    except StopAsyncIteration:
        first = None
    except BaseException as exc:
        await events.aclose()
        in_flight.release(caller.key_name)
        if isinstance(exc, TimeoutError):
            raise BackendTimeoutError("The model did not start answering in time.") from exc
        raise

    async def sse() -> AsyncIterator[bytes]:
        event = first
        sent_role = False
        try:
            while event is not None:
                if event.report is not None:
                    report = event.report.model_copy(update={"client_user": body.user})
                    yield _sse(chunk_body(request_id=request_id, model=body.model, created=created,
                                          delta={}, finish_reason=event.finish_reason or "stop",
                                          specguard=report.model_dump(mode="json")))
                    if body.stream_options and body.stream_options.include_usage:
                        usage = {"prompt_tokens": report.prompt_tokens,
                                 "completion_tokens": report.completion_tokens,
                                 "total_tokens": report.total_tokens}
                        chunk = chunk_body(request_id=request_id, model=body.model, created=created,
                                           delta={}, usage=usage)
                        chunk["choices"] = []
                        yield _sse(chunk)
                    break
                delta = {"content": event.text}
                if not sent_role:
                    delta["role"] = "assistant"
                    sent_role = True
                yield _sse(chunk_body(request_id=request_id, model=body.model, created=created, delta=delta))
                try:
                    event = await next_event()
                except StopAsyncIteration:
                    event = None
        except TimeoutError:
            yield _sse(error_body("The model stopped answering in time.", type_="timeout_error",
                                  code="upstream_timeout"))
        except SpecguardError as exc:
            # Headers are gone already: report the failure in-band, as OpenAI's API does.
            yield _sse(error_body(str(exc), type_="upstream_error", code=exc.code))
        finally:
            await events.aclose()
            in_flight.release(caller.key_name)
        yield b"data: [DONE]\n\n"

    headers = {"x-specguard-request-id": request_id,
               "x-specguard-stream-protection": events.protection.value,
               "cache-control": "no-cache"}
    return StreamingResponse(sse(), media_type="text/event-stream", headers=headers)


def _sse(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class _BodyLimit:
    """Refuse bodies over the limit with 413, by header or by counting what arrives."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                return await _reject_413(send, self.max_bytes)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise RequestTooLargeError(f"Request body over {self.max_bytes} bytes.")
            return message

        return await self.app(scope, limited_receive, send)


async def _reject_413(send, max_bytes: int) -> None:
    body = json.dumps(error_body(f"Request body over {max_bytes} bytes.", type_="invalid_request_error",
                                 code="request_too_large")).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
