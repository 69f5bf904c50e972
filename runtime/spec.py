"""Safety specifications: the text the critique/revise loop holds answers to.

Specs are versioned per scope ("global", "tenant:<id>", "profile:<id>"), never one global
mutable spec: the spec loop proposes candidates in one scope, a gate decides, and every
version keeps its parent so it can be rolled back.
"""

from __future__ import annotations

import difflib
import re
from datetime import UTC, datetime
from enum import StrEnum
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError
from .policy import SpecUpdateMode

GLOBAL_SCOPE = "global"


class SpecStatus(StrEnum):
    ACTIVE = "active"  # the version the loop uses now
    CANDIDATE = "candidate"  # proposed, not yet gated
    REJECTED = "rejected"  # failed its gate; kept with the reason
    RETIRED = "retired"  # was active once; a rollback target


class SpecSource(StrEnum):
    """Who wrote a spec version (its lineage)."""

    BUILTIN = "builtin"  # shipped in specs/builtin
    ADMIN = "admin"  # written by an admin (CLI or API)
    FILE = "file"  # loaded from a spec file
    INHERITED = "inherited"  # a scope's first own copy of the spec it inherited
    META_CRITIC = "meta-critic"  # learned by the meta-critic (MetaSC); `mode` says which
    OPTIMIZE = "optimize"  # the offline optimizer's starting version
    SUITE = "suite"  # an eval suite's starting version


class Provenance(BaseModel):
    source: SpecSource = SpecSource.BUILTIN
    mode: SpecUpdateMode | None = None  # for META_CRITIC: the update mode that wrote it
    author: str | None = None
    transcript_ids: list[str] = Field(default_factory=list)
    note: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _split_legacy_source(cls, data: Any) -> Any:
        # Versions stored before `mode` existed say "meta-critic:<mode>" in `source`.
        if isinstance(data, dict) and isinstance(data.get("source"), str) and ":" in data["source"]:
            source, _, mode = data["source"].partition(":")
            data = {**data, "source": source, "mode": data.get("mode") or mode}
        return data

    @property
    def learned(self) -> bool:
        """Written by the meta-critic (not an admin's, the shipped or a copied text)."""
        return self.source is SpecSource.META_CRITIC

    def __str__(self) -> str:
        return f"{self.source.value}:{self.mode.value}" if self.mode else self.source.value


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


_SCOPE_ID = re.compile(r"^[^/:\s]+$")


class Scope(BaseModel):
    """Where a spec version lives: global, a tenant, a profile, or a profile inside its tenant.
    Its text form ("global", "tenant:a", "profile:p", "tenant:a/profile:p") is the store's key;
    `Scope.parse` reads it back, and `chain()` lists the scopes it inherits from."""

    model_config = ConfigDict(frozen=True)

    tenant: str | None = None
    profile: str | None = None

    def __str__(self) -> str:
        if self.tenant and self.profile:
            return f"tenant:{self.tenant}/profile:{self.profile}"
        if self.profile:
            return f"profile:{self.profile}"
        if self.tenant:
            return f"tenant:{self.tenant}"
        return GLOBAL_SCOPE

    @classmethod
    def parse(cls, text: str) -> Scope:
        if text == GLOBAL_SCOPE:
            return cls()
        parts: dict[str, str] = {}
        for part in text.split("/"):
            kind, _, ident = part.partition(":")
            if kind not in ("tenant", "profile") or kind in parts or not _SCOPE_ID.match(ident):
                raise ConfigError(f"Invalid spec scope {text!r}.",
                                  hint="Use global, tenant:<id>, profile:<id> or tenant:<id>/profile:<id>.")
            parts[kind] = ident
        scope = cls(**parts)
        if str(scope) != text:  # e.g. "profile:p/tenant:a": the tenant comes first
            raise ConfigError(f"Invalid spec scope {text!r}.", hint=f"Write it as {str(scope)!r}.")
        return scope

    def chain(self) -> list[Scope]:
        """This scope and the ones it inherits from, narrowest first, ending with global."""
        out = [self]
        if self.tenant and self.profile:
            out.append(Scope(tenant=self.tenant))
        if self != Scope():
            out.append(Scope())
        return out


def scope_for(*, tenant: str | None = None, profile: str | None = None) -> str:
    """The key of the narrowest scope a request's spec lives in. A profile scope sits inside its
    tenant ("tenant:a/profile:p"), so two tenants that both have a profile "teen" never share,
    or steer, each other's spec."""
    return str(Scope(tenant=tenant or None, profile=profile or None))


def scope_chain(scope: str) -> list[str]:
    """`scope` and the scopes it inherits from, narrowest first, ending with global."""
    return [str(s) for s in Scope.parse(scope).chain()]


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


class CandidateRow(BaseModel):
    version: int
    status: str  # accepted (active or retired) | rejected | awaiting approval | pending
    why: str


class SpecUpdateReport(BaseModel):
    """What the meta-critic proposed in one scope (from the spec's stored history): candidates
    seen, accepted (they served), rejected (with the gate's reason) and waiting for an admin."""

    seen: int = 0
    accepted: int = 0
    rejected: int = 0
    awaiting: int = 0
    rows: list[CandidateRow] = Field(default_factory=list)


def spec_update_report(history: list[Spec]) -> SpecUpdateReport:
    """The report of a scope's learned versions (`specguard spec candidates`)."""
    rep = SpecUpdateReport()
    for s in history:
        if not s.provenance.learned:
            continue
        rep.seen += 1
        gate = s.metrics.get("gate_reason") or ""
        if s.status in (SpecStatus.ACTIVE, SpecStatus.RETIRED):
            rep.accepted += 1
            status, why = "accepted", str(gate or s.metrics.get("approved_by") or "")
        elif s.status is SpecStatus.REJECTED:
            rep.rejected += 1
            status, why = "rejected", str(s.metrics.get("rejected_because", gate))
        elif s.provenance.mode is not SpecUpdateMode.GATED:
            rep.awaiting += 1
            status, why = "awaiting approval", (f"{gate or 'ungated'}: activate it with "
                                                f"`specguard spec activate {s.name} {s.version} "
                                                f"--scope {s.scope}`")
        else:
            status, why = "pending", "being gated"
        rep.rows.append(CandidateRow(version=s.version, status=status, why=why))
    return rep
