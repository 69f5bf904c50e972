"""The guard: checks on inputs and drafts, tiered and escalating."""

from .base import Checker
from .deliberative import DeliberativeChecker, parse_thinkguard
from .tiered import GuardDecision, TieredGuard
from .verdict import CheckRequest, Label, Stage, Tier, Verdict

__all__ = [
    "Checker",
    "CheckRequest",
    "DeliberativeChecker",
    "GuardDecision",
    "Label",
    "Stage",
    "Tier",
    "TieredGuard",
    "Verdict",
    "parse_thinkguard",
]
