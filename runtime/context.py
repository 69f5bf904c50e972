"""What every node of the guarded chat graph reads but never changes (LangGraph's context),
and the one place it is built.

`ContextBuilder.build_context(resolved, params)` turns a resolved policy into a `ChatContext`:
the guard settings (with the tenant's taxonomy), the scope's active spec text, the profile's
guidelines, the backend (the Goodtriever one when the policy asks for detox), the output
protection and the generation parameters under the policy's ceilings. `ChatContext.
check_request` is the only place a `CheckRequest` is built, so the chat graph, /v1/moderations
and the eval methods check with the same inputs.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.exc import SQLAlchemyError

from .backends.base import Backend
from .errors import BackendError, ConfigError, StoreBusyError
from .guard import CheckRequest, GuardDecision, Label, Stage, Tier, TieredGuard, Verdict
from .policy import (
    CheckSettings,
    CritiqueMode,
    GuidelineUse,
    OnUndecided,
    ResolvedPolicy,
    StreamProtection,
)
from .observability import note_check
from .report import StepRecord
from .spec import Spec, scope_for
from .store import Store
from .types import Cost, GenerationParams, Message

if TYPE_CHECKING:
    from .decoding.backend import DetoxBackend
    from .profiles import GuidelineCache, ProfileCheck
    from .review import ReviewQueue
    from .revision import RevisionGate

log = logging.getLogger("specguard.context")


class SpecUpdates(Protocol):
    """Where an answered request goes for a MetaSC spec update (specguard.agents.SpecUpdater
    implements it): `submit_chat` never waits; `start` / `stop` run its background worker (the
    server calls them for its lifetime)."""

    def submit_chat(self, resolved: ResolvedPolicy, messages: Sequence[Message], state: dict,
                    request_id: str) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def new_request_id() -> str:
    return f"sg-{uuid.uuid4().hex[:16]}"


def output_protection(resolved: ResolvedPolicy, *, guard: bool = True) -> StreamProtection:
    """How a streamed answer is protected for this policy: detox when it asks; buffer when every
    draft is critiqued (a draft that will be rewritten is not worth streaming); pass when
    nothing checks the output (no output check, or no guard: no critique can be triggered
    either); else its choice (buffer or chunked)."""
    s = resolved.settings
    if s.stream_protection is StreamProtection.DETOX:
        return StreamProtection.DETOX
    if s.critique is CritiqueMode.ALWAYS:
        return StreamProtection.BUFFER
    if not (guard and s.output_check.enabled):
        return StreamProtection.PASS
    return s.stream_protection


@dataclass(frozen=True)
class ChatContext:
    backend: Backend
    guard: TieredGuard | None
    policy: ResolvedPolicy
    specs: tuple[Spec, ...]
    params: GenerationParams
    guidelines: tuple[str, ...] = ()
    protection: StreamProtection = StreamProtection.BUFFER
    # A client reads the answer as it streams: text may go out before the answer is final, as
    # far as `protection` allows. False (chat): nothing is sent before the end.
    streaming: bool = False
    detox: DetoxBackend | None = None  # the backend, when it decodes with Goodtriever
    spec_updates: SpecUpdates | None = None
    # The critic role's model (critique and revise; specguard.roles); None: the role is off
    # and a flagged draft is refused.
    critic: Backend | None = None
    revision_gate: RevisionGate | None = None  # decides whether a revision replaces the draft
    # Where deferred checks go for the deliberative role's verdict (`review: async`), and
    # where a conversation's earlier verdicts are found (specguard.review).
    reviews: ReviewQueue | None = None
    request_id: str = field(default_factory=lambda: new_request_id())
    started: float = field(default_factory=time.perf_counter)

    @property
    def spec_text(self) -> str:
        return "\n".join(s.text for s in self.specs)

    @property
    def release(self) -> StreamProtection:
        """What generation does with text as it arrives: buffer (nothing goes out before the
        checks), chunked (checked prefixes go out), detox or pass (tokens go out as generated)."""
        return self.protection if self.streaming else StreamProtection.BUFFER

    def check_settings(self, stage: Stage) -> CheckSettings:
        s = self.policy.settings
        return s.input_check if stage is Stage.INPUT else s.output_check

    def checks_on(self, stage: Stage) -> bool:
        return self.guard is not None and self.check_settings(stage).enabled

    def check_request(self, stage: Stage, messages: Sequence[Message],
                      response: str | None = None) -> CheckRequest:
        """The one place a CheckRequest is built: the whole conversation, the policy's taxonomy,
        the scope's active spec, the user's profile and guidelines."""
        return CheckRequest(
            stage=stage,
            messages=list(messages),
            response=response,
            profile=self.policy.profile,
            guidelines=list(self.guidelines),
            taxonomy=self.policy.settings.taxonomy,
            spec_text=self.spec_text or None,
        )

    async def check(self, stage: Stage, messages: Sequence[Message],
                    response: str | None = None) -> tuple[GuardDecision, StepRecord]:
        """Run the guard on one request; the decision and its step record."""
        start = time.perf_counter()
        settings = self.check_settings(stage)
        request = self.check_request(stage, messages, response)
        assert self.guard is not None, "checks_on() is false without a guard"
        try:
            decision = await self.guard.check(request, settings)
        except BackendError as exc:
            decision = undecided(stage, settings, f"the guard model failed: {exc.message}")
        if decision.deferred and self.reviews is not None:
            record = self.reviews.submit(request, settings, decision, tenant=self.policy.tenant,
                                         user=self.policy.user, request_id=self.request_id)
            decision.review = record.thread if record is not None else None
        note_check(self.policy.tenant, decision.verdicts)  # the server's verdict metrics
        return decision, StepRecord.timed(f"{stage.value}_check", start, Cost.total(decision.verdicts))

    async def check_many(self, stage: Stage, conversations: Sequence[Sequence[Message]]
                         ) -> list[GuardDecision]:
        """Many requests at once (the fast tier scores them in one batch)."""
        settings = self.check_settings(stage)
        if self.guard is None or not settings.enabled:
            return [GuardDecision(label=Label.SAFE) for _ in conversations]
        requests = [self.check_request(stage, m) for m in conversations]
        try:
            decisions = await self.guard.check_many(requests, settings)
        except BackendError as exc:
            decisions = [undecided(stage, settings, f"the guard model failed: {exc.message}")
                         for _ in requests]
        for decision in decisions:
            note_check(self.policy.tenant, decision.verdicts)
        return decisions


def undecided(stage: Stage, settings: CheckSettings, why: str) -> GuardDecision:
    """A guard that could not answer (its model failed) is an UNDECIDED verdict, and the
    policy's on_undecided decides, as for any undecided check: never a failed request."""
    verdict = Verdict(stage=stage, label=Label.UNDECIDED, tier=Tier.DELIBERATIVE,
                      checker="guard", explanation=why, parse_ok=False)
    label = Label.UNSAFE if settings.on_undecided is OnUndecided.BLOCK else Label.SAFE
    return GuardDecision(label=label, verdicts=[verdict], decided_by=Tier.DELIBERATIVE,
                         undecided=True)


