from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def prompt(name: str, package: str = "specguard") -> str:
    """The text of <package>/prompts/<name>.txt (one file per step that uses it)."""
    return (resources.files(package) / "prompts" / f"{name}.txt").read_text("utf-8").strip()
