"""The default guard for a backend: the shipped fast tier in front of the deliberative tier on
the same backend (or another one)."""

from __future__ import annotations

from pathlib import Path

from ..backends.base import Backend
from ..policy import PolicySettings
from .deliberative import DeliberativeChecker
from .fast import load_fast_checker
from .taxonomy import load_taxonomy
from .tiered import TieredGuard


def build_guard(
    backend: Backend,
    settings: PolicySettings | None = None,
    *,
    fast_artifact: str | Path | None = None,
    deliberative_format: str = "thinkguard",
    deliberative_backend: Backend | None = None,
    deliberative: bool = True,
) -> TieredGuard | None:
    """The default guard for `backend`.

    - fast tier: `fast_artifact` if given (a shipped name, an artifact folder, or a legacy
      .joblib), else the artifact shipped in specs/guard/; it reads no serving model, so it is
      the same for every backend. None when no artifact is installed: then every check is
      deliberative.
    - deliberative tier: `backend` answering in `deliberative_format` ('thinkguard' by default;
      'llama_guard_3', 'shieldgemma' or 'wildguard' when the backend *is* that guard model),
      over the policy's taxonomy (settings.taxonomy; a request may override it).
      `deliberative_backend` puts the deliberative tier on another model, e.g. Llama Guard 3
      served by vLLM: ``build_guard(local, deliberative_backend=load_backend(
      "litellm:hosted_vllm/meta-llama/Llama-Guard-3-8B", api_base=URL),
      deliberative_format="llama_guard_3")``.
    - `deliberative=False` (the guard role is off, specguard.roles): the fast tier alone; None
      when there is no fast tier either (nothing can check).
    """
    settings = settings or PolicySettings()
    taxonomy = load_taxonomy(settings.taxonomy)
    fast = load_fast_checker(fast_artifact, taxonomy=settings.taxonomy)
    slow = DeliberativeChecker(deliberative_backend or backend, taxonomy=taxonomy,
                               format=deliberative_format) if deliberative else None
    if fast is None and slow is None:
        return None
    return TieredGuard(fast=fast, deliberative=slow)
