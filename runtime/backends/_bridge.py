"""The one bridge from a blocking producer on a worker thread to asyncio."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from typing import TypeVar

from ..errors import BackendError, SpecguardError

T = TypeVar("T")


async def iterate_in_thread(executor: Executor, produce: Callable[[Callable[[], bool]], Iterator[T]],
                            *, what: str) -> AsyncIterator[T]:
    """Run the generator `produce(cancelled)` on `executor` and yield its items on the event
    loop as they come. When the consumer stops early (a client disconnects), `cancelled()`
    turns true and the producer stops at its next item; the executor is free again before this
    returns. A SpecguardError from the producer is raised as it is; any other failure becomes a
    BackendError naming `what`."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
    stop = threading.Event()

    def run() -> None:
        try:
            for item in produce(stop.is_set):
                loop.call_soon_threadsafe(queue.put_nowait, ("item", item))
                if stop.is_set():
                    break
        except BaseException as exc:  # handed to the consumer, raised there
            loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, ("end", None))

    future = loop.run_in_executor(executor, run)
    try:
        while True:
            kind, value = await queue.get()
            if kind == "end":
                break
            if kind == "error":
                if isinstance(value, SpecguardError):
                    raise value
                raise BackendError(f"{what} failed: {value}") from value  # type: ignore[misc]
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.shield(future)
