"""A model per role: which model generates, guards, critiques, rewrites the spec, derives
profile guidelines and judges evals.

| role | what it does | used by |
|---|---|---|
| generate | answers the client (the serving model) | the chat graph's generate node |
| guard | the deliberative tier (specguard.guard.deliberative) | input and output checks |
| critic | MetaSC's critique and revision of a flagged draft | critique / revise nodes |
| meta_critic | rewrites the scope's spec between requests | specguard.agents.SpecUpdater |
| guidelines | derives per-profile guidelines | specguard.profiles, `admin guidelines derive` |
| judge | model judges of the eval harness | `specguard eval run` |

Each role is a backend URI (`embedded`, `litellm:<provider>/<model>`, `openai:<model>`,
`vllm:<model>`, ...) with its own api base, key (read from an environment variable, never
written in a file), timeout and retry budget; `generate` means "the serving model" and `off`
switches the role off (the steps that need it do not run: a flagged draft is then refused with
the policy's message, the fast tier decides alone, no spec updates).

They are chosen in the policy file (`roles:`) and on the command line (`--role guard=...`),
which wins. `resolve_roles` records where each choice came from (`specguard policy explain`
prints it), and `Policy.role_warnings` names the roles a policy turns on with a model measured
to make them worse (`specguard policy check`): the embedded 135M model as critic, meta-critic or
deliberative guard (WEAK_ON_EMBEDDED; docs/results/engines.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import BackendError, ConfigError

if TYPE_CHECKING:
    from .backends.base import Backend
    from .types import Completion, GenerationParams, Message


class RoleName(StrEnum):
    GENERATE = "generate"
    GUARD = "guard"
    CRITIC = "critic"
    META_CRITIC = "meta_critic"
    GUIDELINES = "guidelines"
    JUDGE = "judge"


OFF = "off"
SERVING = "generate"  # as a role's model: play it with the serving model
DEFAULT_GENERATE = "embedded"
DEFAULT_GUARD_FORMAT = "thinkguard"

# Roles the embedded 135M model was measured to play badly (docs/results/engines.md, and the
# fast-tier notes in docs/results/guard.md): it never refuses, so as the deliberative guard it
# labels harmful requests safe; as critic its revisions talk about the revision instead of
# answering; as meta-critic its proposals never pass the spec filters.
WEAK_ON_EMBEDDED = {
    RoleName.CRITIC: "its revisions talk about the revision or drift off topic instead of "
                     "answering (the revision gate rejects them; critique then only costs time)",
    RoleName.META_CRITIC: "its proposals are dropped by the spec filters or lower the safe "
                          "share (MetaSC static self-critique 0.17 -> 0.02 on the embedded model)",
    RoleName.GUARD: "as the deliberative tier it answers 'safe' to harmful requests",
}


class RoleModel(BaseModel):
    """One role's model, as a policy file or `--role` writes it."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)  # backend URI, 'generate' (the serving model) or 'off'
    api_base: str | None = None
    api_key_env: str | None = None  # the environment variable that holds the key
    timeout_s: float = Field(60.0, gt=0)
    retries: int = Field(2, ge=0, le=10)
    format: str | None = None  # guard only: the guard model's prompt/answer format

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"model": data} if isinstance(data, str) else data

    @property
    def off(self) -> bool:
        return self.model == OFF

    @property
    def serving(self) -> bool:
        return self.model == SERVING


class RoleTable(BaseModel):
    """The `roles:` section of a policy file. A role left out plays on the serving model."""

    model_config = ConfigDict(extra="forbid")

    generate: RoleModel | None = None
    guard: RoleModel | None = None
    critic: RoleModel | None = None
    meta_critic: RoleModel | None = None
    guidelines: RoleModel | None = None
    judge: RoleModel | None = None

    @model_validator(mode="after")
    def _check(self) -> RoleTable:
        if self.generate is not None and (self.generate.off or self.generate.serving):
            raise ValueError("roles.generate must name a model (it is the serving model)")
        for name in RoleName:
            role = getattr(self, name.value)
            if role is not None and role.format is not None and name is not RoleName.GUARD:
                raise ValueError(f"roles.{name.value}.format: only the guard role has a format")
        return self

    def get(self, role: RoleName) -> RoleModel | None:
        return getattr(self, role.value)


class ResolvedRole(BaseModel):
    """Who plays a role in this process, and which layer chose it."""

    role: RoleName
    spec: RoleModel  # model is a backend URI or 'off' (never 'generate': resolved)
    source: str  # "--role", "--backend", "policy file", "built-in (the serving model)", ...

    @property
    def off(self) -> bool:
        return self.spec.off

    @property
    def uri(self) -> str:
        return self.spec.model


