"""The guard: checks on inputs and drafts, tiered and escalating.

`build_guard(backend, settings)` gives the default guard for a backend; `TieredGuard.check(
request, settings)` returns a `GuardDecision`. The fast tier (a trained artifact over small
sentence encoders, the same for every backend) loads only when a guard is built.
"""

from .artifact import GuardArtifact
from .base import Checker
from .conversation import Segment, Unit, input_segments, request_units
from .deliberative import DeliberativeChecker, parse_json_verdict, parse_thinkguard
from .factory import build_guard
from .fast import DEFAULT_ARTIFACT, FastChecker, UnitScore, load_artifact, load_fast_checker
from .formats import (
    GptOssSafeguardFormat,
    GraniteGuardianFormat,
    GuardFormat,
    LlamaGuard3Format,
    LlamaGuard4Format,
    Qwen3GuardFormat,
    ShieldGemmaFormat,
    ThinkGuardFormat,
    WildGuardFormat,
    get_format,
    label_score,
)
from .policy_doc import PolicyDoc, guard_policy, parse_policy, render_policy
from .placement import PLACEMENTS, place
from .taxonomy import Category, Taxonomy, available_taxonomies, load_taxonomy
from .tiered import GuardDecision, TieredGuard
from .verdict import CheckRequest, Label, Stage, Tier, Verdict

__all__ = [
    "Category",
    "Checker",
    "CheckRequest",
    "DEFAULT_ARTIFACT",
    "DeliberativeChecker",
    "FastChecker",
    "GuardArtifact",
    "GuardDecision",
    "GptOssSafeguardFormat",
    "GraniteGuardianFormat",
    "GuardFormat",
    "Label",
    "LlamaGuard3Format",
    "LlamaGuard4Format",
    "PolicyDoc",
    "Qwen3GuardFormat",
    "PLACEMENTS",
    "Segment",
    "ShieldGemmaFormat",
    "Stage",
    "Taxonomy",
    "ThinkGuardFormat",
    "Tier",
    "TieredGuard",
    "Unit",
    "UnitScore",
    "Verdict",
    "WildGuardFormat",
    "available_taxonomies",
    "build_guard",
    "get_format",
    "guard_policy",
    "parse_policy",
    "render_policy",
    "input_segments",
    "label_score",
    "load_artifact",
    "load_fast_checker",
    "load_taxonomy",
    "parse_json_verdict",
    "parse_thinkguard",
    "place",
    "request_units",
]
