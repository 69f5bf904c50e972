"""The OpenAI-compatible guarded chat server (FastAPI): edge duties only.

A chat request: the edge (`_Edge`: a request id, header and body size limits) ->
`authenticate` (auth.py: key, rate and concurrency limits) -> wire body to messages and
parameters (wire.py) -> `Runtime.chat` / `Runtime.stream` (core.py), which runs the guarded
chat graph (graph.py) -> the answer and its safety report back to the wire. Errors become
OpenAI-shaped bodies with the right status (errors.py); after a stream's first byte, an error
event and `[DONE]`. No route resolves a policy or decides anything about a request; the runtime
does.

Nothing here blocks the event loop: model calls are async (the embedded model runs on its own
threads), store calls run on the store's threads, and the composed policy is refreshed by a
background task. A request that times out or whose client goes away is cancelled, down to the
embedded model's token loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..context import new_request_id
from ..core import Runtime
from ..observability import note_upstream_error
from ..errors import BackendTimeoutError, NotFoundError, SpecguardError
from ..policy import Caller
from . import errors
from ._cancel import ClientGone, until_done
from .auth import ConcurrencyLimit, TokenBucket, authenticate, end_user
from .errors import REQUEST_ID, error_type, log_failure, public_message, request_id
from .health import Health
from .metrics import install as observe
from .wire import ChatCompletionRequest, chunk_body, completion_body, error_body

log = logging.getLogger("specguard.server")


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_header_bytes: int = Field(16_384, ge=1024)  # all request headers together; more is 431
    body_timeout_s: float = Field(15.0, gt=0)  # a body that stops arriving is 408
    # The whole budget of one request: every model call of the graph (retries included) and
    # every check share it; past it the request is cancelled (504).
    request_timeout_s: float = Field(300.0, gt=0)
    rate_limit_per_minute: int = Field(0, ge=0)  # per API key; 0 = unlimited
    max_concurrent_per_key: int = Field(16, ge=0)  # requests in flight per API key (429); 0 = unlimited
    max_in_flight: int = Field(256, ge=0)  # requests in flight in all (503); 0 = unlimited
    model_aliases: list[str] = Field(default_factory=lambda: ["specguard"])
    trusted_user_header: str | None = "x-specguard-user"
    # Observability (metrics.py): GET /metrics, one JSON access-log line per request, and the
    # number of tenants that get their own metric label (the rest share "_other").
    metrics: bool = True
    access_log: bool = True
    max_metric_tenants: int = Field(50, ge=1)


def create_app(runtime: Runtime, settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Load the model before serving (readyz says "loading" until then), keep the composed
        # policy fresh off the event loop, and run the spec updater for the server's lifetime.
        await app.state.health.load(runtime)  # readyz reports each part as it loads
        await _warm_routes(app)
        refresher = None
        keep_fresh = getattr(runtime.policy, "keep_fresh", None)
        if keep_fresh is not None:
            refresher = asyncio.create_task(keep_fresh(), name="specguard-directory")
        updater = runtime.spec_updater
        if updater is not None:
            await updater.start()
        app.state.ready = True
        try:
            yield
        finally:
            app.state.health.draining = True
            if updater is not None:
                await updater.stop()
            if refresher is not None:
                refresher.cancel()
                with suppress(asyncio.CancelledError):
                    await refresher

    app = FastAPI(title="specguard", version="0.1.0", docs_url="/docs", redoc_url=None,
                  lifespan=lifespan)
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.limiter = TokenBucket(settings.rate_limit_per_minute)
    app.state.in_flight = ConcurrencyLimit(settings.max_concurrent_per_key, settings.max_in_flight)
    app.state.ready = False
    app.state.health = Health()
    errors.install(app)
    app.add_middleware(_Edge, max_body_bytes=settings.max_body_bytes,
                       max_header_bytes=settings.max_header_bytes,
                       body_timeout_s=settings.body_timeout_s)
    # Outermost, after every other middleware: metrics, access log, server spans (metrics.py).
    observe(app, metrics_on=settings.metrics, access_log_on=settings.access_log,
            max_tenants=settings.max_metric_tenants)

    models = [*settings.model_aliases, runtime.backend.name]

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        status, body = await app.state.health.readiness(runtime)  # model, guard, store (health.py)
        return JSONResponse(body, status_code=status)

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
        rid = request_id(request)
        if body.stream:
            return await _stream(runtime, settings, body, messages, caller, user, params,
                                 app.state.in_flight, rid)
        with app.state.in_flight.hold(caller.key_name):
            try:
                result = await until_done(request, runtime.chat(
                    messages, tenant=caller.tenant, user=user, params=params, request_id=rid),
                    settings.request_timeout_s)
            except ClientGone:
                return Response(status_code=499)
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
    from .guard_api import router as guard_router  # POST /v1/guard/check: checks, no generation

    app.include_router(guard_router)
    from .admin import router as admin_router  # users, profiles, keys, guidelines (admin keys only)

    app.include_router(admin_router)
    return app


async def _stream(runtime: Runtime, settings: ServerSettings, body: ChatCompletionRequest,
                  messages, caller: Caller, user: str | None, params,
                  in_flight: ConcurrencyLimit, rid: str) -> StreamingResponse:
    created = int(time.time())
    # The request holds its in-flight slot until the stream ends, however it ends.
    in_flight.acquire(caller.key_name)
    try:
        events = runtime.stream(messages, tenant=caller.tenant, user=user, params=params,
                                request_id=rid)
    except BaseException:
        in_flight.release(caller.key_name)
        raise
    deadline = time.monotonic() + settings.request_timeout_s

    async def next_event():
        # In this task (not wait_for's inner task): when the client goes away and the stream is
        # cancelled, the graph's generator is unwound here, and closing it below cannot find it
        # still running in another task.
        async with asyncio.timeout_at(asyncio.get_running_loop().time() + max(
                deadline - time.monotonic(), 0.001)):
            return await anext(events)

    # Pull the first event before answering: input checks (and, in buffer mode, the whole
    # guarded answer) finish before the first byte, so errors still get a proper status.
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
                    yield _sse(chunk_body(request_id=rid, model=body.model, created=created,
                                          delta={}, finish_reason=event.finish_reason or "stop",
                                          specguard=report.model_dump(mode="json")))
                    if body.stream_options and body.stream_options.include_usage:
                        usage = {"prompt_tokens": report.prompt_tokens,
                                 "completion_tokens": report.completion_tokens,
                                 "total_tokens": report.total_tokens}
                        chunk = chunk_body(request_id=rid, model=body.model, created=created,
                                           delta={}, usage=usage)
                        chunk["choices"] = []
                        yield _sse(chunk)
                    break
                delta = {"content": event.text}
                if not sent_role:
                    delta["role"] = "assistant"
                    sent_role = True
                yield _sse(chunk_body(request_id=rid, model=body.model, created=created, delta=delta))
                try:
                    event = await next_event()
                except StopAsyncIteration:
                    event = None
        except TimeoutError as exc:
            note_upstream_error(exc)
            yield _sse(error_body(f"The model stopped answering in time (request {rid}).",
                                  type_="timeout_error", code="upstream_timeout"))
        except SpecguardError as exc:
            # Headers are gone already: report the failure in-band, as OpenAI's API does.
            log_failure(exc, rid)
            yield _sse(error_body(public_message(exc, rid), type_=error_type(exc.status_code),
                                  code=exc.code))
        except Exception:  # the server edge, after the headers: an error event, never a reset
            log.error("request %s: unhandled error while streaming", rid, exc_info=True)
            yield _sse(error_body(f"Internal server error (request {rid}); see the server log.",
                                  type_="server_error", code="internal_error"))
        finally:
            # Shielded: a client that went away cancels this stream, and the cancellation must
            # not also interrupt the clean-up (the generator's close, the in-flight slot).
            with anyio.CancelScope(shield=True):
                try:
                    await events.aclose()
                finally:
                    in_flight.release(caller.key_name)
        yield b"data: [DONE]\n\n"

    headers = {REQUEST_ID: rid,
               "x-specguard-stream-protection": events.protection.value,
               "cache-control": "no-cache"}
    return StreamingResponse(sse(), media_type="text/event-stream", headers=headers)


async def _warm_routes(app: FastAPI) -> None:
    """One request through each router before serving: FastAPI prepares an included router's
    routes on the first request that reaches it, a few hundred milliseconds of work on the
    event loop that would otherwise land on a client. Unauthenticated: each answers 401."""
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://specguard.start") as client:
        for method, path in (("GET", "/admin/users"), ("POST", "/v1/moderations"),
                             ("POST", "/v1/guard/check"),
                             ("GET", "/v1/models")):
            await client.request(method, path)


def _sse(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class _Edge:
    """What every HTTP request passes first: its request id (in scope state and on every
    response), at most `max_header_bytes` of headers (431), a body of at most `max_body_bytes`
    (413, whether or not Content-Length says so) that arrives within `body_timeout_s` (408).
    The body is read here and handed on whole."""

    _BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

    def __init__(self, app, *, max_body_bytes: int, max_header_bytes: int,
                 body_timeout_s: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        headers = scope.get("headers", ())
        if sum(len(k) + len(v) for k, v in headers) > self.max_header_bytes:
            return await _reject(send, 431, f"Request headers over {self.max_header_bytes} bytes.",
                                 "headers_too_large", rid)
        for name, value in headers:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                return await _reject(send, 413, f"Request body over {self.max_body_bytes} bytes.",
                                     "request_too_large", rid)

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                out = list(message.get("headers", []))
                if not any(k.lower() == REQUEST_ID.encode() for k, _ in out):
                    out.append((REQUEST_ID.encode(), rid.encode()))
                message = {**message, "headers": out}
            await send(message)

        if scope.get("method") not in self._BODY_METHODS:
            return await self.app(scope, receive, send_with_id)
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout_s)
            except TimeoutError:
                return await _reject(send, 408, f"The request body did not arrive within "
                                     f"{self.body_timeout_s:.0f} s.", "request_timeout", rid)
            if message["type"] == "http.disconnect":
                return None
            part = message.get("body", b"")
            size += len(part)
            if size > self.max_body_bytes:
                return await _reject(send, 413, f"Request body over {self.max_body_bytes} bytes.",
                                     "request_too_large", rid)
            chunks.append(part)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send_with_id)


async def _reject(send, status: int, message: str, code: str, rid: str) -> None:
    body = json.dumps(error_body(message, type_=error_type(status), code=code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (REQUEST_ID.encode(), rid.encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["ServerSettings", "create_app"]
