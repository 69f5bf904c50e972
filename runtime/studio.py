"""The graphs that LangGraph Studio and the LangGraph server open (langgraph.json at the
repository root names them): `graph` is the guarded chat graph exactly as `Runtime` runs it
(specguard.graph), drawn with its nodes and routes.

Each node reads its per-request `ChatContext` (models, guard, policy, spec) from LangGraph's
context, which a `Runtime` builds; running requests goes through `specguard serve` or the
Python API, and Studio shows the graph they run.
"""

from __future__ import annotations

from .graph import build_chat_graph

graph = build_chat_graph()

__all__ = ["graph"]