def parse_role_options(values: Sequence[str] | None) -> dict[RoleName, RoleModel]:
    """`--role` values: `ROLE=URI` or `ROLE=URI;api_base=URL;api_key_env=NAME;timeout_s=30;
    retries=2;format=NAME` (ROLE: guard, critic, meta_critic, guidelines, judge, generate)."""
    out: dict[RoleName, RoleModel] = {}
    for value in values or ():
        name, sep, rest = value.partition("=")
        try:
            role = RoleName(name.strip().replace("-", "_"))
        except ValueError:
            raise ConfigError(f"--role {value!r}: unknown role {name!r}.",
                              hint=f"Use one of: {', '.join(r.value for r in RoleName)}.") from None
        if not sep or not rest.strip():
            raise ConfigError(f"--role {value!r}: no model.", hint=f"Write {role.value}=<backend URI>.")
        uri, *pairs = [p.strip() for p in rest.split(";")]
        data: dict[str, Any] = {"model": uri}
        for pair in pairs:
            key, eq, val = pair.partition("=")
            if not eq:
                raise ConfigError(f"--role {value!r}: {pair!r} is not key=value.")
            data[key.strip()] = val.strip()
        try:
            out[role] = RoleModel.model_validate(data)
        except ValueError as exc:
            raise ConfigError(f"--role {value!r}: {exc}") from None
    return out


def resolve_roles(table: RoleTable | None = None,
                  overrides: Mapping[RoleName, RoleModel] | None = None, *,
                  generate: str | None = None, generate_source: str = "--backend",
                  table_source: str = "policy file") -> dict[RoleName, ResolvedRole]:
    """Each role's model and where it came from. Precedence: `overrides` (the command line),
    then `generate` for the serving model (the command line's --backend or the caller's
    backend), then the policy file's `roles:`, then the built-in default (the serving model;
    `embedded` for generate)."""
    table = table or RoleTable()
    overrides = dict(overrides or {})
    out: dict[RoleName, ResolvedRole] = {}
    if RoleName.GENERATE in overrides:
        gen = ResolvedRole(role=RoleName.GENERATE, spec=overrides[RoleName.GENERATE], source="--role")
    elif generate is not None:
        gen = ResolvedRole(role=RoleName.GENERATE, spec=RoleModel(model=generate), source=generate_source)
    elif table.generate is not None:
        gen = ResolvedRole(role=RoleName.GENERATE, spec=table.generate, source=table_source)
    else:
        gen = ResolvedRole(role=RoleName.GENERATE, spec=RoleModel(model=DEFAULT_GENERATE),
                           source="built-in")
    if gen.spec.off or gen.spec.serving:
        raise ConfigError("The generate role must name a model.", hint="--role generate=embedded")
    out[RoleName.GENERATE] = gen
    for role in RoleName:
        if role is RoleName.GENERATE:
            continue
        if role in overrides:
            spec, source = overrides[role], "--role"
        elif table.get(role) is not None:
            spec, source = table.get(role), table_source
        else:
            spec, source = RoleModel(model=SERVING), "built-in (the serving model)"
        if spec.serving:
            # the serving model plays it, with the role's own format when it has one
            spec = gen.spec.model_copy(update={"format": spec.format})
            source += " -> the serving model" if "serving" not in source else ""
        out[role] = ResolvedRole(role=role, spec=spec, source=source)
    return out


def is_embedded(uri: str) -> bool:
    return uri.split(":", 1)[0] == "embedded"


# -- backends ----------------------------------------------------------------------------------


def _backend_options(spec: RoleModel) -> dict[str, Any]:
    kind = spec.model.split(":", 1)[0]
    if kind in ("embedded", "scripted"):
        return {}
    opts: dict[str, Any] = {"timeout": spec.timeout_s}
    if spec.api_base:
        opts["api_base"] = spec.api_base
    if spec.api_key_env:
        key = os.environ.get(spec.api_key_env)
        if not key:
            raise ConfigError(f"The environment variable {spec.api_key_env} (the key for "
                              f"{spec.model}) is not set.",
                              hint=f"export {spec.api_key_env}=<key>, or drop api_key_env.")
        opts["api_key"] = key
    if kind in ("litellm",) or (kind == "vllm" and not spec.model.startswith("vllm:engine:")):
        opts["num_retries"] = spec.retries
    if kind == "vllm" and spec.model.startswith("vllm:engine:"):
        return {}
    return opts


def _native_retries(uri: str) -> bool:
    kind = uri.split(":", 1)[0]
    return kind == "litellm" or (kind == "vllm" and not uri.startswith("vllm:engine:"))


