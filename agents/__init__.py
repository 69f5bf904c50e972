"""LangGraph flows, one graph per module: the guarded chat graph, the spec loop and the
MetaSC spec updates built on it."""

from .chat_graph import build_chat_graph
from .context import ChatContext
from .critique_loop import build_critique_loop, run_spec_loop
from .meta_critic import MetaCritic
from .optimize import optimize
from .spec_gate import SpecGate, load_canaries
from .spec_updates import SpecUpdater
from .state import ChatState

__all__ = [
    "ChatContext",
    "ChatState",
    "MetaCritic",
    "SpecGate",
    "SpecUpdater",
    "build_chat_graph",
    "build_critique_loop",
    "load_canaries",
    "optimize",
    "run_spec_loop",
]
