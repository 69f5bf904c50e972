"""Asynchronous review: answer now with the fast tier's decision, let the deliberative role
judge the uncertain case off the request path, and hold the conversation to its verdict.

A check whose settings say `review: async` (specguard.policy.CheckSettings) and whose fast
verdict is uncertain returns the fast tier's decision at once, marked `deferred`
(specguard.guard.tiered); the chat graph's context hands the case to a `ReviewQueue`, which
runs the deliberative tier in a background task and then

- records the verdict in the audit log (`review.verdict`, target `thread:<key>`, the tenant's);
- keeps it under the conversation's thread key, so the next turn of the same conversation
  finds it: an unsafe verdict refuses that turn (the graph's input_check), and every later
  turn's safety report lists the thread's reviews (`SafetyReport.reviews`).

A thread is the conversation itself: the key is a hash of the tenant, the user and the turns
up to and including the one reviewed (for an output check, the answer too), so a later request
that carries the same earlier turns, as every chat client sends them, is the same thread; a
client that drops or edits the reviewed turn no longer carries it (and its input is checked
anew). Nothing the client writes names the thread.

Verdicts are kept in this process (the newest `capacity`); the audit log keeps them all.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from .errors import BackendError, SpecguardError
from .guard.verdict import CheckRequest, Label, Stage
from .types import Message, Role

if TYPE_CHECKING:
    from .guard.tiered import GuardDecision, TieredGuard
    from .policy import CheckSettings
    from .store import Store

log = logging.getLogger("specguard.review")


class ReviewStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"  # the deliberative model could not answer; the fast decision stands


class ReviewRecord(BaseModel):
    thread: str  # the key of the conversation up to the reviewed turn
    request_id: str
    stage: Stage
    status: ReviewStatus = ReviewStatus.PENDING
    fast_label: Label  # what the fast tier decided when the request was answered
    label: Label | None = None  # the deliberative role's decision (None until done)
    categories: list[str] = Field(default_factory=list)
    explanation: str = ""
    checker: str = ""
    submitted_at: float = Field(default_factory=time.time)
    ms: float = 0.0

    @property
    def unsafe(self) -> bool:
        return self.status is ReviewStatus.DONE and self.label is Label.UNSAFE


def thread_keys(tenant: str, user: str | None, messages: Sequence[Message],
                response: str | None = None) -> list[str]:
    """The key of every prefix of the conversation (one per turn, in order): a review stored
    under the last key is found by a later request through the same prefix."""
    h = hashlib.sha256(f"{tenant}\x00{user or ''}\x00".encode())
    keys = []
    turns = [(m.role.value, m.content) for m in messages]
    if response is not None:
        turns.append((Role.ASSISTANT.value, response))
    for role, content in turns:
        h.update(f"{role}\x00{content}\x01".encode())
        keys.append(h.hexdigest()[:32])
    return keys


class ReviewQueue:
    """Reviews running in the background and the verdicts found. One per Runtime."""

    def __init__(self, guard: TieredGuard | None, store: Store | None = None, *,
                 capacity: int = 10_000, max_pending: int = 256) -> None:
        self.guard = guard
        self.store = store
        self.capacity = capacity
        self.max_pending = max_pending
        self.dropped = 0  # cases not reviewed because too many were pending
        self._records: OrderedDict[str, ReviewRecord] = OrderedDict()
        self._tasks: set[asyncio.Task] = set()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def submit(self, request: CheckRequest, settings: CheckSettings, decision: GuardDecision, *,
               tenant: str, user: str | None, request_id: str) -> ReviewRecord | None:
        """Start the review of a deferred decision; its record (None when none can run)."""
        if self.guard is None or getattr(self.guard, "deliberative", None) is None:
            return None
        if len(self._tasks) >= self.max_pending:
            self.dropped += 1
            log.warning("asynchronous review queue full (%d pending); case not reviewed",
                        len(self._tasks))
            return None
        key = thread_keys(tenant, user, request.messages,
                          request.response if request.stage is Stage.OUTPUT else None)[-1]
        record = ReviewRecord(thread=key, request_id=request_id, stage=request.stage,
                              fast_label=decision.label)
        self._put(key, record)
        task = asyncio.create_task(self._review(record, request, settings, tenant),
                                   name=f"specguard-review-{request_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return record

    def earlier(self, tenant: str, user: str | None,
                messages: Sequence[Message]) -> list[ReviewRecord]:
        """The reviews of this conversation's earlier turns (its thread), oldest first."""
        out = []
        for key in thread_keys(tenant, user, messages):
            record = self._records.get(key)
            if record is not None:
                out.append(record)
        return out

    def get(self, key: str) -> ReviewRecord | None:
        return self._records.get(key)

    async def join(self) -> None:
        """Wait for every review under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _review(self, record: ReviewRecord, request: CheckRequest,
                      settings: CheckSettings, tenant: str) -> None:
        start = time.perf_counter()
        try:
            decision = await self.guard.review(request, settings)
            verdict = decision.verdicts[-1] if decision.verdicts else None
            record.label, record.categories = decision.label, list(decision.categories)
            record.explanation = verdict.explanation if verdict else ""
            record.checker = verdict.checker if verdict else ""
            record.status = ReviewStatus.DONE
        except BackendError as exc:
            record.status, record.explanation = ReviewStatus.FAILED, exc.message
        record.ms = (time.perf_counter() - start) * 1000
        await self._audit(record, tenant)

    async def _audit(self, record: ReviewRecord, tenant: str) -> None:
        if self.store is None:
            return
        detail: dict[str, Any] = record.model_dump(mode="json", exclude={"thread"})
        try:
            await self.store.run(self.store.record, "review:deliberative", "review.verdict",
                                 f"thread:{record.thread}", detail, tenant=tenant)
        except (SpecguardError, SQLAlchemyError, OSError) as exc:  # the verdict still holds here
            log.warning("could not write the review of %s to the audit log: %s",
                        record.request_id, exc)

    def _put(self, key: str, record: ReviewRecord) -> None:
        self._records[key] = record
        self._records.move_to_end(key)
        while len(self._records) > self.capacity:
            self._records.popitem(last=False)


__all__ = ["ReviewQueue", "ReviewRecord", "ReviewStatus", "thread_keys"]
