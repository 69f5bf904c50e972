from __future__ import annotations

import time

from ..errors import RateLimitError


class TokenBucket:
    """Requests per minute per key, with bursts up to the per-minute budget."""

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
                hint=f"Retry in {wait:.1f} s.",
            )
        self._state[key] = (tokens - 1.0, now)
