"""What every node of the guarded chat graph may read but never changes: the per-request
context (LangGraph's context_schema), resolved before the graph starts."""

from __future__ import annotations

from dataclasses import dataclass, field

from specguard.backends.base import Backend
from specguard.guard import TieredGuard
from specguard.policy import ResolvedPolicy
from specguard.spec import Spec
from specguard.types import GenerationParams


@dataclass(frozen=True)
class ChatContext:
    backend: Backend
    guard: TieredGuard | None
    policy: ResolvedPolicy
    specs: tuple[Spec, ...]
    params: GenerationParams
    guidelines: tuple[str, ...] = field(default_factory=tuple)

    @property
    def spec_text(self) -> str:
        return "\n".join(s.text for s in self.specs)
