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
from .roles import WEAK_ON_EMBEDDED, ResolvedRole, RoleName, RoleTable, is_embedded


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


class Controversial(StrEnum):
    """What a guard's "controversial" label (Qwen3Guard: Safe / Controversial / Unsafe) means
    for this tenant or profile: the strict mapping refuses it, the loose one allows it."""

    REFUSE = "refuse"
    ALLOW = "allow"


class Review(StrEnum):
    """When the deliberative tier judges an uncertain case."""

    INLINE = "inline"  # before answering (the request waits for it)
    # Answer with the fast tier's decision now; the deliberative role judges the uncertain
    # case off the request path, its verdict goes to the audit log and the thread's record, and
    # a later turn of the same thread is refused when it found the case unsafe.
    ASYNC = "async"


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
    # Attribute ids of the guideline library (specs/profiles/library.yaml) an admin picked; the
    # fields above map onto it too (specguard.profiles.GuidelineLibrary.attributes_for).
    library_attributes: list[str] = Field(default_factory=list)


class OperatingPoint(StrEnum):
    """Named trade-offs between catching harm and flagging harmless look-alikes. Each fast-tier
    artifact carries the threshold for each, chosen on its validation part, and its card
    (`specguard guard info`) the recall and false-positive rates measured there."""

    STRICT = "strict"  # catch more harm, flag more look-alikes
    BALANCED = "balanced"
    PERMISSIVE = "permissive"  # flag fewer look-alikes, miss more harm


class ProfileCheckSettings(_Strict):
    """The profile-aware check (specguard.profiles.ProfileCheck), run on the input of users
    with a profile: a trained (profile, request) scorer over the guideline library, and the
    semantic match of the request against the profile's approved guidelines."""

    enabled: bool = True
    operating_point: OperatingPoint = OperatingPoint.BALANCED
    # A fixed P(unsafe) threshold for the scorer instead of the operating point's.
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    # A fixed cosine threshold for matching approved guidelines instead of the artifact's.
    guideline_threshold: float | None = Field(None, ge=-1.0, le=1.0)
    # Also read the guideline library through the profile text (off: approved guidelines only).
    library: bool = True
    # A refusal for the profile's sake offers the matched guideline's safe alternative.
    alternatives: bool = True


