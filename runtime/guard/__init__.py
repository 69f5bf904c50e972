"""The guard: checks on inputs and drafts, tiered and escalating.

`build_guard(backend, settings)` gives the default guard for a backend; `TieredGuard.check(
request, settings)` returns a `GuardDecision`. Heavy parts (scikit-learn, joblib) load only
when a fast-tier artifact is used.
"""

from .base import Checker
from .deliberative import DeliberativeChecker, parse_json_verdict, parse_thinkguard
from .factory import build_guard
from .fast import FastArtifact, FastChecker, load_fast_checker
from .formats import (
    GuardFormat,
    LlamaGuard3Format,
    ShieldGemmaFormat,
    ThinkGuardFormat,
    WildGuardFormat,
    get_format,
    label_score,
)
from .taxonomy import Category, Taxonomy, available_taxonomies, load_taxonomy
from .tiered import GuardDecision, TieredGuard
from .verdict import CheckRequest, Label, Stage, Tier, Verdict

__all__ = [
    "Category",
    "Checker",
    "CheckRequest",
    "DeliberativeChecker",
    "FastArtifact",
    "FastChecker",
    "GuardDecision",
    "GuardFormat",
    "Label",
    "LlamaGuard3Format",
    "ShieldGemmaFormat",
    "Stage",
    "Taxonomy",
    "ThinkGuardFormat",
    "Tier",
    "TieredGuard",
    "Verdict",
    "WildGuardFormat",
    "available_taxonomies",
    "build_guard",
    "get_format",
    "label_score",
    "load_fast_checker",
    "load_taxonomy",
    "parse_json_verdict",
    "parse_thinkguard",
]
