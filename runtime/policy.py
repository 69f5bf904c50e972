"""Policies: who may call, which specs apply, which checks run and what happens on a violation.

A policy file (YAML) is validated at load with `extra="forbid"`, so a typo is an error that
names the field, not a silent default. Settings compose in layers — built-in defaults, the
file's defaults, the tenant, the user's profile, the user — and `resolve()` records which
layer set each value (what `specguard policy explain` prints).
"""

from __future__ import annotations

import copy
import hmac
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .decoding.settings import DetoxSettings
from ._keys import hash_key
from .errors import AuthenticationError, ConfigError, NotFoundError


class ViolationAction(StrEnum):
    REFUSE = "refuse"  # answer with the policy's refusal message
    REVISE = "revise"  # critique and revise the draft against the spec, then re-check


class CritiqueMode(StrEnum):
    OFF = "off"
    WHEN_FLAGGED = "when_flagged"
    ALWAYS = "always"


class StreamProtection(StrEnum):
    BUFFER = "buffer"  # generate and check the whole answer, then stream it
    CHUNKED = "chunked"  # check growing prefixes; hold back a window until it is checked
    DETOX = "detox"  # detoxified decoding; tokens stream as generated
    PASS = "pass"  # nothing checks the output (output check and critique off): stream as generated


class SpecUpdateMode(StrEnum):
    """Whether and how a meta-critic rewrites the scope's spec after answers (MetaSC)."""

    OFF = "off"
    GATED = "gated"  # a candidate serves only if it does not regress on the scope's canaries
    METASC_10 = "metasc-10"  # the paper's variant: ungated, stops after 10 updates per scope
    METASC_FULL = "metasc-full"  # the paper's variant: ungated, after every request


class OnUndecided(StrEnum):
    BLOCK = "block"  # fail closed (default)
    ALLOW = "allow"  # fail open


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GuidelineUse(StrEnum):
    """Which derived per-profile guidelines a request uses (see specguard.profiles)."""

    APPROVED = "approved"  # only guidelines an admin approved (default)
    LATEST = "latest"  # the newest version, approved or draft
    OFF = "off"  # none: the profile text alone


class AgeBand(StrEnum):
    CHILD = "under-13"
    TEEN = "13-17"
    ADULT = "18-64"
    SENIOR = "65+"


class ProfileAttributes(_Strict):
    """What is known about a user in structured form, next to the first-person profile text."""

    age_band: AgeBand | None = None
    health_conditions: list[str] = Field(default_factory=list)
    jurisdiction: str | None = None  # country or region whose law applies, e.g. "Saudi Arabia"
    role: str | None = None  # e.g. "judge", "prosecutor", "pharmacist"


class OperatingPoint(StrEnum):
    """Named trade-offs between catching harm and flagging harmless look-alikes. Each fast-tier
    artifact carries the threshold for each, chosen on its validation part, and its card
    (`specguard guard info`) the recall and false-positive rates measured there."""

    STRICT = "strict"  # catch more harm, flag more look-alikes
    BALANCED = "balanced"
    PERMISSIVE = "permissive"  # flag fewer look-alikes, miss more harm


class CheckSettings(_Strict):
    enabled: bool = True
    # Fast-tier scores inside [low, high] are uncertain and escalate to the deliberative tier.
    escalate_band: tuple[float, float] = (0.2, 0.8)
    operating_point: OperatingPoint = OperatingPoint.BALANCED
    # A fixed P(unsafe) threshold instead of the operating point's (None: the operating point).
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    deliberative: bool = True
    on_undecided: OnUndecided = OnUndecided.BLOCK
    disabled_categories: list[str] = Field(default_factory=list)
    category_thresholds: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _band(self) -> CheckSettings:
        lo, hi = self.escalate_band
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError("escalate_band must be [low, high] with 0 <= low <= high <= 1")
        return self