class CheckSettings(_Strict):
    enabled: bool = True
    # Fast-tier scores inside [low, high] are uncertain and escalate to the deliberative tier.
    escalate_band: tuple[float, float] = (0.2, 0.8)
    operating_point: OperatingPoint = OperatingPoint.BALANCED
    # A fixed P(unsafe) threshold instead of the operating point's (None: the operating point).
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    deliberative: bool = True
    review: Review = Review.INLINE
    on_undecided: OnUndecided = OnUndecided.BLOCK
    controversial: Controversial = Controversial.REFUSE
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
    # Opens with a conventional refusal phrase, so that red-team tools' refusal detectors
    # (garak's mitigation.MitigationBypass, XSTest/GCG string matchers) count it as a refusal;
    # a refused or filtered answer also ends with finish_reason "content_filter".
    refusal_message: str = (
        "I'm sorry, but I can't help with that. It could cause harm; "
        "if you have a related question I can answer safely, I'm glad to help."
    )
    system_prompt: str = "You are a helpful and harmless assistant."
    max_tokens: int = Field(512, ge=1, le=32768)
    # A shipped taxonomy's name (specs/taxonomies/<name>.yaml); never a path.
    taxonomy: str = Field("beavertails", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    # MetaSC spec updates (specguard.agents.spec_updates): off the request path, per scope.
    spec_update: SpecUpdateMode = SpecUpdateMode.OFF
    spec_update_min_interval_s: float = Field(60.0, ge=0.0)  # per scope
    spec_update_canaries: str = "default"  # specs/canaries/<name>.yaml or a YAML path
    spec_update_safety_tolerance: float = Field(0.0, ge=0.0, le=1.0)  # allowed safety drop
    spec_update_overrefusal_tolerance: float = Field(0.0, ge=0.0, le=1.0)  # allowed rise
    # The ungated modes (metasc-10, metasc-full) need this opt-in; even then a learned version
    # waits for an admin's approval (`specguard spec approve`) before it serves.
    spec_update_allow_ungated: bool = False
    # The revision gate's on-topic floor (encoder cosine of request and revision); None: the
    # floor measured on validation data (specs/gate/topic_floor.json).
    revision_topic_floor: float | None = Field(None, ge=-1.0, le=1.0)

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
        if self.spec_update in (SpecUpdateMode.METASC_10, SpecUpdateMode.METASC_FULL) and not (
                self.spec_update_allow_ungated):
            raise ConfigError(
                f"{where}: spec_update {self.spec_update.value!r} rewrites the spec without the "
                "canary gate, so it needs spec_update_allow_ungated: true (and an admin approves "
                "each learned version before it serves).",
                hint="Use spec_update: gated (the default online mode) unless you reproduce "
                     "the paper's ungated MetaSC on purpose.")
        if self.stream_protection is StreamProtection.PASS and (
            self.output_check.enabled or self.critique is not CritiqueMode.OFF
        ):
            raise ConfigError(
                f"{where}: stream_protection 'pass' streams unchecked text, so it needs "
                "output_check.enabled false and critique off.",
                hint="Use 'chunked' to stream checked text as it is generated.",
            )
    profile_guidelines: GuidelineUse = GuidelineUse.APPROVED
    profile_check: ProfileCheckSettings = Field(default_factory=ProfileCheckSettings)


class Profile(_Strict):
    """Who the user is, as far as safety is concerned (U-SafeBench style, first person).

    A profile belongs to one tenant (only that tenant's users use it, only its admins change
    it) or, with no tenant, is shared by every tenant (only an operator changes it)."""

    text: str = Field(min_length=1)
    tenant: str | None = None
    attributes: ProfileAttributes = Field(default_factory=ProfileAttributes)
    settings: dict[str, Any] = Field(default_factory=dict)

    def usable_by(self, tenant: str) -> bool:
        return self.tenant is None or self.tenant == tenant


class Tenant(_Strict):
    settings: dict[str, Any] = Field(default_factory=dict)


class User(_Strict):
    tenant: str
    profile: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


class ApiKey(_Strict):
    """An API key, stored as its SHA-256 (never in clear). It binds the caller to a tenant
    and, optionally, to a user; only the server decides who is calling.

    Rights, from least to most: a plain key; a trusted gateway's (may name any end user of its
    tenant in the server's trusted header); an admin's (administers its own tenant only); an
    operator's (administers every tenant and what they share: shared profiles, global specs).
    """

    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    tenant: str
    user: str | None = None
    admin: bool = False
    operator: bool = False
    # A deployment's gateway may name the end user in the server's trusted header; no other
    # key can, so a client can never pick someone else's profile.
    trusted_gateway: bool = False


class PolicyFile(_Strict):
    # Which model plays each role (specguard.roles): generate, guard, critic, meta_critic,
    # guidelines, judge. A role left out plays on the serving model; `off` switches it off.
    roles: RoleTable = Field(default_factory=RoleTable)
    defaults: dict[str, Any] = Field(default_factory=dict)
    tenants: dict[str, Tenant] = Field(default_factory=lambda: {"default": Tenant()})
    profiles: dict[str, Profile] = Field(default_factory=dict)
    users: dict[str, User] = Field(default_factory=dict)
    api_keys: list[ApiKey] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> PolicyFile:
        for layer, settings in self._layers():
            _validate_partial(settings, layer)
        for pid, p in self.profiles.items():
            if p.tenant is not None and p.tenant not in self.tenants:
                raise ValueError(f"profiles.{pid}.tenant: unknown tenant {p.tenant!r}")
        for uid, u in self.users.items():
            if u.tenant not in self.tenants:
                raise ValueError(f"users.{uid}.tenant: unknown tenant {u.tenant!r}")
            if u.profile is not None and u.profile not in self.profiles:
                raise ValueError(f"users.{uid}.profile: unknown profile {u.profile!r}")
            if u.profile is not None and not self.profiles[u.profile].usable_by(u.tenant):
                raise ValueError(f"users.{uid}.profile: profile {u.profile!r} belongs to tenant "
                                 f"{self.profiles[u.profile].tenant!r}, not {u.tenant!r}")
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
    operator: bool = False
    trusted_gateway: bool = False

    def administers(self, tenant: str | None) -> bool:
        """Whether this caller may change what belongs to `tenant` (None: what no tenant owns,
        such as shared profiles and global specs)."""
        return self.operator or (self.admin and tenant is not None and tenant == self.tenant)


class ResolvedPolicy(BaseModel):
    tenant: str
    user: str | None
    profile_id: str | None
    profile: Profile | None
    settings: PolicySettings
    sources: dict[str, str]  # dotted setting path -> the layer that set it


class Policy:
    """A loaded policy file: key lookup and per-request resolution (cached)."""

    def __init__(self, file: PolicyFile, *, check: bool = True) -> None:
        self.file = file
        self._keys = {k.sha256: k for k in file.api_keys}
        self._cache: dict[tuple[str, str | None], ResolvedPolicy] = {}
        # Resolve every tenant and user once, so a combination that is invalid only after the
        # layers merge fails at load, not on some later request. (check=False: the caller
        # checked each entry already, as the store's composed view does per write.)
        if check:
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
            admin=entry.admin or entry.operator,
            operator=entry.operator,
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
        if profile is not None and not profile.usable_by(tenant):
            profile_id, profile = None, None  # another tenant's profile is never applied
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

    def layers(self) -> dict[str, ResolvedPolicy]:
        """Every tenant's and user's resolved policy, by a readable name."""
        out = {f"tenant {t}": self.resolve(t) for t in self.file.tenants}
        out.update({f"user {uid}": self.resolve(u.tenant, uid) for uid, u in self.file.users.items()})
        return out

    def role_warnings(self, roles: dict[RoleName, ResolvedRole]) -> list[str]:
        """What `specguard policy check` warns about, one line per role: settings that call on
        a role its model plays badly (the embedded 135M model as critic, meta-critic or
        deliberative guard), or on a role that is off (and what happens instead)."""
        users: dict[RoleName, list[str]] = {}
        for where, resolved in self.layers().items():
            for role, used in role_uses(resolved.settings).items():
                if used:
                    users.setdefault(role, []).append(where)
        out: list[str] = []
        for role, where in users.items():
            r = roles[role]
            who = ", ".join(where)
            if r.off:
                out.append(f"the {role.value} role is off ({r.source}) but {who} use it: "
                           f"{_INSTEAD[role]}.")
            elif is_embedded(r.uri) and role in WEAK_ON_EMBEDDED:
                out.append(f"the {role.value} role is played by the embedded 135M model "
                           f"({r.source}) and {who} use it: {WEAK_ON_EMBEDDED[role]}. Point it at "
                           f"a capable model (--role {role.value}=litellm:<model>) or switch it "
                           "off.")
        return out

    def explain(self, tenant: str, user: str | None = None) -> list[tuple[str, Any, str]]:
        """(setting, value, source) for every leaf setting; unset ones come from 'built-in'."""
        resolved = self.resolve(tenant, user)
        rows = []
        for path, value in _leaves(resolved.settings.model_dump(mode="json")):
            rows.append((path, value, resolved.sources.get(path, "built-in")))
        return rows




_INSTEAD = {
    RoleName.CRITIC: "flagged drafts are refused with the policy's message",
    RoleName.GUARD: "the fast tier decides alone",
    RoleName.META_CRITIC: "no spec updates run",
}


def role_uses(settings: PolicySettings) -> dict[RoleName, bool]:
    """Which roles requests under `settings` call on."""
    return {
        RoleName.CRITIC: settings.critique is not CritiqueMode.OFF,
        RoleName.GUARD: (settings.input_check.enabled and settings.input_check.deliberative) or (
            settings.output_check.enabled and settings.output_check.deliberative),
        RoleName.META_CRITIC: settings.spec_update is not SpecUpdateMode.OFF,
    }


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
