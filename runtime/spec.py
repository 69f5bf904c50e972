"""Safety specifications: the text the critique/revise loop holds answers to.

Specs are versioned per scope ("global", "tenant:<id>", "profile:<id>"), never one global
mutable spec: the spec loop proposes candidates in one scope, a gate decides, and every
version keeps its parent so it can be rolled back.
"""

from __future__ import annotations

import difflib
from datetime import UTC, datetime
from enum import StrEnum
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError

GLOBAL_SCOPE = "global"


class SpecStatus(StrEnum):
    ACTIVE = "active"  # the version the loop uses now
    CANDIDATE = "candidate"  # proposed, not yet gated
    REJECTED = "rejected"  # failed its gate; kept with the reason
    RETIRED = "retired"  # was active once; a rollback target


class Provenance(BaseModel):
    source: str = "builtin"  # builtin | admin | file | meta-critic:<mode>
    author: str | None = None
    transcript_ids: list[str] = Field(default_factory=list)
    note: str | None = None


class SpecDefinition(BaseModel):
    """A spec as a user writes it in YAML."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    title: str
    text: str = Field(min_length=1)
    categories: list[str] = Field(default_factory=list)

    @field_validator("text")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()


class Spec(BaseModel):
    """One stored version of a spec in one scope."""

    name: str
    scope: str = GLOBAL_SCOPE
    version: int = 1
    parent: int | None = None
    status: SpecStatus = SpecStatus.ACTIVE
    title: str = ""
    text: str
    categories: list[str] = Field(default_factory=list)
    provenance: Provenance = Field(default_factory=Provenance)
    metrics: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.scope}#v{self.version}"


def scope_for(*, tenant: str | None = None, profile: str | None = None) -> str:
    """The narrowest scope a request's spec lives in. A profile scope sits inside its tenant
    ("tenant:a/profile:p"), so two tenants that both have a profile "teen" never share, or
    steer, each other's spec."""
    if profile and tenant:
        return f"tenant:{tenant}/profile:{profile}"
    if profile:
        return f"profile:{profile}"
    if tenant:
        return f"tenant:{tenant}"
    return GLOBAL_SCOPE


def scope_chain(scope: str) -> list[str]:
    """`scope` and the scopes it inherits from, narrowest first, ending with global."""
    chain = [scope]
    while "/" in scope:
        scope = scope.rsplit("/", 1)[0]
        chain.append(scope)
    if chain[-1] != GLOBAL_SCOPE:
        chain.append(GLOBAL_SCOPE)
    return chain


def diff_specs(old: Spec, new: Spec) -> str:
    return "".join(
        difflib.unified_diff(
            (old.text.rstrip("\n") + "\n").splitlines(keepends=True),
            (new.text.rstrip("\n") + "\n").splitlines(keepends=True),
            fromfile=old.ref,
            tofile=new.ref,
        )
    )


def load_spec_file(text: str, source: str) -> SpecDefinition:
    try:
        data = yaml.safe_load(text)
        return SpecDefinition.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid spec: {_first_error(exc)}") from exc


def builtin_specs() -> dict[str, SpecDefinition]:
    """The specs shipped in specs/builtin, by name."""
    folder = resources.files("specguard.specs") / "builtin"
    out: dict[str, SpecDefinition] = {}
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            spec = load_spec_file(entry.read_text(encoding="utf-8"), f"builtin/{entry.name}")
            out[spec.name] = spec
    return out


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(root)"
    return f"{loc}: {err['msg']}"
