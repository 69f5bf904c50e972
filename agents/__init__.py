"""MetaSC's agents (LangGraph flows, one per module): the spec loop on its own, the
meta-critic, gated spec updates per scope and the offline optimizer. They build on the runtime
(`specguard`: the guarded chat graph, backends, store) and never the other way round: the
runtime takes a `SpecUpdater` through its `SpecUpdates` protocol."""

from .critique_loop import LoopResult, build_spec_loop, run_spec_loop
from .meta_critic import MetaCritic
from .optimize import optimize
from .spec_gate import SpecGate, load_canaries
from .spec_updates import SpecUpdater

__all__ = [
    "LoopResult",
    "MetaCritic",
    "SpecGate",
    "SpecUpdater",
    "build_spec_loop",
    "load_canaries",
    "optimize",
    "run_spec_loop",
]
