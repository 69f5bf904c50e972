"""specguard's error types: one root, each says what to do next.

A blocked request is a verdict, never an exception; these are for misuse and failures.
Each error carries the HTTP status the server answers it with.
"""

from __future__ import annotations


class SpecguardError(Exception):
    """Root of every error specguard raises on purpose. `retry_after` (seconds), when set, is
    sent as the Retry-After header."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, hint: str | None = None,
                 retry_after: float | None = None) -> None:
        self.message = message
        self.hint = hint
        self.retry_after = retry_after
        super().__init__(f"{message} {hint}" if hint else message)


class ConfigError(SpecguardError):
    """A config, policy or spec file is invalid; the message names the field."""

    status_code = 400
    code = "invalid_config"


class InvalidRequestError(SpecguardError):
    status_code = 400
    code = "invalid_request_error"


class AuthenticationError(SpecguardError):
    status_code = 401
    code = "invalid_api_key"


class PermissionDeniedError(SpecguardError):
    status_code = 403
    code = "permission_denied"


class NotFoundError(SpecguardError):
    status_code = 404
    code = "not_found"


class ConflictError(SpecguardError):
    """A compare-and-set lost: someone else changed the record first. Re-read and retry."""

    status_code = 409
    code = "conflict"


class RequestTooLargeError(SpecguardError):
    status_code = 413
    code = "request_too_large"


class RateLimitError(SpecguardError):
    status_code = 429
    code = "rate_limit_exceeded"


class OverloadedError(SpecguardError):
    """The server has more work queued than it takes on; retry after `retry_after` seconds."""

    status_code = 503
    code = "overloaded"


class StoreBusyError(OverloadedError):
    """The store stayed locked (by another writer) longer than the busy timeout."""

    code = "store_busy"

    def __init__(self, message: str, *, hint: str | None = None,
                 retry_after: float | None = 2.0) -> None:
        super().__init__(message, hint=hint, retry_after=retry_after)


class ContextLengthError(InvalidRequestError):
    """The conversation does not fit the model's context window."""

    code = "context_length_exceeded"


class BackendError(SpecguardError):
    """The model behind the runtime failed or answered something unusable."""

    status_code = 502
    code = "upstream_error"


class BackendTimeoutError(BackendError):
    status_code = 504
    code = "upstream_timeout"


class MissingDependencyError(SpecguardError):
    """An optional dependency is not installed; the hint names the extra to install."""

    status_code = 500
    code = "missing_dependency"


def require(module: str, extra: str):
    """Import an optional dependency or fail with the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"specguard needs the optional package {module!r} for this feature.",
            hint=f"Install it with: pip install 'specguard[{extra}]'",
        ) from exc
