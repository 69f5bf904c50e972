"""Running a request's work so that it stops when it should: past its time budget (504) or
when the client goes away (nothing left to answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from ..errors import BackendTimeoutError

T = TypeVar("T")


class ClientGone(Exception):
    """The client closed the connection before the answer was ready (nothing to answer)."""


async def until_done(request: Request, work: Awaitable[T], timeout_s: float) -> T:
    """`work`, cancelled when it runs past `timeout_s` (504) or when the client disconnects
    (ClientGone): either way the model stops generating at its next token."""
    task = asyncio.ensure_future(asyncio.wait_for(work, timeout_s))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        gone.cancel()
    if task not in done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ClientGone()
    try:
        return task.result()
    except TimeoutError as exc:
        raise BackendTimeoutError(f"The request took longer than {timeout_s:.0f} s.") from exc


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
