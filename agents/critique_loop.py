"""MetaSC's critique/revise step as a LangGraph subgraph: critique the draft against the active
spec, then revise it. The chat graph runs it once per round."""

from __future__ import annotations

import time

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

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
