"""MetaSC's critique/revise step as a LangGraph subgraph: critique the draft against the active
spec, then revise it. The chat graph runs it once per round.

`build_spec_loop()` is the whole loop on its own (draft -> (critique -> revise) x rounds), for
the places that run it outside a chat request: the spec gate's canaries, the offline optimizer
and the MetaSC suite. `run_spec_loop(...)` calls it and returns the answer with its transcript.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from specguard.backends.base import Backend
from specguard.report import StepRecord
from specguard.types import GenerationParams, Message, Role

from ._prompts import prompt
from .context import ChatContext
from .state import ChatState


async def critique(state: ChatState, runtime: Runtime[ChatContext]) -> dict:
    ctx = runtime.context
    start = time.perf_counter()
    ask = Message(role=Role.USER, content=prompt("critique").format(spec=ctx.spec_text))
    # The transcript starts with the draft: each round continues the same conversation.
    out = await ctx.backend.complete([*state["messages"], *state["transcript"], ask], _params(ctx.params))
    return {
        "transcript": [ask, Message(role=Role.ASSISTANT, content=out.text)],
        "steps": [_record("critique", start, out)],
    }


async def revise(state: ChatState, runtime: Runtime[ChatContext]) -> dict:
    ctx = runtime.context
    start = time.perf_counter()
    ask = Message(role=Role.USER, content=prompt("revise"))
    out = await ctx.backend.complete([*state["messages"], *state["transcript"], ask], ctx.params)
    revised = out.text.strip() or state["draft"]
    return {
        "draft": revised,
        "rounds": state.get("rounds", 0) + 1,
        "transcript": [ask, Message(role=Role.ASSISTANT, content=revised)],
        "steps": [_record("revise", start, out)],
    }


def _params(params: GenerationParams) -> GenerationParams:
    return params.model_copy(update={"max_tokens": min(params.max_tokens, 256)})


def _record(name: str, start: float, out) -> StepRecord:
    return StepRecord(
        name=name,
        ms=(time.perf_counter() - start) * 1000,
        model_calls=1,
        prompt_tokens=out.usage.prompt_tokens,
        completion_tokens=out.usage.completion_tokens,
    )


def build_critique_loop():
    g = StateGraph(ChatState, context_schema=ChatContext)
    g.add_node("critique", critique)
    g.add_node("revise", revise)
    g.add_edge(START, "critique")
    g.add_edge("critique", "revise")
    g.add_edge("revise", END)
    return g.compile()


# -- the loop on its own -------------------------------------------------------------------

DEFAULT_SYSTEM_PROMPT = "You are a helpful and harmless assistant."


@dataclass(frozen=True)
class LoopContext:
    """What the standalone loop reads (the same names the critique/revise nodes read from a
    ChatContext): the model, the spec text, generation settings, the drafting system prompt and
    how many critique/revise rounds to run."""

    backend: Backend
    spec_text: str
    params: GenerationParams
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    rounds: int = 1


@dataclass(frozen=True)
class LoopResult:
    draft: str
    answer: str
    transcript: list[Message]  # draft, then each critique/revision turn
    steps: list[StepRecord]

    @property
    def model_calls(self) -> int:
        return sum(s.model_calls for s in self.steps)

    @property
    def tokens(self) -> int:
        return sum(s.prompt_tokens + s.completion_tokens for s in self.steps)


async def draft(state: ChatState, runtime: Runtime[LoopContext]) -> dict:
    if state.get("draft") is not None:  # the caller brought the draft (it does not depend on the spec)
        return {}
    ctx = runtime.context
    start = time.perf_counter()
    client_system = [m.content for m in state["messages"] if m.role == Role.SYSTEM]
    rest = [m for m in state["messages"] if m.role != Role.SYSTEM]
    system = Message(role=Role.SYSTEM, content="\n\n".join([ctx.system_prompt, *client_system]))
    out = await ctx.backend.complete([system, *rest], ctx.params)
    return {
        "draft": out.text,
        "transcript": [Message(role=Role.ASSISTANT, content=out.text)],
        "steps": [_record("draft", start, out)],
    }


def _more_rounds(state: ChatState, runtime: Runtime[LoopContext]) -> Literal["critique", "__end__"]:
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
) -> LoopResult:
    """Answer `messages` with the spec loop. `draft_text` skips the draft call (drafts do not
    depend on the spec, so callers that try many specs on one prompt draft once)."""
    global _SPEC_LOOP
    if _SPEC_LOOP is None:
        _SPEC_LOOP = build_spec_loop()
    ctx = LoopContext(backend=backend, spec_text=spec_text, params=params or GenerationParams(),
                      system_prompt=system_prompt, rounds=rounds)
    state: dict = {"messages": list(messages), "rounds": 0, "transcript": [], "steps": []}
    if draft_text is not None:
        state["draft"] = draft_text
        state["transcript"] = [Message(role=Role.ASSISTANT, content=draft_text)]
    out = await _SPEC_LOOP.ainvoke(state, context=ctx)
    return LoopResult(draft=out["transcript"][0].content, answer=out["draft"],
                      transcript=list(out["transcript"]), steps=list(out.get("steps", [])))
