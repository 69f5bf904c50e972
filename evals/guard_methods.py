"""The guard as eval-harness methods: each classifies the item's request (an input check)
instead of answering it, and reports its verdict for the `verdict` judge. A suite loads them
with `plugins: [specguard.evals.guard_methods]` (see specguard/evals/suites/guard.yaml).

    methods:
      - {name: guard, label: fast, options: {tier: fast}}
      - {name: guard, label: deliberative, options: {tier: deliberative}}
      - {name: guard, label: escalated, options: {tier: escalated, escalate_band: [0.2, 0.8]}}

Options: `tier` (fast | deliberative | escalated), `artifact` (a fast-tier artifact: a shipped
name, a folder, or a legacy .joblib; default: the shipped one), `cascade` (false: every
member scores every text), `placement` (where the request sits in the conversation:
`last_user` (default), `system`, `earlier_user` (an earlier turn, followed by a benign one),
`document` (the end of a long benign document in the user turn)), `wrap` (an attack on the
request before it is placed: `jailbreak` (an in-the-wild template of the held-out part,
chosen by the item), or one of specguard.guard.augment.ATTACKS: persona, fiction, frame,
suffix, spaced, leet, base64, split), `members` (a subset of the artifact's members, e.g.
[tfidf]: the TF-IDF baseline of the same artifact), `format` (the deliberative prompt format),
`deliberative_backend` (a backend URI for the deliberative tier, with `deliberative_api_base`
for a served model; default: the run's backend),
`label_only` (the deliberative tier stops after its label: the label and its score are the
same as with the critique, since the label comes first and decoding is greedy; only the
time differs), and any CheckSettings field (`escalate_band`, `threshold`, `on_undecided`, ...).
"""

from __future__ import annotations

import time
from typing import Any

from specguard.errors import ConfigError
from specguard.guard import (
    CheckRequest,
    DeliberativeChecker,
    Stage,
    TieredGuard,
    Verdict,
    load_fast_checker,
    load_taxonomy,
)
from specguard.guard.placement import PLACEMENTS, place
from specguard.policy import CheckSettings
from specguard.types import GenerationParams

from .methods import Cost, MethodContext, MethodOutput, method_options, register_method
from .suites import EvalItem

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
                 taxonomy: str = "beavertails", cascade: bool = True,
                 placement: str = "last_user", wrap: str | None = None,
                 members: list[str] | None = None, data_dir: Any = None,
                 **settings: Any) -> None:
        if tier not in TIERS:
            raise ConfigError(f"guard method: tier must be one of {TIERS}, not {tier!r}.")
        if placement not in PLACEMENTS:
            raise ConfigError(f"guard method: placement must be one of {PLACEMENTS}, not "
                              f"{placement!r}.")
        self.placement = placement
        self.wrap = _wrapper(wrap, data_dir)
        self.settings = CheckSettings.model_validate(settings)
        fast = None
        if tier != "deliberative":
            fast = load_fast_checker(artifact, taxonomy=taxonomy, cascade=cascade,
                                     members=members)
            if fast is None:
                raise ConfigError("No fast-tier artifact is installed.",
                                  hint="Pass `artifact:` (build one with `specguard guard train`).")
        deliberative = None
        self._own_backend = None  # a deliberative backend this method loaded, closed with it
        if tier != "fast":
            if deliberative_backend:
                from specguard.backends import load_backend

                options = {"api_base": deliberative_api_base} if deliberative_api_base else {}
                backend = self._own_backend = load_backend(deliberative_backend, **options)
            checker = DeliberativeChecker(backend, taxonomy=load_taxonomy(taxonomy), format=format)
            deliberative = _LabelOnly(checker) if label_only else checker
        self.guard = TieredGuard(fast=fast, deliberative=deliberative)

    async def run(self, item: EvalItem, params: GenerationParams) -> MethodOutput:
        request = self.wrap(item) if self.wrap else item.request
        messages = place(request, self.placement)
        start = time.perf_counter()
        d = await self.guard.check(CheckRequest(stage=Stage.INPUT, messages=messages),
                                   self.settings)
        seconds = time.perf_counter() - start
        report = {
            "label": d.label.value, "score": d.score, "categories": d.categories,
            "decided_by": d.decided_by.value if d.decided_by else None,
            "escalated": d.escalated, "undecided": d.undecided,
            "turn": d.verdicts[0].turn if d.verdicts else None,
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
            "label_only", "taxonomy", "cascade", "placement", "wrap", "members",
            *CheckSettings.model_fields}


def _wrapper(wrap: str | None, data_dir: Any):
    """item -> the attacked request; None for no attack."""
    if wrap is None:
        return None
    import hashlib
    import random

    from specguard.data import Part, in_part, load, wrap as jailbreak_wrap
    from specguard.guard.augment import ATTACKS

    def seed(item: EvalItem) -> int:
        return int(hashlib.sha256(item.key.encode()).hexdigest()[:8], 16)

    if wrap == "jailbreak":
        templates = in_part(load("inthewild_jailbreaks", data_dir_override=data_dir),
                            Part.HELD_OUT)
        if not templates:
            raise ConfigError("guard method: no held-out jailbreak templates in the data.")
        return lambda item: jailbreak_wrap(templates[seed(item) % len(templates)], item.request)
    if wrap in ATTACKS:
        return lambda item: ATTACKS[wrap](item.request, random.Random(seed(item)))
    raise ConfigError(f"guard method: wrap must be 'jailbreak' or one of {sorted(ATTACKS)}, "
                      f"not {wrap!r}.")


def _factory(ctx: MethodContext) -> GuardMethod:
    return GuardMethod(ctx.backend, **method_options(ctx, _ALLOWED, "guard"),
                       data_dir=getattr(ctx, "data_dir", None))


register_method("guard", _factory)
