"""The guard as eval-harness methods: each classifies the item's request (an input check)
instead of answering it, and reports its verdict for the `verdict` judge. A suite loads them
with `plugins: [specguard.guard.eval_methods]` (see specguard/evals/suites/guard.yaml).

    methods:
      - {name: guard, label: fast, options: {tier: fast}}
      - {name: guard, label: deliberative, options: {tier: deliberative}}
      - {name: guard, label: escalated, options: {tier: escalated, escalate_band: [0.2, 0.8]}}

Options: `tier` (fast | deliberative | escalated), `artifact` (a fast-tier artifact path;
default: the shipped one that fits the backend), `format` (the deliberative prompt format),
`deliberative_backend` (a backend URI for the deliberative tier, with `deliberative_api_base`
for a served model; default: the run's backend),
`label_only` (the deliberative tier stops after its label: the label and its score are the
same as with the critique, since the label comes first and decoding is greedy; only the
time differs), and any CheckSettings field (`escalate_band`, `threshold`, `on_undecided`, ...).
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import ConfigError
from ..evals.methods import Cost, MethodContext, MethodOutput, method_options, register_method
from ..evals.suites import EvalItem
from ..policy import CheckSettings
from ..types import GenerationParams, user
from .deliberative import DeliberativeChecker
from .fast import load_fast_checker
from .taxonomy import load_taxonomy
from .tiered import TieredGuard
from .verdict import CheckRequest, Stage, Verdict

TIERS = ("fast", "deliberative", "escalated")


class _LabelOnly:
    """The deliberative checker, stopping after the label. A backend failure raises, as in the
    runtime, so the harness records it as an error rather than as a verdict."""

    def __init__(self, checker: DeliberativeChecker) -> None:
        self.checker = checker
        self.tier = checker.tier
        self.name = checker.name

    async def check(self, request: CheckRequest) -> Verdict:
        return await self.checker.check(request, label_only=True)


class GuardMethod:
    name = "guard"

    def __init__(self, backend: Any, *, tier: str = "escalated", artifact: str | None = None,
                 format: str = "thinkguard", deliberative_backend: str | None = None,
                 deliberative_api_base: str | None = None, label_only: bool = True,
                 taxonomy: str = "beavertails", **settings: Any) -> None:
        if tier not in TIERS:
            raise ConfigError(f"guard method: tier must be one of {TIERS}, not {tier!r}.")
        self.settings = CheckSettings.model_validate(settings)
        fast = None
        if tier != "deliberative":
            fast = load_fast_checker(backend, artifact, taxonomy=taxonomy)
            if fast is None:
                raise ConfigError("No fast-tier artifact fits this backend.",
                                  hint="Pass `artifact:` (build one with `specguard guard train`).")
        deliberative = None
        self._own_backend = None  # a deliberative backend this method loaded, closed with it
        if tier != "fast":
            if deliberative_backend:
                from ..backends import load_backend

                options = {"api_base": deliberative_api_base} if deliberative_api_base else {}
                backend = self._own_backend = load_backend(deliberative_backend, **options)
            checker = DeliberativeChecker(backend, taxonomy=load_taxonomy(taxonomy), format=format)
            deliberative = _LabelOnly(checker) if label_only else checker
        self.guard = TieredGuard(fast=fast, deliberative=deliberative)

    async def run(self, item: EvalItem, params: GenerationParams) -> MethodOutput:
        messages = [user(item.request)]
        start = time.perf_counter()
        d = await self.guard.check(CheckRequest(stage=Stage.INPUT, messages=messages),
                                   self.settings)
        seconds = time.perf_counter() - start
        report = {
            "label": d.label.value, "score": d.score, "categories": d.categories,
            "decided_by": d.decided_by.value if d.decided_by else None,
            "escalated": d.escalated, "undecided": d.undecided,
            "latency_ms": round(seconds * 1000, 3),
        }
        return MethodOutput(
            answer=d.label.value, messages=messages, report=report,
            cost=Cost(model_calls=sum(v.model_calls for v in d.verdicts),
                      prompt_tokens=sum(v.prompt_tokens for v in d.verdicts),
                      completion_tokens=sum(v.completion_tokens for v in d.verdicts),
                      seconds=seconds),
        )

    async def aclose(self) -> None:  # the run's backend belongs to the run
        close = getattr(self._own_backend, "aclose", None)
        if close is not None:
            await close()


_ALLOWED = {"tier", "artifact", "format", "deliberative_backend", "deliberative_api_base",
            "label_only", "taxonomy",
            *CheckSettings.model_fields}


def _factory(ctx: MethodContext) -> GuardMethod:
    return GuardMethod(ctx.backend, **method_options(ctx, _ALLOWED, "guard"))


register_method("guard", _factory)
