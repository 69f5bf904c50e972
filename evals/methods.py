"""Methods: what answers a request. `raw` is the backend with a plain system prompt; `runtime`
is the guarded runtime (the same graph and policy as the server). Engines add theirs with
`register_method(name, factory)`; a factory gets a MethodContext and returns a Method."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError
from ..types import Cost as _Cost
from ..types import GenerationParams, Message, system, user
from .judges._base import prompt_text
from .suites import EvalItem


class Cost(_Cost):
    """The runtime's cost (model calls, tokens) and the wall time a method took."""

    seconds: float = 0.0


class MethodOutput(BaseModel):
    answer: str
    messages: list[Message]  # what was sent (before the runtime's own system prompt)
    action: str | None = None  # the runtime's Action, when the method has one
    report: dict[str, Any] | None = None  # the safety report, when the method has one
    cost: Cost = Field(default_factory=Cost)
    token_logprobs: list[float] | None = None  # when generation asked for logprobs


@runtime_checkable
class Method(Protocol):
    name: str
    # What a report says the method is (for the runtime: which policy), e.g. "guarded runtime,
    # policy embedded_default (shipped)".
    description: str

    async def run(self, item: EvalItem, params: GenerationParams) -> MethodOutput: ...

    async def aclose(self) -> None: ...


class MethodContext(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    backend: Any  # specguard.backends.Backend
    options: dict[str, Any] = Field(default_factory=dict)


MethodFactory = Callable[[MethodContext], Method]
_METHODS: dict[str, MethodFactory] = {}


def register_method(name: str, factory: MethodFactory) -> None:
    _METHODS[name] = factory


def method_names() -> list[str]:
    return sorted(_METHODS)


def build_method(name: str, ctx: MethodContext) -> Method:
    try:
        factory = _METHODS[name]
    except KeyError:
        raise ConfigError(
            f"Unknown method {name!r}.",
            hint=f"Known methods: {', '.join(method_names())}. A plug-in's methods register "
            "when its module is imported: list it under the suite's `plugins:` or pass --plugin.",
        ) from None
    return factory(ctx)


def describe_method(method: Method) -> str:
    """The method's description for reports (plug-ins that predate `description`: its name)."""
    return method.description if isinstance(method, Method) else method.name


class RawMethod:
    """The unprotected model: a plain system prompt, then the request."""

    name = "raw"

    def __init__(self, backend, *, system_prompt: str | None = None) -> None:
        self.backend = backend
        self.system_prompt = (system_prompt or prompt_text("method_raw_system.txt")).strip()
        self.description = "the unprotected model with a plain system prompt (no policy)"

    async def run(self, item: EvalItem, params: GenerationParams) -> MethodOutput:
        messages = [system(self.system_prompt), user(item.request)]
        start = time.perf_counter()
        out = await self.backend.complete(messages, params)
        logprobs = [t.logprob for t in out.logprobs] if out.logprobs else None
        return MethodOutput(
            answer=out.text, messages=messages, token_logprobs=logprobs,
            cost=Cost(**_Cost.of(out.usage).model_dump(), seconds=time.perf_counter() - start),
        )

    async def aclose(self) -> None:  # the backend belongs to the run
        return None


class RuntimeMethod:
    """The guarded runtime. Options: `policy` (a shipped policy's name such as
    `embedded_default`, or a policy YAML path; default: what `specguard serve` uses for the
    backend, embedded_default for the embedded model), `store` (a store URL; default in
    memory), `tenant`, `user`."""

    name = "runtime"

    def __init__(self, backend, *, policy: str | None = None, store: str | None = None,
                 tenant: str = "default", user: str | None = None) -> None:
        from ..core import Runtime
        from ..store import Store

        pol, described = load_policy(policy, backend)
        self._store = Store(store or ":memory:")
        self.runtime = Runtime(backend, policy=pol, store=self._store)
        self.tenant, self.user = tenant, user
        self.description = f"guarded runtime, policy {described}"

    async def run(self, item: EvalItem, params: GenerationParams) -> MethodOutput:
        messages = [user(item.request)]
        start = time.perf_counter()
        result = await self.runtime.chat(messages, tenant=self.tenant, user=self.user,
                                         params=params)
        rep = result.report
        return MethodOutput(
            answer=result.answer, messages=messages, action=result.action.value,
            report=rep.model_dump(mode="json"),
            cost=Cost(**rep.cost().model_dump(), seconds=time.perf_counter() - start),
        )

    async def aclose(self) -> None:
        self._store.close()  # the backend belongs to the run; Runtime.aclose would close it


def shipped_policies() -> list[str]:
    import importlib.resources

    folder = importlib.resources.files("specguard.specs") / "policies"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir()
                  if p.name.endswith(".yaml"))


def load_policy(policy: str | None, backend: Any) -> tuple[Any, str]:
    """(Policy, how a report names it). None: the policy `specguard serve` ships for the
    backend (embedded_default for the embedded model, else the built-in default)."""
    import importlib.resources
    from pathlib import Path

    from ..policy import Policy

    if policy is None:
        embedded = str(getattr(backend, "name", "")).startswith("embedded")
        if not embedded:
            return Policy.default(), "built-in default (Policy.default())"
        policy = "embedded_default"
    path = Path(policy)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return Policy.load(path), f"{path.name} ({path})"
    res = importlib.resources.files("specguard.specs") / "policies" / f"{policy}.yaml"
    if not res.is_file():
        raise ConfigError(f"Unknown policy {policy!r}.",
                          hint=f"Shipped policies: {', '.join(shipped_policies())}; or give a "
                               "policy YAML path.")
    return (Policy.from_yaml(res.read_text(encoding="utf-8"), source=f"{policy}.yaml"),
            f"{policy} (shipped: specguard/specs/policies/{policy}.yaml)")


def method_options(ctx: MethodContext, allowed: set[str], method: str) -> dict[str, Any]:
    unknown = set(ctx.options) - allowed
    if unknown:
        raise ConfigError(f"method {method!r}: unknown option(s) {sorted(unknown)}",
                          hint=f"Allowed: {sorted(allowed)}.")
    return dict(ctx.options)


register_method("raw", lambda ctx: RawMethod(
    ctx.backend, **method_options(ctx, {"system_prompt"}, "raw")))
register_method("runtime", lambda ctx: RuntimeMethod(
    ctx.backend, **method_options(ctx, {"policy", "store", "tenant", "user"}, "runtime")))