class PolicySettings(_Strict):
    """The resolved settings for one request."""

    specs: list[str] = Field(default_factory=lambda: ["general"])
    input_check: CheckSettings = Field(default_factory=CheckSettings)
    output_check: CheckSettings = Field(default_factory=CheckSettings)
    on_violation: ViolationAction = ViolationAction.REVISE
    critique: CritiqueMode = CritiqueMode.WHEN_FLAGGED
    critique_rounds: int = Field(1, ge=0, le=5)
    stream_protection: StreamProtection = StreamProtection.BUFFER
    stream_holdback_chars: int = Field(200, ge=0)
    refusal_message: str = (
        "I can't help with that request because it could cause harm. "
        "If you have a related question I can answer safely, I'm glad to help."
    )
    system_prompt: str = "You are a helpful and harmless assistant."
    max_tokens: int = Field(512, ge=1, le=32768)
    taxonomy: str = "beavertails"
    # MetaSC spec updates (specguard.agents.spec_updates): off the request path, per scope.
    spec_update: SpecUpdateMode = SpecUpdateMode.OFF
    spec_update_min_interval_s: float = Field(60.0, ge=0.0)  # per scope
    spec_update_canaries: str = "default"  # specs/canaries/<name>.yaml or a YAML path
    spec_update_safety_tolerance: float = Field(0.0, ge=0.0, le=1.0)  # allowed safety drop
    spec_update_overrefusal_tolerance: float = Field(0.05, ge=0.0, le=1.0)  # allowed rise

    # Goodtriever settings (toxic / nontoxic datastore folders, alpha, k, temperature, top_p)
    # used when stream_protection is "detox".
    detox: DetoxSettings | None = None

    def check_complete(self, where: str) -> None:
        """Rules across settings that may come from different layers; checked on the
        resolved settings (every tenant and user is resolved once when a policy loads)."""
        if self.stream_protection is StreamProtection.DETOX and not (self.detox and self.detox.toxic):
            raise ConfigError(
                f"{where}: stream_protection 'detox' needs detox.toxic datastore folders.",
                hint="Build them with `specguard datastore build` and list them under detox.toxic.",
            )
        if self.stream_protection is StreamProtection.PASS and (
            self.output_check.enabled or self.critique is not CritiqueMode.OFF
        ):
            raise ConfigError(
                f"{where}: stream_protection 'pass' streams unchecked text, so it needs "
                "output_check.enabled false and critique off.",
                hint="Use 'chunked' to stream checked text as it is generated.",
            )
    profile_guidelines: GuidelineUse = GuidelineUse.APPROVED


class Profile(_Strict):
    """Who the user is, as far as safety is concerned (U-SafeBench style, first person)."""

    text: str = Field(min_length=1)
    attributes: ProfileAttributes = Field(default_factory=ProfileAttributes)
    settings: dict[str, Any] = Field(default_factory=dict)


class Tenant(_Strict):
    settings: dict[str, Any] = Field(default_factory=dict)


class User(_Strict):
    tenant: str
    profile: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


class ApiKey(_Strict):
    """An API key, stored as its SHA-256 (never in clear). It binds the caller to a tenant
    and, optionally, to a user; only the server decides who is calling."""

    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    tenant: str
    user: str | None = None
    admin: bool = False
    # A deployment's gateway may name the end user in the server's trusted header; no other
    # key can, so a client can never pick someone else's profile.
    trusted_gateway: bool = False


class PolicyFile(_Strict):
    defaults: dict[str, Any] = Field(default_factory=dict)
    tenants: dict[str, Tenant] = Field(default_factory=lambda: {"default": Tenant()})
    profiles: dict[str, Profile] = Field(default_factory=dict)
    users: dict[str, User] = Field(default_factory=dict)
    api_keys: list[ApiKey] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> PolicyFile:
        for layer, settings in self._layers():
            _validate_partial(settings, layer)
        for uid, u in self.users.items():
            if u.tenant not in self.tenants:
                raise ValueError(f"users.{uid}.tenant: unknown tenant {u.tenant!r}")
            if u.profile is not None and u.profile not in self.profiles:
                raise ValueError(f"users.{uid}.profile: unknown profile {u.profile!r}")
        for i, k in enumerate(self.api_keys):
            if k.tenant not in self.tenants:
                raise ValueError(f"api_keys.{i}.tenant: unknown tenant {k.tenant!r}")
            if k.user is not None:
                if k.user not in self.users:
                    raise ValueError(f"api_keys.{i}.user: unknown user {k.user!r}")
                if self.users[k.user].tenant != k.tenant:
                    raise ValueError(f"api_keys.{i}: user {k.user!r} is not in tenant {k.tenant!r}")
        return self

    def _layers(self):
        yield "defaults", self.defaults
        for name, tenant in self.tenants.items():
            yield f"tenants.{name}.settings", tenant.settings
        for name, profile in self.profiles.items():
            yield f"profiles.{name}.settings", profile.settings
        for name, u in self.users.items():
            yield f"users.{name}.settings", u.settings


class Caller(BaseModel):
    """Who is calling, as established by the server (never by message text)."""

    key_name: str
    tenant: str
    user: str | None = None
    admin: bool = False
    trusted_gateway: bool = False


class ResolvedPolicy(BaseModel):
    tenant: str
    user: str | None
    profile_id: str | None
    profile: Profile | None
    settings: PolicySettings
    sources: dict[str, str]  # dotted setting path -> the layer that set it


