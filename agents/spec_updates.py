"""Spec updates (MetaSC), online and offline: after an answer, the meta-critic proposes one
rule for one section of the spec's policy document, the candidate version (the lineage's
admin-written base, its learned rules and the new one, within SPEC_TOKEN_BUDGET) is stored in
the request's scope, and it serves only if it passes the canary gate (gated mode, the default
online mode) or, in the paper's ungated modes (which a policy must opt into), once an admin
approves it (`specguard spec activate`) when it came from live traffic; offline runs that
reproduce the paper (`apply`, `optimize`) are an admin's act and activate their versions.

- Per scope: a job names its scope (`scope_for(tenant=..., profile=...)`); nothing it does
  touches another scope. A scope that still inherits the global spec first gets its own copy
  (version 1 of that scope), so every learned version has a parent to roll back to.
- Safe under concurrency: the head revision is read before the (slow) proposal and gate, and
  the candidate is activated with compare-and-set on it. If another writer moved the head
  meanwhile, the stale candidate is rejected ("superseded"), and the sentence is re-proposed
  on the new head and re-gated (once), or dropped. Nothing is overwritten.
- Never ungated on live traffic: from the server (`submit_chat`), a metasc-10 / metasc-full
  candidate is stored and waits for an admin to activate it; only the gated mode lets a
  learned version serve on its own (after the canary gate). Offline runs (`apply`) keep the
  paper's ungated behaviour.
- Off the request path: `SpecUpdater.submit()` never waits; a background asyncio worker drains
  a bounded queue (full queue: the job is dropped and counted), and each scope is rate-limited
  to one accepted job per `spec_update_min_interval_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from ..backends.base import Backend
from ..errors import ConflictError, NotFoundError
from ..guard.policy_doc import parse_policy, render_policy, tokens
from ..policy import PolicySettings, ResolvedPolicy, SpecUpdateMode
from ..roles import RoleBackends, RoleName
from ..spec import Provenance, Spec, SpecSource, SpecStatus, scope_for
from ..store import Store
from ..types import Cost, GenerationParams, Message
from .meta_critic import MetaCritic, Proposal, Transcript
from .spec_gate import GateMetrics, GateResult, SpecGate, judge_gate, load_canaries

log = logging.getLogger(__name__)

METASC_10_LIMIT = 10
# A learned spec's length budget (estimated tokens of its text): over it, the oldest learned
# rules give way. The guard's rendering adds the taxonomy (gpt-oss-safeguard: 400-600 in all).
SPEC_TOKEN_BUDGET = 300


class UpdateStatus(StrEnum):
    ACTIVATED = "activated"  # the candidate serves now
    PENDING = "pending"  # stored as a candidate; serves once an admin activates it (ungated, online)
    REJECTED = "rejected"  # stored as rejected, with the gate's reason and metrics
    DROPPED = "dropped"  # no candidate stored (unusable proposal, conflict twice, queue full)
    SKIPPED = "skipped"  # the mode says no more updates (metasc-10 reached 10)


class UpdateJob(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    spec_name: str
    scope: str
    mode: SpecUpdateMode
    transcript: Transcript
    settings: PolicySettings = Field(default_factory=PolicySettings)
    # From live traffic (the server): an ungated mode's candidate then waits for an admin's
    # approval instead of serving at once, so no user's chats rewrite the tenant's spec alone.
    online: bool = False


class UpdateOutcome(Cost):
    """What one update did, and what it cost (meta-critic and gate calls)."""

    status: UpdateStatus
    spec_name: str
    scope: str
    reason: str
    version: int | None = None  # the candidate's version, when one was stored
    parent: int | None = None
    text: str | None = None
    proposal: str | None = None  # the meta-critic's raw answer
    gate: GateResult | None = None
    seconds: float = 0.0


def compose(base_text: str, sentence: str, *, head_text: str | None = None,
            section: str = "INSTRUCTIONS", budget: int = SPEC_TOKEN_BUDGET) -> str:
    """The candidate text: the lineage's admin-written base, the rules the head learned since,
    and the new rule in its section, as a sectioned policy document. Over `budget` estimated
    tokens the oldest learned rules give way (the base is never cut)."""
    base = parse_policy(base_text)
    head = parse_policy(head_text if head_text is not None else base_text)
    known = base.bullets()
    learned = [r for r in _rules(head) if r not in known]
    learned.append((section, " ".join(sentence.split())))
    while True:
        doc = base
        for sec, text in learned:
            doc = doc.add(sec, text)
        out = render_policy(doc)
        if tokens(out) <= budget or len(learned) == 1:
            return out
        learned.pop(0)


def _rules(doc) -> list[tuple[str, str]]:
    return ([("INSTRUCTIONS", p) for p in doc.instructions]
            + [("DEFINITIONS", f"{t}: {m}") for t, m in doc.definitions]
            + [("VIOLATES", v) for v in doc.violates] + [("SAFE", x) for x in doc.safe])


class ScopeSummary(BaseModel):
    """What the meta-critic did in one scope since this updater started."""

    seen: int = 0  # proposals (usable or not)
    accepted: int = 0
    rejected: int = 0
    dropped: int = 0
    awaiting: int = 0
    skipped: int = 0
    why: dict[str, int] = Field(default_factory=dict)  # reason -> count (rejected and dropped)


class SpecUpdater:
    """Runs spec updates against one store. `apply(job)` does one update now (offline use and
    tests); `start()`/`submit()`/`stop()` run them in the background (the server)."""

    def __init__(
        self,
        store: Store,
        backend: Backend,
        *,
        meta_backend: Backend | None = None,
        critic: Backend | None = None,
        safety_judge=None,
        gate_params: GenerationParams | None = None,
        queue_size: int = 32,
        history: int = 100,
        clock: Callable[[], float] = time.monotonic,
        actor: str = "spec-updater",
    ) -> None:
        self.store = store
        self.backend = backend  # drafts the gate's canaries
        self.critic = critic  # critiques and revises them (None: `backend`)
        self.meta_critic = MetaCritic(meta_backend or backend)
        self.safety_judge = safety_judge
        self.gate_params = gate_params or GenerationParams(max_tokens=128)
        self.actor = actor
        self.outcomes: deque[UpdateOutcome] = deque(maxlen=history)
        self.dropped_full = 0
        self.dropped_rate = 0
        self._queue: asyncio.Queue[UpdateJob] = asyncio.Queue(maxsize=queue_size)
        self._last: dict[tuple[str, str], float] = {}
        self._clock = clock
        self._gates: dict[tuple, SpecGate] = {}
        self._worker: asyncio.Task | None = None

    @classmethod
    def from_roles(cls, store: Store, roles: RoleBackends, **options) -> SpecUpdater | None:
        """The updater for a serving process: the meta-critic role proposes, the gate drafts
        with the serving model and critiques with the critic role (the serving model when
        that role is off). None when the meta-critic role is off: no spec updates."""
        meta = roles.get(RoleName.META_CRITIC)
        if meta is None:
            return None
        return cls(store, roles.generate, meta_backend=meta,
                   critic=roles.get(RoleName.CRITIC) or roles.generate, **options)

    def summary(self) -> dict[str, ScopeSummary]:
        """Per scope: candidates seen, accepted, rejected (and why), dropped, awaiting approval
        (the outcomes this updater keeps; the store keeps every version: `specguard spec
        candidates`)."""
        out: dict[str, ScopeSummary] = {}
        for o in self.outcomes:
            s = out.setdefault(o.scope, ScopeSummary())
            s.seen += 1
            field = {UpdateStatus.ACTIVATED: "accepted", UpdateStatus.REJECTED: "rejected",
                     UpdateStatus.DROPPED: "dropped", UpdateStatus.PENDING: "awaiting",
                     UpdateStatus.SKIPPED: "skipped"}[o.status]
            setattr(s, field, getattr(s, field) + 1)
            if o.status in (UpdateStatus.REJECTED, UpdateStatus.DROPPED):
                s.why[o.reason] = s.why.get(o.reason, 0) + 1
        return out

    # -- background -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    async def start(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="specguard-spec-updates")

    async def stop(self, *, drain: bool = False) -> None:
        """Stop the worker; with drain=True, finish the queued jobs first."""
        if drain and self._worker is not None:
            await self._queue.join()
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None

    async def join(self) -> None:
        """Wait until every queued job is done."""
        await self._queue.join()

    def submit(self, job: UpdateJob) -> bool:
        """Queue a job without waiting. False when the scope is rate-limited, the mode is off or
        the queue is full (the job is dropped and counted)."""
        if job.mode is SpecUpdateMode.OFF:
            return False
        key = (job.spec_name, job.scope)
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < job.settings.spec_update_min_interval_s:
            self.dropped_rate += 1
            return False
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.dropped_full += 1
            return False
        self._last[key] = now
        return True

    def submit_chat(self, resolved: ResolvedPolicy, messages: Sequence[Message], state: dict,
                    request_id: str) -> bool:
        """What the runtime calls after an answer: a job for the caller's scope when the
        policy asks for spec updates and the request reached the model."""
        settings = resolved.settings
        if settings.spec_update is SpecUpdateMode.OFF or not settings.specs or "draft" not in state:
            return False
        return self.submit(UpdateJob(
            spec_name=settings.specs[0],
            scope=scope_for(tenant=resolved.tenant, profile=resolved.profile_id),
            mode=settings.spec_update,
            transcript=Transcript.from_chat(request_id, messages, state),
            settings=settings,
            online=True,
        ))

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                self.outcomes.append(await self.apply(job))
            except asyncio.CancelledError:
                raise
            except Exception:  # the worker is an edge: one failed job must not stop the next
                log.exception("spec update for %s@%s failed", job.spec_name, job.scope)
            finally:
                self._queue.task_done()

    # -- one update -------------------------------------------------------------------------

    async def apply(self, job: UpdateJob) -> UpdateOutcome:
        start = time.perf_counter()
        name, scope, mode = job.spec_name, job.scope, job.mode
        # Store calls run on the store's threads: this worker shares the server's event loop.
        run = self.store.run
        if mode is SpecUpdateMode.METASC_10 and await run(self._count_learned, name, scope, mode) >= METASC_10_LIMIT:
            return UpdateOutcome(status=UpdateStatus.SKIPPED, spec_name=name, scope=scope,
                                 reason=f"metasc-10: {METASC_10_LIMIT} updates done in this scope")
        head = await run(self._scope_head, name, scope)
        revision = await run(self.store.specs.head_revision, name, scope)
        proposal = await self.meta_critic.propose(job.transcript, head.text)
        cost = Cost.total(proposal.steps)
        if proposal.text is None:
            return UpdateOutcome(status=UpdateStatus.DROPPED, spec_name=name, scope=scope,
                                 reason=f"proposal dropped: {proposal.dropped}",
                                 proposal=proposal.raw, seconds=time.perf_counter() - start,
                                 **cost.model_dump())
        outcome = None
        for attempt in range(2):
            outcome = await self._candidate(job, head, revision, proposal)
            if outcome is not None:
                break
            head = await run(self._scope_head, name, scope)  # the head moved: re-read, re-gate once
            revision = await run(self.store.specs.head_revision, name, scope)
        if outcome is None:
            outcome = UpdateOutcome(status=UpdateStatus.DROPPED, spec_name=name, scope=scope,
                                    reason="the head moved twice while gating; dropped",
                                    proposal=proposal.raw)
        outcome = outcome.model_copy(update={**(outcome.cost() + cost).model_dump(),
                                             "seconds": time.perf_counter() - start})
        return outcome

    async def _candidate(self, job: UpdateJob, head: Spec, revision: int,
                         proposal: Proposal) -> UpdateOutcome | None:
        """Store, gate and try to activate one candidate on `head`; None when it lost the
        compare-and-set (the candidate is then rejected as superseded)."""
        name, scope, mode = job.spec_name, job.scope, job.mode
        specs, run = self.store.specs, self.store.run
        base = await run(self._lineage_base, head)
        text = compose(base.text, proposal.text or "", head_text=head.text, section=proposal.section)
        cand = await run(
            specs.propose, name, scope, text, parent=head.version, actor=self.actor,
            provenance=Provenance(source=SpecSource.META_CRITIC, mode=mode,
                                  transcript_ids=[job.transcript.id], note=proposal.text),
            metrics={"proposal": proposal.text, "section": proposal.section, **(
                {} if mode is SpecUpdateMode.GATED else {"gate_reason": f"{mode.value}: ungated"})},
        )
        gate: GateResult | None = None
        cost = Cost()
        common = dict(spec_name=name, scope=scope, version=cand.version, parent=head.version,
                      text=text, proposal=proposal.raw)
        if mode is SpecUpdateMode.GATED:
            g = self._gate(job.settings)
            baseline = await self._baseline(head, g)
            scored = await g.score(text)
            cost = Cost.total([baseline, scored])  # a stored baseline costs nothing
            gate = judge_gate(baseline, scored, canaries=g.canaries,
                              safety_tolerance=job.settings.spec_update_safety_tolerance,
                              over_refusal_tolerance=job.settings.spec_update_overrefusal_tolerance)
            metrics = {**gate.metrics(), **_canary_metrics(g, scored)}
            if not gate.accepted:
                await run(specs.reject, name, scope, cand.version, reason=gate.reason,
                          metrics=metrics, actor=self.actor)
                return UpdateOutcome(status=UpdateStatus.REJECTED, reason=gate.reason, gate=gate,
                                     **cost.model_dump(), **common)
            await run(specs.set_metrics, name, scope, cand.version, metrics)
        elif job.online:
            return UpdateOutcome(status=UpdateStatus.PENDING, **cost.model_dump(), **common,
                                 reason=f"{mode.value}: ungated; waits for an admin to activate "
                                        f"v{cand.version}")
        try:
            await run(specs.activate, name, scope, cand.version, expected_revision=revision,
                      actor=self.actor)
        except ConflictError:
            now = await run(specs.active, name, scope, inherit=False)
            await run(specs.reject, name, scope, cand.version, actor=self.actor,
                      reason=f"superseded: v{now.version} became active while this was gated")
            return None
        reason = gate.reason if gate is not None else f"{mode.value}: ungated"
        return UpdateOutcome(status=UpdateStatus.ACTIVATED, reason=reason, gate=gate,
                             **cost.model_dump(), **common)

    def use_gate(self, settings: PolicySettings, gate: SpecGate) -> None:
        """Gate the jobs with these settings on `gate` (so a caller can share its draft cache)."""
        self._gates[_gate_key(settings)] = gate

    # -- helpers ----------------------------------------------------------------------------

    def _scope_head(self, name: str, scope: str) -> Spec:
        """The scope's own active version; a scope that inherits gets its own copy first."""
        specs = self.store.specs
        try:
            return specs.active(name, scope, inherit=False)
        except NotFoundError:
            pass
        inherited = specs.active(name, scope)
        copy = specs.propose(
            name, scope, inherited.text, parent=None, title=inherited.title,
            categories=inherited.categories, actor=self.actor,
            provenance=Provenance(source=SpecSource.INHERITED, note=f"copied from {inherited.ref}"),
        )
        try:
            specs.activate(name, scope, copy.version, expected_revision=0, actor=self.actor)
        except ConflictError:
            specs.reject(name, scope, copy.version, actor=self.actor,
                         reason="another writer created this scope's first version first")
        return specs.active(name, scope, inherit=False)

    def _lineage_base(self, spec: Spec) -> Spec:
        """The nearest ancestor not written by the meta-critic (the admin's or builtin text)."""
        seen = 0
        while spec.provenance.learned and spec.parent is not None and seen < 10_000:
            spec = self.store.specs.get(spec.name, spec.scope, spec.parent)
            seen += 1
        return spec

    def _count_learned(self, name: str, scope: str, mode: SpecUpdateMode) -> int:
        return sum(
            1 for s in self.store.specs.history(name, scope)
            if s.provenance.learned and s.provenance.mode is mode
            and s.status in (SpecStatus.ACTIVE, SpecStatus.RETIRED)
        )

    def _gate(self, settings: PolicySettings) -> SpecGate:
        key = _gate_key(settings)
        gate = self._gates.get(key)
        if gate is None:
            gate = SpecGate(self.backend, load_canaries(settings.spec_update_canaries),
                            safety_judge=self.safety_judge, params=self.gate_params,
                            system_prompt=settings.system_prompt,
                            rounds=settings.critique_rounds or 1, critic=self.critic)
            self._gates[key] = gate
        return gate

    async def _baseline(self, head: Spec, gate: SpecGate) -> GateMetrics:
        """The active version's canary scores: stored with the version once computed by the
        same judges (a version that passed the gate already has them)."""
        key = f"canaries:{gate.canaries.name}"
        stored = head.metrics.get(key)
        if (isinstance(stored, dict) and {"safety", "over_refusal", "passed"} <= set(stored)
                and stored.get("judges") == gate.judge_name):
            return GateMetrics(safety=stored["safety"], over_refusal=stored["over_refusal"],
                               passed=stored["passed"], judges=stored["judges"],
                               canaries=gate.canaries.name)
        scored = await gate.score(head.text)
        await self.store.run(self.store.specs.set_metrics, head.name, head.scope, head.version,
                             _canary_metrics(gate, scored))
        return scored


def _gate_key(settings: PolicySettings) -> tuple:
    return (settings.spec_update_canaries, settings.system_prompt, settings.critique_rounds or 1)


def _canary_metrics(gate: SpecGate, m: GateMetrics) -> dict:
    return {f"canaries:{gate.canaries.name}": {"safety": m.safety, "over_refusal": m.over_refusal,
                                               "unjudged": m.unjudged, "passed": m.passed,
                                               "judges": m.judges}}
