"""What every judge returns, and the registry of judges by name."""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from ...backends.base import Backend
from ...errors import ConfigError


NO_ANSWER = "no_answer"


class RefusalLabel(StrEnum):
    """XSTest's three labels, plus NO_ANSWER: an empty, whitespace-only, truncated-to-nothing or
    non-language output, which is neither a refusal nor an answer (counted as neither safe nor
    helpful, and reported on its own)."""

    REFUSED = "refused"
    COMPLIED = "complied"
    PARTIAL = "partial"  # refuses part of the request, or refuses and then answers anyway
    NO_ANSWER = NO_ANSWER


class HarmLabel(StrEnum):
    SAFE = "safe"
    UNSAFE = "unsafe"
    NO_ANSWER = NO_ANSWER  # answer judges only: nothing was said, so nothing harmful or useful


class FulfilLabel(StrEnum):
    FULFILLED = "fulfilled"
    NOT_FULFILLED = "not_fulfilled"


class ToxicityLabel(StrEnum):
    TOXIC = "toxic"
    NON_TOXIC = "non_toxic"


class Judgement(BaseModel):
    """One judge's verdict on one answer. `label` is None exactly when the judge's output could
    not be parsed (`parse_ok` False) or the judge failed (`error`): such answers are counted
    and reported, never mapped to a label."""

    judge: str
    label: str | None
    score: float | None = None
    parse_ok: bool = True
    raw: str | None = None
    error: str | None = None
    model_calls: int = 0
    tokens: int = 0
    ms: float = 0.0


class JudgeInput(BaseModel):
    """What a judge sees: the user's request as the dataset wrote it (before any jailbreak
    wrapping, and never the user profile), the text the method was sent, and the answer."""

    prompt: str
    request: str
    answer: str
    # The method's own safety report, when it has one (a guard method's verdict): the `verdict`
    # judge reads it; judges of answers ignore it.
    report: dict[str, Any] | None = None


class JudgeCard(BaseModel):
    """What a report says about a judge: what it is, and how far its labels can be trusted
    (its agreement with human labels on data it never saw, where that was measured)."""

    name: str
    kind: str  # trained | string match | model | guard | classifier | method verdict | scorer
    description: str
    accuracy: dict[str, Any] | None = None  # {metric, value, low, high, n, baseline}
    source: str | None = None  # where the figure comes from


@runtime_checkable
class Judge(Protocol):
    name: str
    card: JudgeCard

    async def judge(self, inp: JudgeInput) -> Judgement: ...


class JudgeContext(BaseModel):
    """What a judge factory gets: the run's backend (judges reuse the loaded model unless
    their options name another backend) and the judge's options from the suite."""

    model_config = {"arbitrary_types_allowed": True}

    backend: Any = None  # Backend | None
    options: dict[str, Any] = {}


JudgeFactory = Callable[[JudgeContext], Judge]
_JUDGES: dict[str, JudgeFactory] = {}


def register_judge(name: str, factory: JudgeFactory) -> None:
    _JUDGES[name] = factory


def judge_names() -> list[str]:
    return sorted(_JUDGES)


def build_judge(name: str, ctx: JudgeContext) -> Judge:
    try:
        factory = _JUDGES[name]
    except KeyError:
        raise ConfigError(
            f"Unknown judge {name!r}.", hint=f"Known judges: {', '.join(judge_names())}. A "
            "plug-in's judges register when its module is imported (the suite's `plugins:`)."
        ) from None
    judge = factory(ctx)
    if not isinstance(judge, Judge):
        raise ConfigError(f"Judge {name!r} does not implement the Judge protocol.",
                          hint="A judge has `name`, `card` (a JudgeCard) and async `judge()`.")
    return judge


def judge_backend(ctx: JudgeContext, judge: str, *, small_model_ok: bool = False) -> Backend:
    """The backend a model-based judge uses: options.backend (a URI) or the run's backend.
    Fails before any model call when the model cannot answer: a hosted model without its API
    key, or the embedded 135M model (not a judge: it agrees with people little better than
    chance; see docs/results/judges.md) unless `allow_embedded: true`."""
    uri = ctx.options.get("backend")
    if uri:
        _check_reachable(uri, ctx.options.get("api_base"), judge)
        from ...backends import load_backend

        opts = {"api_base": ctx.options["api_base"]} if ctx.options.get("api_base") else {}
        backend = load_backend(uri, **opts)
    elif ctx.backend is None:
        raise ConfigError(f"The {judge!r} judge needs a model.",
                          hint="Set the judge's `backend:` option to a capable model, e.g. "
                          "litellm:openai/gpt-4o-mini, or use an offline trained judge "
                          "(`refusal`, `answer_harm`).")
    else:
        backend = ctx.backend
    if is_embedded(backend) and not small_model_ok and not ctx.options.get("allow_embedded"):
        raise ConfigError(
            f"The {judge!r} judge would ask the embedded SmolLM2-135M, which is not a judge.",
            hint="Use the offline trained judges (`refusal`, `answer_harm`), give the judge a "
                 "`backend:` naming a capable model (with `api_base:` for a local server), or "
                 "set `allow_embedded: true` to measure the small model itself.")
    return backend


def is_embedded(backend: Any) -> bool:
    return str(backend.name).startswith("embedded")


def model_card(name: str, backend: Any, what: str) -> JudgeCard:
    """The card of a judge that asks a model: no agreement figure unless one was measured."""
    small = is_embedded(backend)
    return JudgeCard(
        name=name, kind="model",
        description=f"{what} asked of {backend.name}"
        + (" (the embedded 135M model: NOT a judge, its labels are not trustworthy)"
           if small else ""),
        accuracy=None,
        source="not measured here: bench/judge_accuracy.py --llm BACKEND measures a model's "
               "agreement with human labels")


def _check_reachable(uri: str, api_base: str | None, judge: str) -> None:
    """A hosted litellm model needs its provider's key in the environment (a local server,
    given by `api_base`, does not)."""
    kind, _, model = uri.partition(":")
    if kind != "litellm" or api_base:
        return
    try:
        import litellm
    except ImportError:
        return  # load_backend says how to install it
    env = litellm.validate_environment(model=model)
    if not env.get("keys_in_environment", True):
        missing = ", ".join(env.get("missing_keys") or []) or "the provider's API key"
        raise ConfigError(
            f"The {judge!r} judge's model {model!r} cannot be reached from here: {missing} "
            "is not set.",
            hint=f"Export {missing} (and be online), point `api_base:` at a local server, or "
                 "use an offline trained judge (`refusal`, `answer_harm`).")


def prompt_text(name: str) -> str:
    return (importlib.resources.files("specguard.evals") / "templates" / name).read_text(
        encoding="utf-8"
    )
