"""LangGraph checkpointers by name: where guarded conversations' graph states are kept."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError, require


# The types the guarded chat graph keeps in its state; only these are revived from a checkpoint.
STATE_TYPES = [
    ("specguard.types", "Role"),
    ("specguard.types", "Message"),
    ("specguard.report", "Action"),
    ("specguard.report", "StepRecord"),
    ("specguard.guard.verdict", "Label"),
    ("specguard.guard.verdict", "Stage"),
    ("specguard.guard.verdict", "Tier"),
    ("specguard.guard.verdict", "Verdict"),
    ("specguard.guard.tiered", "GuardDecision"),
    ("specguard.report", "SafetyReport"),
    ("specguard.report", "SpecRef"),
    ("specguard.report", "StageDecision"),
    ("specguard.policy", "StreamProtection"),
    ("specguard.graph", "ChatResult"),
]


def _serde():
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES)


def make_checkpointer(spec: str | None):
    """`none` (default), `memory`, or `sqlite:PATH` (a file, created if missing)."""
    if spec in (None, "", "none"):
        return None
    if spec == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        return InMemorySaver(serde=_serde())
    if spec.startswith("sqlite:"):
        path = Path(spec.removeprefix("sqlite:")).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        aiosqlite = require("aiosqlite", "server")
        require("langgraph.checkpoint.sqlite", "server")
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        # The saver starts the (lazy) connection itself on first use, inside the server's loop.
        return AsyncSqliteSaver(aiosqlite.connect(str(path)), serde=_serde())
    raise ConfigError(f"Unknown checkpointer {spec!r}.", hint="Use none, memory or sqlite:PATH.")
