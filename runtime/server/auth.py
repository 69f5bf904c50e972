"""Who is calling, and how much they may: the API key (or a trusted gateway's header) names
the caller; a token bucket caps requests per minute and a counter caps requests in flight, per
key (429 with Retry-After), and a server-wide counter caps the work it takes on at once (503
with Retry-After). Every router (chat, moderations, admin) depends on `authenticate`."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Request

from ..errors import (
    AuthenticationError,
    InvalidRequestError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
)
from ..policy import Caller

# What a trusted gateway may name as the end user: an id, as the admin API writes them.
_USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


class TokenBucket:
    """Requests per minute per key, with bursts up to the per-minute budget.

    Kept rather than the `limits` package (reviewed for issue 19): with in-process storage
    `limits`' moving window does the same for one process, as a dependency, and it would
    take a shared storage (Redis, Memcached) for a budget across `serve --workers N`
    processes, which this deployment does not run; each worker keeps its own bucket, so a
    key's budget there is per worker."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> None:
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        tokens, last = self._state.get(key, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * self.per_minute / 60.0)
        if tokens < 1.0:
            wait = (1.0 - tokens) * 60.0 / self.per_minute
            raise RateLimitError(
                f"Rate limit of {self.per_minute} requests per minute exceeded.",
                hint=f"Retry in {wait:.1f} s.", retry_after=math.ceil(wait),
            )
        self._state[key] = (tokens - 1.0, now)


class ConcurrencyLimit:
    """At most `per_key` requests in flight per key (0: unlimited; one more is a 429) and at
    most `total` in all (0: unlimited; one more is a 503): both answer with Retry-After, and
    neither queues work the server cannot start soon."""

    def __init__(self, per_key: int, total: int = 0) -> None:
        self.per_key = per_key
        self.total = total
        self._in_flight: dict[str, int] = {}
        self._all = 0

    @property
    def in_flight(self) -> int:
        return self._all

    def acquire(self, key: str) -> None:
        # The key's own limit first: a client over it hears that it is (429), not that the
        # server is full (503).
        if self.per_key > 0 and self._in_flight.get(key, 0) >= self.per_key:
            raise RateLimitError(
                f"At most {self.per_key} requests in flight per key.",
                hint="Wait for an answer before sending the next request.", retry_after=1,
            )
        if self.total > 0 and self._all >= self.total:
            raise OverloadedError(
                f"The server has {self.total} requests in flight, its limit.",
                hint="Retry shortly.", retry_after=1,
            )
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        self._all += 1

    def release(self, key: str) -> None:
        left = self._in_flight.get(key, 0) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)
        self._all = max(0, self._all - 1)

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        self.acquire(key)
        try:
            yield
        finally:
            self.release(key)


async def authenticate(request: Request) -> Caller:
    """The caller of this request, from `Authorization: Bearer <key>`; takes one request from
    the key's rate budget."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AuthenticationError("Missing API key.", hint="Send it as `Authorization: Bearer <key>`.")
    caller = request.app.state.runtime.policy.authenticate(key.strip())
    request.app.state.limiter.take(caller.key_name)
    return caller


def end_user(request: Request, caller: Caller) -> str | None:
    """The user whose policy applies: bound to the key, or named by a trusted gateway's
    header. Never the body's `user` field, which any client can write."""
    if caller.user is not None:
        return caller.user
    header = request.app.state.settings.trusted_user_header
    if caller.trusted_gateway and header:
        named = request.headers.get(header) or None
        if named is not None and not _USER_ID.match(named):
            raise InvalidRequestError(
                f"The {header} header must be a user id (letters, digits, '_', '.', '@' or '-', "
                "at most 128 characters).", hint="Send the id the admin API knows the user by.")
        return named
    return None


def require_admin(caller: Caller) -> Caller:
    if not caller.admin:
        raise PermissionDeniedError("This key may not use the admin API.",
                                    hint="Use an admin key (api_keys[].admin: true).")
    return caller
