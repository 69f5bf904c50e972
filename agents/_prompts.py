from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def prompt(name: str) -> str:
    """The text of agents/prompts/<name>.txt (one file per step that uses it)."""
    return (resources.files("specguard.agents") / "prompts" / f"{name}.txt").read_text("utf-8").strip()
