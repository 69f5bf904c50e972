"""The runtime: resolve the caller's policy, run the guarded chat graph, return the answer with
its safety report. The server and the Python API both go through here."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pydantic import BaseModel

from .backends.base import Backend
from .errors import ConfigError, InvalidRequestError
from .guard import GuardDecision, Stage, TieredGuard
from .policy import Policy, ResolvedPolicy, StreamProtection
from .report import Action, SafetyReport, SpecRef, StageDecision, StepRecord
from .spec import Spec, scope_for
from .store import Store
from .types import GenerationParams, Message, Role, Usage


class ChatResult(BaseModel):
    answer: str
    action: Action
    report: SafetyReport
    finish_reason: str = "stop"


class StreamEvent(BaseModel):
    """A piece of a guarded stream: text to send, or the final report (last event)."""

    text: str = ""
    report: SafetyReport | None = None
    finish_reason: str | None = None


class Runtime:
    """A guarded model. Create once per process and share across requests.

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
        spec_updater: Any = None,
    ) -> None:
        from specguard.agents import build_chat_graph

        self.backend = backend
        from specguard.profiles import ComposedPolicy, GuidelineCache

        self.store = store if store is not None else Store(":memory:")
        # The policy file plus the users, profiles and keys an admin manages in the store.
        policy = policy or Policy.default()
        self.policy = policy if isinstance(policy, ComposedPolicy) else ComposedPolicy(policy, self.store)
        self.guidelines = GuidelineCache(self.store)
        if guard is None:
            from specguard.guard import build_guard

            guard = build_guard(backend, self.policy.resolve("default").settings
                                if "default" in self.policy.file.tenants else None)
        self.guard = guard
        self.graph = build_chat_graph(checkpointer=checkpointer)
        self._checkpointer = checkpointer
        self._spec_cache: dict[tuple[str, str], tuple[float, Spec]] = {}
        self._spec_ttl = spec_cache_seconds
        self._detox: dict[str, Any] = {}
        # specguard.agents.spec_updates.SpecUpdater: queues MetaSC spec updates off the hot path
        self.spec_updater = spec_updater

    # -- public API ------------------------------------------------------------------------

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
        start = time.perf_counter()
        resolved = self.policy.resolve(tenant, user)
        ctx = self._context(resolved, params)
        request_id = request_id or f"sg-{uuid.uuid4().hex[:16]}"
        if resolved.settings.passthrough:
            state = await self._generate_only(messages, ctx)
        else:
            config = {"configurable": {"thread_id": request_id}} if self._checkpointer else None
            state = await self.graph.ainvoke({"messages": list(messages)}, config, context=ctx)
        report = self._report(request_id, resolved, ctx, state, start)
        if self.spec_updater is not None:
            self.spec_updater.submit_chat(resolved, messages, state, request_id)
        return ChatResult(answer=state["answer"], action=state["action"], report=report)

    def chat_sync(self, messages: Sequence[Message], **kwargs: Any) -> ChatResult:
        """Blocking convenience wrapper around `chat` for scripts and notebooks."""
        return asyncio.run(self.chat(messages, **kwargs))

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        tenant: str = "default",
        user: str | None = None,
        params: GenerationParams | None = None,
        request_id: str | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Stream a guarded answer. The input check finishes before the first byte; how the
        output is protected is the policy's choice, and unchecked text never goes out:

        - buffer: the whole guarded answer is computed, then streamed;
        - chunked: the draft streams as it is generated, each piece released only after the
          text up to it passed the output check; a flagged draft stops with the refusal;
        - detox: Goodtriever decoding steers generation itself, so tokens stream as they are
          generated; the output check still runs on the whole answer and is reported;
        - pass-through (output checks and critique off): tokens stream as generated.
        """
        _validate(messages)
        request_id = request_id or f"sg-{uuid.uuid4().hex[:16]}"
        resolved = self.policy.resolve(tenant, user)
        settings = resolved.settings
        if settings.stream_protection is StreamProtection.DETOX:
            release = "detox"
        elif settings.passthrough:
            release = "passthrough"
        elif settings.stream_protection is StreamProtection.CHUNKED:
            release = "chunked"
        else:
            release = "buffer"
        if release != "buffer":
            async for event in self._stream_checked(messages, resolved, params, request_id, release):
                yield event
            return
        result = await self.chat(messages, tenant=tenant, user=user, params=params, request_id=request_id)
        for piece in _pieces(result.answer):
            yield StreamEvent(text=piece)
        yield StreamEvent(report=result.report, finish_reason=result.finish_reason)

    async def aclose(self) -> None:
        await self.backend.aclose()
        self.store.close()

    # -- internals -------------------------------------------------------------------------

    def _context(self, resolved: ResolvedPolicy, params: GenerationParams | None):
        from specguard.agents import ChatContext

        params = params or GenerationParams(max_tokens=resolved.settings.max_tokens)
        scope = scope_for(tenant=resolved.tenant, profile=resolved.profile_id)
        specs = tuple(self._active_spec(name, scope) for name in resolved.settings.specs)
        # Users with a profile: its derived guidelines go to generation and to the checks,
        # and the guidelines are checked first (specguard.profiles).
        guidelines = self.guidelines.get(resolved.profile_id, resolved.settings.profile_guidelines)
        guard = self.guard
        if guidelines and guard is not None:
            from specguard.profiles import ProfileAwareGuard

            guard = ProfileAwareGuard(guard)
        backend = self.backend
        if resolved.settings.stream_protection is StreamProtection.DETOX:
            backend = self._detox_backend(resolved.settings.detox)
        return ChatContext(
            backend=backend, guard=guard, policy=resolved, specs=specs, params=params,
            guidelines=guidelines,
        )

    def _detox_backend(self, settings: dict):
        """One Goodtriever backend per distinct detox setting, over the embedded model."""
        import json

        from .backends.embedded import EmbeddedBackend

        key = json.dumps(settings, sort_keys=True)
        backend = self._detox.get(key)
        if backend is None:
            if not isinstance(self.backend, EmbeddedBackend):
                raise ConfigError(
                    f"Detoxified decoding needs the embedded backend; this runtime uses {self.backend.name}.",
                    hint="Serve with --backend embedded, or use the vLLM hidden-state tap (see examples/vllm_deployment.md).",
                )
            from .decoding.backend import DetoxBackend
            from .decoding.retrieval import DetoxSettings

            backend = DetoxBackend(DetoxSettings.model_validate(settings), self.backend)
            self._detox[key] = backend
        return backend

    def _active_spec(self, name: str, scope: str) -> Spec:
        # A short cache keeps the store off the hot path; specs change rarely, and a replica
        # sees a new version within spec_cache_seconds.
        now = time.monotonic()
        hit = self._spec_cache.get((name, scope))
        if hit is not None and now - hit[0] < self._spec_ttl:
            return hit[1]
        spec = self.store.specs.active(name, scope)
        self._spec_cache[(name, scope)] = (now, spec)
        return spec

    def _report(self, request_id, resolved: ResolvedPolicy, ctx, state: dict, start: float,
                extra_steps: Sequence[StepRecord] = ()) -> SafetyReport:
        steps = [*state.get("steps", []), *extra_steps]
        decisions = []
        for stage, key in ((Stage.INPUT, "input_decision"), (Stage.OUTPUT, "output_decision")):
            d: GuardDecision | None = state.get(key)
            if d is not None:
                decisions.append(
                    StageDecision(
                        stage=stage,
                        label=d.label.value,
                        decided_by=d.decided_by,
                        escalated=d.escalated,
                        undecided=d.undecided,
                        categories=d.categories,
                    )
                )
        verdicts = state.get("verdicts", [])
        notes = [
            f"{d.stage.value} check could not decide; the policy's on_undecided applied"
            for d in decisions
            if d.undecided
        ] + list(state.get("notes", []))
        describe = getattr(ctx.backend, "describe", None)
        return SafetyReport(
            request_id=request_id,
            tenant=resolved.tenant,
            user=resolved.user,
            profile=resolved.profile_id,
            action=state["action"],
            decisions=decisions,
            verdicts=verdicts,
            checks_run=list(dict.fromkeys(v.checker for v in verdicts)),
            specs=[SpecRef(name=s.name, scope=s.scope, version=s.version) for s in ctx.specs],
            critique_rounds=state.get("rounds", 0),
            stream_protection=resolved.settings.stream_protection.value,
            decoding=describe() if describe is not None else None,
            model_calls=sum(s.model_calls for s in steps),
            prompt_tokens=sum(s.prompt_tokens for s in steps),
            completion_tokens=sum(s.completion_tokens for s in steps),
            total_ms=(time.perf_counter() - start) * 1000,
            steps=steps,
            notes=notes,
        )

    async def _stream_checked(self, messages, resolved: ResolvedPolicy, params, request_id,
                              release: str) -> AsyncIterator[StreamEvent]:
        """Stream with the output protection `release` names: passthrough, detox or chunked."""
        from specguard.agents.chat_graph import (
            generation_system_prompt,
            input_check,
            refusal_text,
            with_policy_system_prompt,
        )

        start = time.perf_counter()
        ctx = self._context(resolved, params)
        rt = _NodeRuntime(ctx)
        state: dict = {"messages": list(messages), "steps": [], "verdicts": []}
        _merge(state, await input_check(state, rt))
        if state.get("input_decision") is not None and state["input_decision"].blocked:
            state.update(answer=refusal_text(ctx, state), action=Action.REFUSED)
            yield StreamEvent(text=state["answer"])
            yield StreamEvent(report=self._report(request_id, resolved, ctx, state, start),
                              finish_reason="stop")
            return

        settings = resolved.settings
        gen_start = time.perf_counter()
        released = ""  # text already sent: always a prefix that passed the output check
        draft = ""
        usage = Usage()
        finish = "stop"
        window = max(1, settings.stream_holdback_chars)
        blocked = False
        as_generated = release in ("passthrough", "detox")
        stream = ctx.backend.stream(with_policy_system_prompt(list(messages), generation_system_prompt(ctx)),
                                    ctx.params)
        try:
            async for chunk in stream:
                draft += chunk.text
                if chunk.usage is not None:
                    usage = chunk.usage
                if chunk.finish_reason:
                    finish = chunk.finish_reason
                if as_generated:
                    if chunk.text:
                        yield StreamEvent(text=chunk.text)
                    continue
                if len(draft) - len(released) >= window:
                    if await self._output_flagged(ctx, state, draft):
                        blocked = True
                        break
                    yield StreamEvent(text=draft[len(released):])
                    released = draft
        finally:
            await stream.aclose()
        if release == "chunked" and not blocked:
            blocked = await self._output_flagged(ctx, state, draft)
            if not blocked and len(draft) > len(released):
                yield StreamEvent(text=draft[len(released):])
        elif release == "detox" and await self._output_flagged(ctx, state, draft):
            # The text is out already (that is what detox streaming means): say so, loudly.
            state.setdefault("notes", []).append(
                "the output check flagged the detoxified answer after it was streamed")
        gen_step = StepRecord(
            name="generate",
            ms=(time.perf_counter() - gen_start) * 1000,
            model_calls=1,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
        )
        if blocked:
            refusal = refusal_text(ctx, state)
            state.update(answer=released + ("\n\n" if released else "") + refusal, action=Action.REFUSED)
            yield StreamEvent(text=("\n\n" if released else "") + refusal)
            finish = "content_filter"
        else:
            state.update(answer=draft, action=Action.ALLOWED)
        state["steps"] = [gen_step, *state["steps"]]
        yield StreamEvent(report=self._report(request_id, resolved, ctx, state, start), finish_reason=finish)

    async def _generate_only(self, messages: Sequence[Message], ctx) -> dict:
        """A pass-through policy has nothing to orchestrate: run the graph's generate node
        alone (same prompt and accounting), without the graph's per-step overhead
        (bench/proxy_overhead.py measures the difference)."""
        from specguard.agents.chat_graph import generate

        state = {"messages": list(messages)}
        state.update(await generate(state, _NodeRuntime(ctx)))
        state.update(answer=state["draft"], action=Action.ALLOWED)
        return state

    async def _output_flagged(self, ctx, state: dict, draft: str) -> bool:
        from specguard.agents.chat_graph import output_check

        _merge(state, await output_check({**state, "draft": draft}, _NodeRuntime(ctx)))
        decision = state.get("output_decision")
        return decision is not None and decision.blocked


class _NodeRuntime:
    """The one attribute of LangGraph's Runtime the nodes read, for calling a node directly
    on the streaming path (which runs the same nodes outside the compiled graph)."""

    def __init__(self, context) -> None:
        self.context = context


def _merge(state: dict, update: dict) -> None:
    for key, value in update.items():
        if key in ("steps", "verdicts"):
            state[key] = [*state.get(key, []), *value]
        else:
            state[key] = value


def _pieces(text: str, size: int = 16):
    for i in range(0, len(text), size):
        yield text[i : i + size]
    if not text:
        yield ""


def _validate(messages: Sequence[Message]) -> None:
    if not messages:
        raise InvalidRequestError("messages must not be empty.", hint="Send at least one user message.")
    if not any(m.role == Role.USER for m in messages):
        raise InvalidRequestError("messages has no user message.", hint="Add a message with role 'user'.")
