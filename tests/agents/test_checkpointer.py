"""The guarded chat graph's state survives in a real SQLite checkpoint file."""

from __future__ import annotations

import sqlite3

import pytest

from specguard.backends.scripted import ScriptedBackend
from specguard.checkpoint import STATE_TYPES, make_checkpointer
from specguard.core import Runtime
from specguard.errors import ConfigError
from specguard.guard import CheckRequest, GuardDecision, Label, Tier, TieredGuard, Verdict
from specguard.store import Store
from specguard.types import user


class AllowAll:
    tier = Tier.FAST
    name = "allow-all"

    async def check(self, request: CheckRequest) -> Verdict:
        return Verdict(stage=request.stage, label=Label.SAFE, tier=self.tier, checker=self.name)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_each_request_is_a_thread_whose_state_can_be_read_back(tmp_path, kind):
    spec = "memory" if kind == "memory" else f"sqlite:{tmp_path}/threads.db"
    saver = make_checkpointer(spec)
    rt = Runtime(ScriptedBackend(["kept answer"]), store=Store(":memory:"),
                 guard=TieredGuard(fast=AllowAll()), checkpointer=saver)
    result = await rt.chat([user("hi")], request_id="req-42")
    snap = await rt.graph.aget_state({"configurable": {"thread_id": "req-42"}})
    assert snap.values["result"].answer == result.answer == "kept answer"
    assert isinstance(snap.values["input_decision"], GuardDecision)
    # every specguard type kept in the state is on the allowlist the serializer revives
    kept = {(type(o).__module__, type(o).__name__) for o in _walk(snap.values)
            if type(o).__module__.startswith("specguard")}
    assert kept and kept <= set(STATE_TYPES)
    if kind == "sqlite":
        await saver.conn.close()
        rows = sqlite3.connect(tmp_path / "threads.db").execute(
            "select count(*) from checkpoints where thread_id='req-42'").fetchone()[0]
        assert rows > 0


def _walk(value):
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _walk(v)
    elif hasattr(value, "__dict__") and type(value).__module__.startswith("specguard"):
        for v in vars(value).values():
            yield from _walk(v)


def test_unknown_checkpointer_is_a_config_error():
    with pytest.raises(ConfigError, match="sqlite:PATH"):
        make_checkpointer("redis://x")
