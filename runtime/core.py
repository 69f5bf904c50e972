"""`Runtime`: the facade over the guarded chat graph (specguard.graph). The server, the CLI,
the eval methods and the Python API all go through here.

A request is resolved once (`policy.resolve`), turned into a ChatContext once
(specguard.context), and run by one compiled graph: `chat` is `graph.ainvoke`, `stream` is
`graph.astream(stream_mode=["custom", "updates"])`. Nothing here decides anything about a
request; the graph's nodes and routes do.

Layers point one way (runtime <- agents <- evals): the graph and this facade live in the
runtime, so `specguard` never imports `specguard.agents` or `specguard.evals`. What the agents
add to a request (MetaSC spec updates) comes in through the `SpecUpdates` protocol:
`Runtime(..., spec_updater=SpecUpdater(store, backend))`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pydantic import BaseModel

from .backends.base import Backend
from .checks import CheckResult, run_checks
from .context import ChatContext, ContextBuilder, SpecUpdates, new_request_id, output_protection
from .errors import InvalidRequestError
from .graph import ChatResult, build_chat_graph
from .guard import CheckRequest, GuardDecision, Stage, TieredGuard, load_taxonomy
from .policy import CheckSettings, Policy, ResolvedPolicy, StreamProtection
from .report import SafetyReport
from .review import ReviewQueue, ReviewRecord
from .revision import RevisionGate
from .roles import RoleBackends, RoleName
from .store import Store
from .types import GenerationParams, Message, Role


class StreamEvent(BaseModel):
    """A piece of a guarded stream: text to send, or the final report (last event)."""

    text: str = ""
    report: SafetyReport | None = None
    finish_reason: str | None = None


class Moderation(BaseModel):
    """Input checks of texts under a caller's policy: one decision per text, and the ids of
    the policy's taxonomy categories that are switched on."""

    decisions: list[GuardDecision]
    category_ids: list[str]


class ChatStream:
    """A guarded stream: iterate it for StreamEvents. Its request id and output protection are
    known before the first event (the server puts them in the response headers)."""

    def __init__(self, request_id: str, protection: StreamProtection,
                 events: AsyncIterator[StreamEvent]) -> None:
        self.request_id = request_id
        self.protection = protection
        self._events = events

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> StreamEvent:
        return await anext(self._events)

    async def aclose(self) -> None:
        await self._events.aclose()