class RetryingBackend:
    """A backend whose `complete` is retried on upstream failures (for backends without their
    own retry budget: the lean OpenAI client, a remote llama.cpp server). Streams are not
    retried: text may already have gone out."""

    def __init__(self, backend: Backend, retries: int) -> None:
        self.inner = backend
        self.retries = retries
        self.name = backend.name
        self.capabilities = backend.capabilities

    async def load(self) -> None:
        await self.inner.load()

    async def complete(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        import asyncio

        for attempt in range(self.retries + 1):
            try:
                return await self.inner.complete(messages, params)
            except BackendError:
                if attempt == self.retries:
                    raise
                await asyncio.sleep(min(4.0, 0.25 * 2 ** attempt))
        raise AssertionError("unreachable")

    def stream(self, messages: Sequence[Message], params: GenerationParams):
        return self.inner.stream(messages, params)

    async def aclose(self) -> None:
        await self.inner.aclose()


def load_role_backend(spec: RoleModel) -> Backend:
    """A backend for one role's model (not 'off' or 'generate')."""
    from .backends import load_backend

    backend = load_backend(spec.model, **_backend_options(spec))
    if spec.retries and not _native_retries(spec.model) and spec.model.split(":", 1)[0] == "openai":
        return RetryingBackend(backend, spec.retries)
    return backend


@dataclass
class RoleBackends:
    """The backends that play each role in one process. Roles that name the same model share
    one backend (one embedded model per process, never two); an off role is None."""

    resolved: dict[RoleName, ResolvedRole]
    backends: dict[RoleName, Backend | None] = field(default_factory=dict)

    @classmethod
    def build(cls, resolved: Mapping[RoleName, ResolvedRole],
              generate: Backend | None = None) -> RoleBackends:
        """Backends for `resolved`; `generate`, when given, is the serving model's backend."""
        gen_spec = resolved[RoleName.GENERATE].spec
        by_spec: dict[str, Backend] = {}
        out: dict[RoleName, Backend | None] = {}
        if generate is None:
            generate = load_role_backend(gen_spec)
        for role, r in resolved.items():
            if r.off:
                out[role] = None
            elif role is RoleName.GENERATE or _same_model(r.spec, gen_spec):
                out[role] = generate
            else:
                key = r.spec.model_dump_json(exclude={"format"})
                if key not in by_spec:
                    by_spec[key] = load_role_backend(r.spec)
                out[role] = by_spec[key]
        return cls(resolved=dict(resolved), backends=out)

    @classmethod
    def serving(cls, generate: Backend, table: RoleTable | None = None,
                overrides: Mapping[RoleName, RoleModel] | None = None) -> RoleBackends:
        """Roles for a caller that already has the serving backend (the Python API): the policy
        file's roles, with `generate` as the serving model."""
        resolved = resolve_roles(table, overrides, generate=generate.name,
                                 generate_source="the runtime's backend")
        return cls.build(resolved, generate)

    def get(self, role: RoleName) -> Backend | None:
        return self.backends.get(role)

    @property
    def generate(self) -> Backend:
        backend = self.backends[RoleName.GENERATE]
        assert backend is not None
        return backend

    @property
    def guard_format(self) -> str:
        return self.resolved[RoleName.GUARD].spec.format or DEFAULT_GUARD_FORMAT

    def distinct(self) -> list[Backend]:
        seen: dict[int, Backend] = {}
        for b in self.backends.values():
            if b is not None:
                seen.setdefault(id(b), b)
        return list(seen.values())

    async def load(self) -> None:
        for b in self.distinct():
            await b.load()

    async def aclose(self) -> None:
        for b in self.distinct():
            await b.aclose()

    def rows(self) -> list[tuple[str, str, str]]:
        """(role, model, source) for `policy explain` and the server's start-up line."""
        rows = []
        for role in RoleName:
            r = self.resolved[role]
            model = r.uri
            if role is RoleName.GUARD and not r.off:
                model += f" (format {self.guard_format})"
            if r.spec.api_base:
                model += f" @ {r.spec.api_base}"
            rows.append((role.value, model, r.source))
        return rows


def role_rows(resolved: Mapping[RoleName, ResolvedRole]) -> list[tuple[str, str, str]]:
    return RoleBackends(resolved=dict(resolved)).rows()


def _same_model(spec: RoleModel, gen: RoleModel) -> bool:
    """Whether a role names the serving model itself (then it shares the serving backend: one
    embedded model per process, never two)."""
    if spec.model == gen.model and spec.api_base == gen.api_base:
        return True
    if is_embedded(spec.model) and is_embedded(gen.model):
        a, b = spec.model.partition(":")[2], gen.model.partition(":")[2]
        return not a or not b or Path(a).stem == Path(b).stem
    return False


__all__ = ["OFF", "WEAK_ON_EMBEDDED", "RetryingBackend", "ResolvedRole", "RoleBackends",
           "RoleModel", "RoleName", "RoleTable", "is_embedded", "load_role_backend",
           "parse_role_options", "resolve_roles", "role_rows"]
