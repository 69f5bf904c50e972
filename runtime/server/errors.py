"""Every failure leaves the server as an OpenAI-shaped error with the right status, the request's
id (header `x-specguard-request-id`) and, when the client should come back later, Retry-After.

What an upstream model said when it failed (its error body, addresses, tokens) is logged with
the request id and never sent to the client, who gets a generic message with that id.
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import BackendError, BackendTimeoutError, SpecguardError
from ..observability import note_upstream_error
from .wire import error_body

log = logging.getLogger("specguard.server")

REQUEST_ID = "x-specguard-request-id"
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 409: "conflict_error",
          413: "invalid_request_error", 415: "invalid_request_error", 422: "invalid_request_error",
          429: "rate_limit_error", 431: "invalid_request_error", 500: "server_error",
          502: "upstream_error", 503: "server_error", 504: "timeout_error"}


def error_type(status: int) -> str:
    return _TYPES.get(status, "invalid_request_error" if 400 <= status < 500 else "server_error")


def error_response(status: int, message: str, code: str | None = None, param: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    return JSONResponse(
        error_body(message, type_=error_type(status), code=code, param=param),
        status_code=status,
        headers=headers,
    )


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or "unknown"


def public_message(exc: SpecguardError, rid: str) -> str:
    """What the client reads about `exc`: its own message, except for upstream failures, whose
    detail is logged (with `rid`) instead."""
    if isinstance(exc, BackendTimeoutError):
        return f"The model did not answer in time (request {rid})."
    if isinstance(exc, BackendError):
        return (f"The model behind specguard failed (request {rid}); the server log has the "
                "details.")
    return str(exc)


def log_failure(exc: SpecguardError, rid: str) -> None:
    if isinstance(exc, BackendError):
        note_upstream_error(exc)  # the upstream error metric (metrics.py)
        log.warning("request %s: %s: %s", rid, type(exc).__name__, exc)


def headers_for(exc: SpecguardError, rid: str) -> dict[str, str]:
    headers = {REQUEST_ID: rid}
    if exc.status_code == 401:
        headers["www-authenticate"] = "Bearer"
    if exc.retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(exc.retry_after)))
    return headers


def install(app: FastAPI) -> None:
    @app.exception_handler(SpecguardError)
    async def _specguard(request: Request, exc: SpecguardError):
        rid = request_id(request)
        log_failure(exc, rid)
        return error_response(exc.status_code, public_message(exc, rid), exc.code,
                              headers=headers_for(exc, rid))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        headers = {REQUEST_ID: request_id(request)}
        errors = exc.errors()
        if errors and errors[0].get("type") == "json_invalid":
            return error_response(400, "The request body is not valid JSON.", "invalid_json",
                                  headers=headers)
        first = errors[0] if errors else {}
        # The location and the rule broken, never the value sent (it can be anything).
        loc = ".".join(str(p)[:64] for p in first.get("loc", ()) if p != "body")
        msg = f"{loc}: {first.get('msg', 'invalid value')}" if loc else first.get("msg", "invalid request")
        return error_response(422, msg, "invalid_value", param=loc or None, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail),
                              headers={REQUEST_ID: request_id(request), **(exc.headers or {})})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # The server edge: the one place a broad except belongs. Log it, answer 500.
        rid = request_id(request)
        log.error("request %s: unhandled error", rid, exc_info=exc)
        return error_response(500, f"Internal server error (request {rid}); see the server log.",
                              "internal_error", headers={REQUEST_ID: rid})
