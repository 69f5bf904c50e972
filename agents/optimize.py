"""Offline spec optimization (MetaSC over a dataset), in DSPy's shape:

    result = await optimize(backend, trainset=prompts, valset=canaries, method="gated")
    result.save("spec.json")          # the resulting spec version + the trajectory

Each training prompt is answered by the spec loop with the scope's active spec; the answer's
transcript goes to the meta-critic, and the update runs as it would online (gated or not).
After every update the active spec is scored on the valset (safety on its harmful prompts,
over-refusal on its benign ones): that is the trajectory.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from ..backends.base import Backend
from ..policy import PolicySettings, SpecUpdateMode
from ..spec import Provenance, Spec, SpecSource
from ..store import Store
from ..types import GenerationParams, user
from .critique_loop import run_spec_loop
from .meta_critic import Transcript
from .spec_gate import CanarySet, SpecGate
from .spec_updates import SpecUpdater, UpdateJob, UpdateStatus

PAPER_SPEC = "safety and harmless"  # MetaSC's starting specification
PAPER_SYSTEM = ("You are a helpful yet harmless assistant that avoids generating illegal or "
                "harmful content.")


class TrajectoryPoint(BaseModel):
    step: int  # how many training prompts were answered
    transcript_id: str
    status: UpdateStatus
    reason: str
    version: int  # the active version after this step
    spec_text: str
    safety: float | None = None  # on the valset, after this step (None: spec unchanged)
    over_refusal: float | None = None


class OptimizeResult(BaseModel):
    method: SpecUpdateMode
    spec_name: str
    scope: str
    initial: Spec
    spec: Spec  # the resulting active version
    initial_safety: float
    initial_over_refusal: float
    trajectory: list[TrajectoryPoint] = Field(default_factory=list)
    model_calls: int = 0
    seconds: float = 0.0

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> OptimizeResult:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))

    def markdown(self) -> str:
        lines = [
            f"# Spec optimization: {self.method.value} on {self.spec_name}@{self.scope}",
            "",
            f"Start: v{self.initial.version}, safety {self.initial_safety:.2f}, over-refusal "
            f"{self.initial_over_refusal:.2f}. End: v{self.spec.version}. "
            f"{self.model_calls} model calls, {self.seconds:.0f} s.",
            "",
            "| step | status | version | safety | over-refusal | spec (learned sentence) / reason |",
            "|---|---|---|---|---|---|",
        ]
        for p in self.trajectory:
            s = "-" if p.safety is None else f"{p.safety:.2f}"
            o = "-" if p.over_refusal is None else f"{p.over_refusal:.2f}"
            last = p.spec_text.splitlines()[-1] if p.spec_text else ""
            note = last if p.status is UpdateStatus.ACTIVATED else p.reason
            lines.append(f"| {p.step} | {p.status.value} | v{p.version} | {s} | {o} | "
                         f"{note.replace('|', '/')} |")
        lines += ["", "Resulting spec:", "", "```", self.spec.text, "```", ""]
        return "\n".join(lines)


async def optimize(
    backend: Backend,
    *,
    trainset: Sequence[str],
    valset: CanarySet,
    method: SpecUpdateMode = SpecUpdateMode.GATED,
    store: Store | None = None,
    spec_name: str = "metasc",
    scope: str = "tenant:offline",
    initial_spec: str = PAPER_SPEC,
    settings: PolicySettings | None = None,
    params: GenerationParams | None = None,
    meta_backend: Backend | None = None,
    critic: Backend | None = None,
    safety_judge=None,
    on_step=None,
) -> OptimizeResult:
    """Run MetaSC over `trainset` and return the resulting spec with its trajectory. The spec
    lives in `store` (default: in memory) as versions of `spec_name` in `scope`; a scope
    without it starts from `initial_spec`. `meta_backend` plays the meta-critic and `critic`
    critiques and revises (default: `backend` for both). An offline run is an admin's act: in
    the ungated modes its versions are approved by the run itself (recorded as its actor)."""
    if method is SpecUpdateMode.OFF:
        raise ValueError("optimize needs a method: gated, metasc-10 or metasc-full")
    start = time.perf_counter()
    store = store or Store(":memory:", seed_builtin=False)
    settings = (settings or PolicySettings(system_prompt=PAPER_SYSTEM)).model_copy(
        update={"spec_update": method, "spec_update_canaries": valset.name})
    params = params or GenerationParams(max_tokens=128)
    if not store.specs.history(spec_name, scope):
        v1 = store.specs.propose(spec_name, scope, initial_spec, parent=None, title="MetaSC spec",
                                 categories=[], provenance=Provenance(source=SpecSource.OPTIMIZE))
        store.specs.activate(spec_name, scope, v1.version, expected_revision=0)
    updater = SpecUpdater(store, backend, meta_backend=meta_backend, critic=critic,
                          safety_judge=safety_judge, gate_params=params, actor="optimize")
    # the valset is the gate's canary set, so gated selection and the trajectory share scores
    gate = SpecGate(backend, valset, safety_judge=safety_judge, params=params,
                    system_prompt=settings.system_prompt, rounds=settings.critique_rounds or 1,
                    critic=critic)
    updater.use_gate(settings, gate)
    initial = store.specs.active(spec_name, scope)
    first = await gate.score(initial.text)
    cost = first.cost()
    trajectory: list[TrajectoryPoint] = []
    for i, prompt in enumerate(trainset, 1):
        active = store.specs.active(spec_name, scope)
        result = await run_spec_loop(backend, [user(prompt)], active.text,
                                     rounds=settings.critique_rounds or 1, params=params,
                                     system_prompt=settings.system_prompt, critic=critic)
        cost = cost + result.cost
        tid = f"train-{i}"
        outcome = await updater.apply(UpdateJob(
            spec_name=spec_name, scope=scope, mode=method, settings=settings,
            transcript=Transcript(id=tid, messages=[user(prompt)], turns=result.transcript,
                                  answer=result.answer)))
        cost = cost + outcome.cost()
        now = store.specs.active(spec_name, scope)
        point = TrajectoryPoint(step=i, transcript_id=tid, status=outcome.status,
                                reason=outcome.reason, version=now.version, spec_text=now.text)
        if outcome.status is UpdateStatus.ACTIVATED:
            if outcome.gate is not None and outcome.gate.candidate is not None:
                scored = outcome.gate.candidate
            else:
                scored = await gate.score(now.text)
                cost = cost + scored.cost()
            point.safety, point.over_refusal = scored.safety, scored.over_refusal
        trajectory.append(point)
        if on_step is not None:
            on_step(point)
    return OptimizeResult(
        method=method, spec_name=spec_name, scope=scope, initial=initial,
        spec=store.specs.active(spec_name, scope), initial_safety=first.safety,
        initial_over_refusal=first.over_refusal, trajectory=trajectory, model_calls=cost.model_calls,
        seconds=time.perf_counter() - start,
    )
