"""The graph that LangGraph Studio and the LangGraph server open (langgraph.json at the
repository root names it): `graph` is the guarded chat graph, the same nodes and routes as
`Runtime` runs (specguard.graph).

Studio sends a run's input (`{"messages": [{"role": "user", "content": "..."}]}`) and a small
JSON context (`StudioContext`: tenant and user); each node gets the per-request `ChatContext`
a `Runtime` builds for that tenant and user. The Runtime is made once per process from the
same SPECGUARD_* variables as `specguard serve` (SPECGUARD_BACKEND, SPECGUARD_API_BASE,
SPECGUARD_POLICY, SPECGUARD_STORE, SPECGUARD_FAST_GUARD, SPECGUARD_UPSTREAM_API_KEY), so a
`.env` next to langgraph.json configures it.
"""

from __future__ import annotations

import functools
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .context import ChatContext
from .graph import build_chat_graph
from .types import Message

_MAX_RUNS = 256  # runs whose context is kept (the oldest go first)


@dataclass
class StudioContext:
    """What a Studio run may choose: whose request it is (the policy resolves the rest)."""

    tenant: str = "default"
    user: str | None = None


_runtime: Any = None
_contexts: OrderedDict[Any, ChatContext] = OrderedDict()


def runtime():
    """The process's Runtime, built from the SPECGUARD_* variables on first use."""
    global _runtime
    if _runtime is None:
        from .cli import build_runtime

        env = os.environ.get
        policy = env("SPECGUARD_POLICY")
        _runtime = build_runtime(env("SPECGUARD_BACKEND"), Path(policy) if policy else None,
                                 env("SPECGUARD_STORE"), env("SPECGUARD_API_BASE"),
                                 upstream_api_key=env("SPECGUARD_UPSTREAM_API_KEY"),
                                 fast_guard=env("SPECGUARD_FAST_GUARD"))
    return _runtime


def _run_key(state: dict, run) -> Any:
    info = getattr(run, "execution_info", None)
    # No run id outside the LangGraph server: the input's messages list, which no node
    # replaces, identifies the run (its entry is dropped when the run ends).
    return getattr(info, "run_id", None) or id(state["messages"])


async def chat_context(state: dict, run) -> ChatContext:
    """The run's ChatContext, built on its first node and kept for the others."""
    key = _run_key(state, run)
    ctx = _contexts.get(key)
    if ctx is None:
        rt = runtime()  # no await before it is set: one Runtime however many runs start
        await rt.load()  # idempotent
        chosen = run.context if isinstance(run.context, StudioContext) else StudioContext(
            **(run.context or {}))
        resolved = rt.policy.resolve(chosen.tenant, chosen.user)
        ctx = _contexts[key] = await rt.contexts.abuild_context(resolved)
        while len(_contexts) > _MAX_RUNS:
            _contexts.popitem(last=False)
    return ctx


def _with_chat_context(fn):
    @functools.wraps(fn)
    async def step(state, runtime):
        ctx = await chat_context(state, runtime)
        key = _run_key(state, runtime)
        # Studio sends messages as JSON objects.
        state = {**state, "messages": [m if isinstance(m, Message) else Message.model_validate(m)
                                       for m in state["messages"]]}
        out = await fn(state, runtime.override(context=ctx))
        if isinstance(out, dict) and "result" in out:  # respond or refuse: the run ends
            _contexts.pop(key, None)
        return out

    return step


graph = build_chat_graph(context_schema=StudioContext, adapt=_with_chat_context)

__all__ = ["StudioContext", "chat_context", "graph", "runtime"]
