"""MetaSC's methods for the eval harness (specguard.evals.methods registry), the paper's five:

    method `metasc` with option `mode`:
      system_prompt  the draft only, under MetaSC's harmless system prompt
      static         draft -> critique -> revise against a fixed spec (static self-critique)
      metasc-10      as static, and the meta-critic rewrites the spec after each of the first
                     10 requests (ungated)
      metasc-full    ... after every request (ungated)
      gated          ... after every request, kept only if the canaries do not regress

Each method instance keeps its spec as versions in a store (option `store`, default in
memory; a file makes an interrupted run resume with the spec it had), in its own scope. The
cost of an update (meta-critic and gate calls) is charged to the request that caused it.
Import this module to register the method (`import specguard.evals.metasc_methods`). It lives
in the eval harness, above the agents it drives (layers point one way: runtime <- agents <-
evals).
"""

from __future__ import annotations

import time
from typing import Any

from ..agents.critique_loop import run_spec_loop
from ..agents.meta_critic import Transcript
from ..agents.optimize import PAPER_SPEC, PAPER_SYSTEM
from ..agents.spec_updates import SpecUpdater, UpdateJob
from ..errors import ConfigError
from ..policy import PolicySettings, SpecUpdateMode
from ..spec import Provenance, SpecSource
from ..store import Store
from ..types import Cost as RuntimeCost
from ..types import GenerationParams, system, user
from .methods import Cost, MethodContext, MethodOutput, register_method
from .suites import EvalItem

MODES = ("system_prompt", "static", "metasc-10", "metasc-full", "gated")
SPEC_NAME = "metasc"


class MetaSCMethod:
    def __init__(self, backend, *, mode: str = "gated", spec: str = PAPER_SPEC,
                 system_prompt: str = PAPER_SYSTEM, rounds: int = 1, store: str | None = None,
                 canaries: str = "small", safety_tolerance: float = 0.0,
                 over_refusal_tolerance: float = 0.05, meta_max_tokens: int = 64,
                 label: str | None = None) -> None:
        if mode not in MODES:
            raise ConfigError(f"metasc: unknown mode {mode!r}.", hint=f"Use one of {MODES}.")
        self.name = f"metasc:{mode}"
        self.backend = backend
        self.mode = mode
        self.system_prompt = system_prompt
        self.rounds = rounds
        self.scope = f"tenant:metasc-{label or mode}"
        self._store = Store(store or ":memory:", seed_builtin=False)
        self.update_mode = SpecUpdateMode(mode) if mode in ("metasc-10", "metasc-full", "gated") else None
        self.settings = PolicySettings(
            system_prompt=system_prompt, critique_rounds=max(rounds, 1),
            spec_update=self.update_mode or SpecUpdateMode.OFF, spec_update_canaries=canaries,
            spec_update_safety_tolerance=safety_tolerance,
            spec_update_overrefusal_tolerance=over_refusal_tolerance)
        if not self._store.specs.history(SPEC_NAME, self.scope):
            v1 = self._store.specs.propose(SPEC_NAME, self.scope, spec, parent=None,
                                           title="MetaSC spec", categories=[],
                                           provenance=Provenance(source=SpecSource.SUITE))
            self._store.specs.activate(SPEC_NAME, self.scope, v1.version, expected_revision=0)
        self.updater = SpecUpdater(self._store, backend)
        self.updater.meta_critic.params = self.updater.meta_critic.params.model_copy(
            update={"max_tokens": meta_max_tokens})

    async def run(self, item: EvalItem, params: GenerationParams) -> MethodOutput:
        start = time.perf_counter()
        messages = [user(item.request)]
        if self.mode == "system_prompt":
            out = await self.backend.complete([system(self.system_prompt), *messages], params)
            return MethodOutput(answer=out.text, messages=messages, cost=Cost(
                **RuntimeCost.of(out.usage).model_dump(), seconds=time.perf_counter() - start))
        self.updater.gate_params = params
        spec = self._store.specs.active(SPEC_NAME, self.scope)
        result = await run_spec_loop(self.backend, messages, spec.text, rounds=self.rounds,
                                     params=params, system_prompt=self.system_prompt)
        report: dict[str, Any] = {"spec_version": spec.version, "spec_text": spec.text}
        spent = result.cost
        if self.update_mode is not None:
            outcome = await self.updater.apply(UpdateJob(
                spec_name=SPEC_NAME, scope=self.scope, mode=self.update_mode,
                settings=self.settings,
                transcript=Transcript(id=item.key, messages=messages, turns=result.transcript,
                                      answer=result.answer)))
            spent = spent + outcome.cost()
            report["update"] = outcome.model_dump(mode="json", exclude={"gate": {"baseline": {"answers"}, "candidate": {"answers"}}})
        return MethodOutput(
            answer=result.answer, messages=messages, report=report,
            cost=Cost(**spent.model_dump(), seconds=time.perf_counter() - start))

    def history(self):
        return self._store.specs.history(SPEC_NAME, self.scope)

    async def aclose(self) -> None:  # the backend belongs to the run
        self._store.close()


_OPTIONS = {"mode", "spec", "system_prompt", "rounds", "store", "canaries", "safety_tolerance",
            "over_refusal_tolerance", "meta_max_tokens", "label"}


def _factory(ctx: MethodContext) -> MetaSCMethod:
    unknown = set(ctx.options) - _OPTIONS
    if unknown:
        raise ConfigError(f"method 'metasc': unknown option(s) {sorted(unknown)}",
                          hint=f"Allowed: {sorted(_OPTIONS)}.")
    return MetaSCMethod(ctx.backend, **ctx.options)


register_method("metasc", _factory)
