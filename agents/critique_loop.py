"""MetaSC's spec loop on its own: draft -> (critique -> revise) x rounds, one compiled graph,
for the places that run it outside a chat request: the spec gate's canaries, the offline
optimizer and the MetaSC suite. Its critique and revise nodes are the guarded chat graph's own
(specguard.graph), so a spec is judged by the same steps that serve it.
`run_spec_loop(...)` runs it and returns the answer with its transcript.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime as LangGraphRuntime

from ..backends.base import Backend
from ..graph import ChatState, critique, revise, with_policy_system_prompt
from ..report import StepRecord
from ..types import Cost, GenerationParams, Message, assistant

# -- the loop on its own -------------------------------------------------------------------

DEFAULT_SYSTEM_PROMPT = "You are a helpful and harmless assistant."


@dataclass(frozen=True)
class LoopContext:
    """What the standalone loop reads (the same names the critique/revise nodes read from a
    ChatContext): the drafting model, the critic role's model (critique and revision), the
    spec text, generation settings, the drafting system prompt and how many critique/revise
    rounds to run. The loop has no guard: each round's revision is its answer (MetaSC as
    published); serving puts revisions through the revision gate (specguard.revision)."""

    backend: Backend
    spec_text: str
    params: GenerationParams
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    rounds: int = 1
    critic: Backend | None = None  # None: the drafting model critiques its own answers

    def __post_init__(self) -> None:
        if self.critic is None:
            object.__setattr__(self, "critic", self.backend)


@dataclass(frozen=True)
class LoopResult:
    draft: str
    answer: str
    transcript: list[Message]  # draft, then each critique/revision turn
    steps: list[StepRecord]

    @property
    def cost(self) -> Cost:
        return Cost.total(self.steps)


async def draft(state: ChatState, runtime: LangGraphRuntime[LoopContext]) -> dict:
    if state.get("draft") is not None:  # the caller brought the draft (it does not depend on the spec)
        return {}
    ctx = runtime.context
    start = time.perf_counter()
    out = await ctx.backend.complete(with_policy_system_prompt(state["messages"], ctx.system_prompt),
                                     ctx.params)
    return {"draft": out.text, "transcript": [assistant(out.text)],
            "steps": [StepRecord.timed("draft", start, Cost.of(out.usage))]}


async def _more_rounds(state: ChatState, runtime: LangGraphRuntime[LoopContext]) -> Literal["critique", "__end__"]:
    return "critique" if state.get("rounds", 0) < runtime.context.rounds else END


def build_spec_loop():
    """draft -> (critique -> revise) x context.rounds, as one compiled graph."""
    g = StateGraph(ChatState, context_schema=LoopContext)
    g.add_node("draft", draft)
    g.add_node("critique", critique)
    g.add_node("revise", revise)
    g.add_edge(START, "draft")
    g.add_conditional_edges("draft", _more_rounds)
    g.add_edge("critique", "revise")
    g.add_conditional_edges("revise", _more_rounds)
    return g.compile()


_SPEC_LOOP = None


async def run_spec_loop(
    backend: Backend,
    messages: Sequence[Message],
    spec_text: str,
    *,
    rounds: int = 1,
    params: GenerationParams | None = None,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    draft_text: str | None = None,
    critic: Backend | None = None,
) -> LoopResult:
    """Answer `messages` with the spec loop. `draft_text` skips the draft call (drafts do not
    depend on the spec, so callers that try many specs on one prompt draft once); `critic`
    critiques and revises (default: `backend`)."""
    global _SPEC_LOOP
    if _SPEC_LOOP is None:
        _SPEC_LOOP = build_spec_loop()
    ctx = LoopContext(backend=backend, spec_text=spec_text, params=params or GenerationParams(),
                      system_prompt=system_prompt, rounds=rounds, critic=critic)
    state: dict = {"messages": list(messages), "rounds": 0, "transcript": [], "steps": []}
    if draft_text is not None:
        state["draft"] = draft_text
        state["transcript"] = [assistant(draft_text)]
    out = await _SPEC_LOOP.ainvoke(state, context=ctx)
    answer = out.get("revision") if out.get("rounds", 0) else out["draft"]
    return LoopResult(draft=out["transcript"][0].content, answer=answer if answer is not None else "",
                      transcript=list(out["transcript"]), steps=list(out.get("steps", [])))
