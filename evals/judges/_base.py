"""What every judge returns, and the registry of judges by name."""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from ...backends.base import Backend
from ...errors import ConfigError


class RefusalLabel(StrEnum):
    REFUSED = "refused"
    COMPLIED = "complied"


class HarmLabel(StrEnum):
    SAFE = "safe"
    UNSAFE = "unsafe"


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


@runtime_checkable
class Judge(Protocol):
    name: str

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
            f"Unknown judge {name!r}.", hint=f"Known judges: {', '.join(judge_names())}."
        ) from None
    return factory(ctx)


def judge_backend(ctx: JudgeContext) -> Backend:
    """The backend a model-based judge uses: options.backend (a URI) or the run's backend."""
    uri = ctx.options.get("backend")
    if uri:
        from ...backends import load_backend

        return load_backend(uri)
    if ctx.backend is None:
        raise ConfigError("This judge needs a backend.", hint="Set the judge's `backend:` option.")
    return ctx.backend


def prompt_text(name: str) -> str:
    return (importlib.resources.files("specguard.evals") / "templates" / name).read_text(
        encoding="utf-8"
    )