class Runtime:
    """A guarded model. Create once per process and share across requests.

    >>> from specguard import Runtime, load_backend, user
    >>> rt = Runtime(load_backend("embedded"))
    >>> result = rt.chat_sync([user("How do I bake bread?")])
    >>> result.answer, result.report.action
    """

    def __init__(
        self,
        backend: Backend,
        *,
        policy: Policy | None = None,
        store: Store | None = None,
        guard: TieredGuard | None = None,
        checkpointer: Any = None,
        spec_cache_seconds: float = 2.0,
        spec_updater: SpecUpdates | None = None,
        roles: RoleBackends | None = None,
        revision_gate: RevisionGate | None = None,
    ) -> None:
        from .directory import ComposedPolicy
        from .profiles import GuidelineCache

        self.backend = backend
        self.store = store if store is not None else Store(":memory:")
        # The policy file plus the users, profiles and keys an admin manages in the store.
        policy = policy or Policy.default()
        self.policy = policy if isinstance(policy, ComposedPolicy) else ComposedPolicy(policy, self.store)
        # Which model plays each role (specguard.roles): the policy file's `roles:` with this
        # backend as the serving model, unless the caller built them (the CLI does).
        file_policy = getattr(policy, "base", policy)  # a ComposedPolicy's policy file
        self.roles = roles or RoleBackends.serving(backend, file_policy.file.roles)
        if guard is None:
            from .guard import build_guard

            guard_model = self.roles.get(RoleName.GUARD)
            guard = build_guard(backend, self.policy.resolve("default").settings
                                if "default" in self.policy.file.tenants else None,
                                deliberative_backend=guard_model,
                                deliberative_format=self.roles.guard_format,
                                deliberative=guard_model is not None)
        self.guard = guard
        self.contexts = ContextBuilder(backend, self.store, guard, GuidelineCache(self.store),
                                       spec_ttl=spec_cache_seconds, spec_updates=spec_updater,
                                       critic=self.roles.get(RoleName.CRITIC),
                                       revision_gate=revision_gate or RevisionGate(),
                                       reviews=ReviewQueue(guard, self.store))
        self.graph = build_chat_graph(checkpointer=checkpointer)
        self._checkpointer = checkpointer

    @property
    def reviews(self) -> ReviewQueue | None:
        """Asynchronous reviews (`review: async`): under way, and the verdicts found."""
        return self.contexts.reviews

    def thread_reviews(self, messages: Sequence[Message], *, tenant: str = "default",
                       user: str | None = None) -> list[ReviewRecord]:
        """The asynchronous reviews of a conversation's earlier turns (its thread)."""
        reviews = self.contexts.reviews
        return reviews.earlier(tenant, user, messages) if reviews is not None else []

    @property
    def spec_updater(self) -> SpecUpdates | None:
        """Where answered requests go for MetaSC spec updates (None: nowhere)."""
        return self.contexts.spec_updates

    @spec_updater.setter
    def spec_updater(self, updater: SpecUpdates | None) -> None:
        self.contexts.spec_updates = updater

    # -- public API ------------------------------------------------------------------------

    def build_context(self, resolved: ResolvedPolicy, params: GenerationParams | None = None,
                      **options: Any) -> ChatContext:
        """The per-request context for a resolved policy (specguard.context.ContextBuilder)."""
        return self.contexts.build_context(resolved, params, **options)

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        tenant: str = "default",
        user: str | None = None,
        params: GenerationParams | None = None,
        request_id: str | None = None,
    ) -> ChatResult:
        _validate(messages)
        resolved = self.policy.resolve(tenant, user)
        ctx = await self.contexts.abuild_context(resolved, params, request_id=request_id)
        state = await self.graph.ainvoke({"messages": list(messages)}, self._config(ctx), context=ctx)
        return state["result"]

    def chat_sync(self, messages: Sequence[Message], **kwargs: Any) -> ChatResult:
        """Blocking convenience wrapper around `chat` for scripts and notebooks."""
        return asyncio.run(self.chat(messages, **kwargs))

    def stream(
        self,
        messages: Sequence[Message],
        *,
        tenant: str = "default",
        user: str | None = None,
        params: GenerationParams | None = None,
        request_id: str | None = None,
    ) -> ChatStream:
        """Stream a guarded answer: the same graph as `chat`. The input check finishes before the
        first byte; how the output is protected is the policy's choice (specguard.graph), and
        unchecked text never goes out except where the policy says so (detox, pass)."""
        _validate(messages)
        resolved = self.policy.resolve(tenant, user)
        request_id = request_id or new_request_id()
        protection = output_protection(resolved, guard=self.contexts.guard is not None)
        return ChatStream(request_id, protection,
                          self._events(resolved, params, request_id, messages))

    async def moderate(self, texts: Sequence[str], *, tenant: str = "default",
                       user: str | None = None) -> Moderation:
        """Input checks of `texts` (each a user turn) under the caller's policy."""
        resolved = self.policy.resolve(tenant, user)
        ctx = await self.contexts.abuild_context(resolved)
        settings = resolved.settings
        decisions = await ctx.check_many(
            Stage.INPUT, [[Message(role=Role.USER, content=t)] for t in texts])
        off = {c.lower() for c in settings.input_check.disabled_categories}
        ids = [c.id for c in load_taxonomy(settings.taxonomy).categories if c.id.lower() not in off]
        return Moderation(decisions=decisions, category_ids=ids)

    async def check(self, messages: Sequence[Message], *, answer: str | None = None,
                    stage: str | None = None, tenant: str = "default", user: str | None = None,
                    request_id: str | None = None) -> CheckResult:
        """The chat graph's checks without generating: the input check, and with an `answer`
        the output check (specguard.checks; `stage` picks: input, output or both)."""
        return await run_checks(self.contexts, self.policy.resolve(tenant, user), messages,
                                answer=answer, stage=stage, request_id=request_id)

    def draw(self) -> str:
        """The chat graph as Mermaid text."""
        return self.graph.get_graph().draw_mermaid()

    async def load(self) -> None:
        """Load the models of every role (idempotent; remote backends have nothing to load)."""
        await self.backend.load()
        await self.roles.load()
        await self._warm_guard()

    async def _warm_guard(self) -> None:
        """Load the fast tier's encoders now and not in the first request (loading holds the
        interpreter lock for seconds, which would stall every request in flight): its `warm`
        reaches every member the cascade routes to, then one check of each stage runs the
        guard's own path. The deliberative tier is left alone."""
        if self.guard is None or self.guard.fast is None:
            return
        warm = getattr(self.guard.fast, "warm", None)
        if warm is not None:  # the cascade would leave the encoders unloaded: reach them all
            await asyncio.to_thread(warm)
        settings = CheckSettings(deliberative=False)
        for stage, response in ((Stage.INPUT, None), (Stage.OUTPUT, "Hello.")):
            await self.guard.check(CheckRequest(stage=stage, messages=[Message(
                role=Role.USER, content="Hello, how are you?")], response=response), settings)

    async def aclose(self) -> None:
        await self.backend.aclose()
        for other in self.roles.distinct():
            if other is not self.backend:
                await other.aclose()
        self.store.close()

    # -- internals -------------------------------------------------------------------------

    def _config(self, ctx: ChatContext) -> dict | None:
        return {"configurable": {"thread_id": ctx.request_id}} if self._checkpointer else None

    async def _events(self, resolved: ResolvedPolicy, params: GenerationParams | None,
                      request_id: str, messages: Sequence[Message]) -> AsyncIterator[StreamEvent]:
        ctx = await self.contexts.abuild_context(resolved, params, request_id=request_id,
                                                 streaming=True)
        result: ChatResult | None = None
        async for mode, chunk in self.graph.astream(
            {"messages": list(messages)}, self._config(ctx), context=ctx,
            stream_mode=["custom", "updates"],
        ):
            if mode == "custom":
                yield StreamEvent(text=chunk["text"])
            else:
                for update in chunk.values():
                    if update and "result" in update:
                        result = update["result"]
        assert result is not None, "every path through the graph ends in respond or refuse"
        yield StreamEvent(report=result.report, finish_reason=result.finish_reason)


def _validate(messages: Sequence[Message]) -> None:
    if not messages:
        raise InvalidRequestError("messages must not be empty.", hint="Send at least one user message.")
    if not any(m.role == Role.USER for m in messages):
        raise InvalidRequestError("messages has no user message.", hint="Add a message with role 'user'.")