@dataclass
class ContextBuilder:
    """Builds each request's ChatContext from its resolved policy. One per Runtime: it keeps the
    short spec cache (a replica sees a new spec version within `spec_ttl` seconds) and one
    Goodtriever backend per distinct detox setting."""

    backend: Backend
    store: Store
    guard: TieredGuard | None
    guidelines: GuidelineCache
    spec_ttl: float = 2.0
    spec_updates: SpecUpdates | None = None
    critic: Backend | None = None
    revision_gate: RevisionGate | None = None
    reviews: ReviewQueue | None = None
    # The profile check for users with a profile (specguard.profiles.ProfileCheck); None: the
    # shipped one, loaded on the first such request.
    profile_checker: ProfileCheck | None = None
    _spec_cache: dict[tuple[str, str], tuple[float, Spec]] = field(default_factory=dict)
    _detox: dict[str, DetoxBackend] = field(default_factory=dict)
    _profile_error: str | None = None

    def profile_check(self) -> tuple[ProfileCheck | None, str | None]:
        """The profile check, loaded once; (None, why) when it cannot load (its artifact or
        encoder is missing): the check is then UNDECIDED and the policy's on_undecided acts."""
        if self.profile_checker is None and self._profile_error is None:
            from .errors import SpecguardError
            from .profiles import load_profile_check

            try:
                self.profile_checker = load_profile_check()
            except SpecguardError as exc:
                self._profile_error = exc.message + (f" ({exc.hint})" if exc.hint else "")
        return self.profile_checker, self._profile_error

    def build_context(self, resolved: ResolvedPolicy, params: GenerationParams | None = None, *,
                      request_id: str | None = None, streaming: bool = False) -> ChatContext:
        """The context, reading the store where the caches are stale (blocking: for scripts and
        evals; a server builds with `abuild_context`)."""
        settings = resolved.settings
        scope = str(scope_for(tenant=resolved.tenant, profile=resolved.profile_id))
        specs = tuple(self.active_spec(name, scope) for name in settings.specs)
        # Users with a profile: its derived guidelines go to generation and to the checks, and
        # the guidelines are checked first (specguard.profiles).
        guidelines = self.guidelines.get(resolved.profile_id, settings.profile_guidelines)
        detox = self.detox_backend(resolved) if _wants_detox(resolved, self.guard) else None
        return self._context(resolved, specs, guidelines, detox, params, request_id, streaming)

    async def abuild_context(self, resolved: ResolvedPolicy, params: GenerationParams | None = None,
                             *, request_id: str | None = None, streaming: bool = False) -> ChatContext:
        """The context without blocking the event loop: store reads (on a stale cache) run on
        the store's threads, and a Goodtriever backend loads its datastores on a thread."""
        settings = resolved.settings
        scope = str(scope_for(tenant=resolved.tenant, profile=resolved.profile_id))
        specs = tuple([await self.aactive_spec(name, scope) for name in settings.specs])
        guidelines: tuple[str, ...] = ()
        if resolved.profile_id is not None and settings.profile_guidelines is not GuidelineUse.OFF:
            guidelines = await self.store.run(self.guidelines.get, resolved.profile_id,
                                              settings.profile_guidelines)
        if resolved.profile is not None and self.profile_checker is None and self._profile_error is None:
            await asyncio.to_thread(self.profile_check)  # loads once: off the event loop
        detox = None
        if _wants_detox(resolved, self.guard):
            key = resolved.settings.detox.model_dump_json() if resolved.settings.detox else ""
            detox = self._detox.get(key) or await asyncio.to_thread(self.detox_backend, resolved)
        return self._context(resolved, specs, guidelines, detox, params, request_id, streaming)

    def _context(self, resolved: ResolvedPolicy, specs: tuple[Spec, ...], guidelines: tuple[str, ...],
                 detox: DetoxBackend | None, params: GenerationParams | None,
                 request_id: str | None, streaming: bool) -> ChatContext:
        guard = self.guard
        # Users with a profile: the profile check runs before the general guard
        # (specguard.profiles), with the approved guidelines and the guideline library.
        profile_check = resolved.settings.profile_check
        if resolved.profile is not None and guard is not None and profile_check.enabled:
            from .profiles import ProfileAwareGuard

            check, error = self.profile_check()
            guard = ProfileAwareGuard(guard, check, profile_check, load_error=error)
        extra = {"request_id": request_id} if request_id else {}
        return ChatContext(
            backend=detox or self.backend, guard=guard, policy=resolved, specs=specs,
            params=ceiling(params, resolved.settings.max_tokens), guidelines=guidelines,
            protection=output_protection(resolved, guard=guard is not None), streaming=streaming,
            detox=detox, spec_updates=self.spec_updates, critic=self.critic,
            revision_gate=self.revision_gate, reviews=self.reviews, **extra,
        )

    def active_spec(self, name: str, scope: str) -> Spec:
        # A short cache keeps the store off the hot path; specs change rarely, and a replica
        # sees a new version within spec_cache_seconds.
        hit = self._fresh_spec(name, scope)
        if hit is not None:
            return hit
        spec = self.store.specs.active(name, scope)
        self._spec_cache[(name, scope)] = (time.monotonic(), spec)
        return spec

    async def aactive_spec(self, name: str, scope: str) -> Spec:
        """`active_spec` off the event loop; when the store cannot be read (busy, down), the
        last version read keeps serving."""
        hit = self._fresh_spec(name, scope)
        if hit is not None:
            return hit
        try:
            spec = await self.store.run(self.store.specs.active, name, scope)
        except (StoreBusyError, SQLAlchemyError) as exc:
            stale = self._spec_cache.get((name, scope))
            if stale is None:
                raise
            log.warning("spec %s@%s: the store could not be read (%s); serving v%d",
                        name, scope, type(exc).__name__, stale[1].version)
            return stale[1]
        self._spec_cache[(name, scope)] = (time.monotonic(), spec)
        return spec

    def _fresh_spec(self, name: str, scope: str) -> Spec | None:
        hit = self._spec_cache.get((name, scope))
        if hit is not None and time.monotonic() - hit[0] < self.spec_ttl:
            return hit[1]
        return None

    def detox_backend(self, resolved: ResolvedPolicy) -> DetoxBackend:
        """One Goodtriever backend per distinct detox setting, over this runtime's backend."""
        settings = resolved.settings.detox
        assert settings is not None, "PolicySettings.check_complete requires detox settings"
        if not self.backend.capabilities.token_steps:
            raise ConfigError(
                f"Detoxified decoding runs on a backend with a token-step interface; "
                f"{self.backend.name} has none.",
                hint="Serve with --backend embedded, or use the vLLM hidden-state tap (see "
                "examples/vllm_deployment.md).",
            )
        key = settings.model_dump_json()
        backend = self._detox.get(key)
        if backend is None:
            from .decoding.backend import DetoxBackend

            backend = self._detox[key] = DetoxBackend(settings, self.backend)
        return backend


def _wants_detox(resolved: ResolvedPolicy, guard: TieredGuard | None) -> bool:
    return output_protection(resolved, guard=guard is not None) is StreamProtection.DETOX


def ceiling(params: GenerationParams | None, max_tokens: int) -> GenerationParams:
    """The request's parameters with the policy's max_tokens as a ceiling (and the default
    when the request sets none)."""
    if params is None:
        return GenerationParams(max_tokens=max_tokens)
    asked = params.max_tokens if "max_tokens" in params.model_fields_set else max_tokens
    return params.model_copy(update={"max_tokens": min(asked, max_tokens)})