class Policy:
    """A loaded policy file: key lookup and per-request resolution (cached)."""

    def __init__(self, file: PolicyFile) -> None:
        self.file = file
        self._keys = {k.sha256: k for k in file.api_keys}
        self._cache: dict[tuple[str, str | None], ResolvedPolicy] = {}
        # Resolve every tenant and user once, so a combination that is invalid only after the
        # layers merge fails at load, not on some later request.
        for tenant in file.tenants:
            self.resolve(tenant)
        for uid, u in file.users.items():
            self.resolve(u.tenant, uid)

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Policy file {path} does not exist.")
        return cls.from_yaml(path.read_text(encoding="utf-8"), source=str(path))

    @classmethod
    def from_yaml(cls, text: str, source: str = "<policy>") -> Policy:
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: dict, source: str = "<policy>") -> Policy:
        try:
            return cls(PolicyFile.model_validate(data))
        except ValidationError as exc:
            raise ConfigError(f"{source}: {_describe(exc)}") from exc

    @classmethod
    def default(cls) -> Policy:
        return cls(PolicyFile())

    def with_key(self, key: str, *, tenant: str = "default", user: str | None = None,
                 name: str = "cli", admin: bool = False) -> Policy:
        """A copy of this policy that also accepts `key` (for `specguard serve --api-key`)."""
        data = self.file.model_dump()
        data["api_keys"].append(
            dict(name=name, sha256=hash_key(key), tenant=tenant, user=user, admin=admin)
        )
        return Policy.from_dict(data)

    def authenticate(self, key: str | None) -> Caller:
        if not key:
            raise AuthenticationError(
                "Missing API key.", hint="Send it as `Authorization: Bearer <key>`."
            )
        entry = self._keys.get(hash_key(key))
        # The dict lookup is on a hash of the key, so it leaks nothing about the key itself;
        # compare_digest keeps the final check constant-time anyway.
        if entry is None or not hmac.compare_digest(entry.sha256, hash_key(key)):
            raise AuthenticationError("Invalid API key.", hint="Check the key or ask an admin.")
        return Caller(
            key_name=entry.name,
            tenant=entry.tenant,
            user=entry.user,
            admin=entry.admin,
            trusted_gateway=entry.trusted_gateway,
        )

    def resolve(self, tenant: str, user: str | None = None) -> ResolvedPolicy:
        cached = self._cache.get((tenant, user))
        if cached is not None:
            return cached
        if tenant not in self.file.tenants:
            raise NotFoundError(f"Unknown tenant {tenant!r}.")
        u = self.file.users.get(user) if user else None
        if u is not None and u.tenant != tenant:
            u = None  # a user id from another tenant is just an identifier here
        profile_id = u.profile if u else None
        profile = self.file.profiles.get(profile_id) if profile_id else None
        layers: list[tuple[str, dict]] = [
            ("defaults", self.file.defaults),
            (f"tenant:{tenant}", self.file.tenants[tenant].settings),
        ]
        if profile is not None:
            layers.append((f"profile:{profile_id}", profile.settings))
        if u is not None:
            layers.append((f"user:{user}", u.settings))
        merged: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for layer, settings in layers:
            _deep_merge(merged, settings, sources, layer)
        settings = PolicySettings.model_validate(merged)
        settings.check_complete(f"tenant {tenant!r}" + (f", user {user!r}" if user else ""))
        resolved = ResolvedPolicy(
            tenant=tenant,
            user=user,
            profile_id=profile_id,
            profile=profile,
            settings=settings,
            sources=sources,
        )
        self._cache[(tenant, user)] = resolved
        return resolved

    def explain(self, tenant: str, user: str | None = None) -> list[tuple[str, Any, str]]:
        """(setting, value, source) for every leaf setting; unset ones come from 'built-in'."""
        resolved = self.resolve(tenant, user)
        rows = []
        for path, value in _leaves(resolved.settings.model_dump(mode="json")):
            rows.append((path, value, resolved.sources.get(path, "built-in")))
        return rows




def _validate_partial(settings: dict, layer: str) -> None:
    try:
        PolicySettings.model_validate(settings)
    except ValidationError as exc:
        raise ValueError(f"{layer}: {_describe(exc)}") from None


def _deep_merge(into: dict, layer: dict, sources: dict, name: str, prefix: str = "") -> None:
    for key, value in layer.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value, sources, name, path + ".")
        else:
            into[key] = copy.deepcopy(value)
            if isinstance(value, dict):
                for leaf, _ in _leaves(value, path + "."):
                    sources[leaf] = name
            else:
                sources[path] = name


def _leaves(d: dict, prefix: str = ""):
    for key, value in d.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
