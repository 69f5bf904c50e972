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
    ("specguard.revision", "RevisionFate"),
    ("specguard.review", "ReviewRecord"),
    ("specguard.review", "ReviewStatus"),
    ("specguard.policy", "StreamProtection"),
    ("specguard.graph", "ChatResult"),
]


def _serde():
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES)


DEFAULT_MEMORY_THREADS = 1000


def make_checkpointer(spec: str | None):
    """`none` (default), `memory` (the newest 1,000 requests' states; `memory:N` keeps N), or
    `sqlite:PATH` (a file, created if missing)."""
    if spec in (None, "", "none"):
        return None
    if spec == "memory" or spec.startswith("memory:"):
        bound = spec.removeprefix("memory").removeprefix(":") or str(DEFAULT_MEMORY_THREADS)
        if not bound.isdigit() or int(bound) < 1:
            raise ConfigError(f"Unknown checkpointer {spec!r}.",
                              hint="memory:N keeps the newest N requests' states (N >= 1).")
        return bounded_memory_saver(int(bound))
    if spec.startswith("sqlite:"):
        path = Path(spec.removeprefix("sqlite:")).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        aiosqlite = require("aiosqlite", "server")
        require("langgraph.checkpoint.sqlite", "server")
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        # The saver starts the (lazy) connection itself on first use, inside the server's loop.
        return AsyncSqliteSaver(aiosqlite.connect(str(path)), serde=_serde())
    raise ConfigError(f"Unknown checkpointer {spec!r}.", hint="Use none, memory or sqlite:PATH.")


def bounded_memory_saver(max_threads: int = DEFAULT_MEMORY_THREADS):
    """LangGraph's in-memory checkpointer, keeping the newest `max_threads` threads (a thread
    is one request here): when there are more, the oldest tenth goes, so memory stays bounded
    however long the server runs."""
    import threading
    from collections import OrderedDict

    from langgraph.checkpoint.memory import InMemorySaver

    class BoundedMemorySaver(InMemorySaver):
        def __init__(self) -> None:
            super().__init__(serde=_serde())
            self.max_threads = max_threads
            self._order: OrderedDict[str, None] = OrderedDict()
            self._bound = threading.Lock()

        def put(self, config, checkpoint, metadata, new_versions):
            out = super().put(config, checkpoint, metadata, new_versions)
            self._seen(config["configurable"]["thread_id"])
            return out

        def _seen(self, thread_id: str) -> None:
            with self._bound:
                self._order[thread_id] = None
                self._order.move_to_end(thread_id)
                over = len(self._order) - self.max_threads
                if over <= 0:
                    return
                victims = set()
                for _ in range(max(over, self.max_threads // 10)):
                    victims.add(self._order.popitem(last=False)[0])
                for tid in victims:
                    self.storage.pop(tid, None)
                for key in [k for k in self.writes if k[0] in victims]:
                    del self.writes[key]
                for key in [k for k in self.blobs if k[0] in victims]:
                    del self.blobs[key]

    return BoundedMemorySaver()
