"""Every failure leaves the server as an OpenAI-shaped error with the right status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import SpecguardError
from .wire import error_body

log = logging.getLogger("specguard.server")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 409: "conflict_error", 413: "invalid_request_error",
          422: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
          502: "upstream_error", 504: "timeout_error"}


def error_response(status: int, message: str, code: str | None = None, param: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    return JSONResponse(
        error_body(message, type_=_TYPES.get(status, "server_error"), code=code, param=param),
        status_code=status,
        headers=headers,
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(SpecguardError)
    async def _specguard(_: Request, exc: SpecguardError):
        headers = {"www-authenticate": "Bearer"} if exc.status_code == 401 else None
        return error_response(exc.status_code, str(exc), exc.code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        errors = exc.errors()
        if errors and errors[0].get("type") == "json_invalid":
            return error_response(400, "The request body is not valid JSON.", "invalid_json")
        first = errors[0] if errors else {}
        loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        msg = f"{loc}: {first.get('msg', 'invalid value')}" if loc else first.get("msg", "invalid request")
        return error_response(422, msg, "invalid_value", param=loc or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        # The server edge: the one place a broad except belongs. Log it, answer 500.
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "Internal server error; see the server log.", "internal_error")
