from __future__ import annotations

from .._prompts import prompt as _prompt


def prompt(name: str) -> str:
    """The text of agents/prompts/<name>.txt (one file per step that uses it)."""
    return _prompt(name, "specguard.agents")
