from __future__ import annotations

from typing import Protocol, runtime_checkable

from .verdict import CheckRequest, Tier, Verdict


@runtime_checkable
class Checker(Protocol):
    """One tier of the guard: looks at a request (and draft) and returns a verdict."""

    name: str
    tier: Tier

    async def check(self, request: CheckRequest) -> Verdict:
        ...
