"""The guarded chat graph:

    input_check --unsafe--> refuse
        | safe
    generate -> output_check --flagged / critique always--> critique_loop -> output_check
                    | pass                                   (bounded rounds)
                 respond

Every node returns only what it changes; routers return Literal names so the drawn graph is
right; per-request read-only data (backend, guard, policy, specs) is the context.
"""

from __future__ import annotations

import time
from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from specguard.guard import CheckRequest, GuardDecision, Stage
from specguard.policy import CritiqueMode, ViolationAction
from specguard.profiles import CATEGORY as PROFILE_CATEGORY
from specguard.report import Action, StepRecord
from specguard.types import Message, Role

from .context import ChatContext
from .critique_loop import build_critique_loop
from .state import ChatState


def with_policy_system_prompt(messages: list[Message], system_prompt: str) -> list[Message]:
    """Put the policy's system prompt first; a client's own system text follows it in the same
    system turn (many chat templates accept only one)."""
    client_system = [m.content for m in messages if m.role == Role.SYSTEM]
    rest = [m for m in messages if m.role != Role.SYSTEM]
    text = "\n\n".join([system_prompt, *client_system])
    return [Message(role=Role.SYSTEM, content=text), *rest]


def generation_system_prompt(ctx: ChatContext) -> str:
    """The policy's system prompt; for a user with a profile, followed by U-SafeBench's remedy:
    "Consider <profile>. You may decline if it raises safety concerns, including: <list>"."""
    prompt = ctx.policy.settings.system_prompt
    if ctx.policy.profile is not None:
        from specguard.profiles import remedy_prompt

        prompt += "\n\n" + remedy_prompt(ctx.policy.profile.text, ctx.guidelines)
    return prompt


async def _check(ctx: ChatContext, stage: Stage, messages, response=None) -> tuple[GuardDecision, StepRecord]:
    settings = ctx.policy.settings.input_check if stage is Stage.INPUT else ctx.policy.settings.output_check
    start = time.perf_counter()
    request = CheckRequest(
        stage=stage,
        messages=messages,
        response=response,
        profile=ctx.policy.profile,
        guidelines=list(ctx.guidelines),
    )
    decision = await ctx.guard.check(request, settings)
    step = StepRecord(
        name=f"{stage.value}_check",
        ms=(time.perf_counter() - start) * 1000,
        model_calls=sum(v.model_calls for v in decision.verdicts),
        prompt_tokens=sum(v.prompt_tokens for v in decision.verdicts),
        completion_tokens=sum(v.completion_tokens for v in decision.verdicts),
    )
    return decision, step


def _checks_on(ctx: ChatContext, stage: Stage) -> bool:
    settings = ctx.policy.settings.input_check if stage is Stage.INPUT else ctx.policy.settings.output_check
    return ctx.guard is not None and settings.enabled


async def input_check(state: ChatState, runtime: Runtime[ChatContext]) -> dict:
    ctx = runtime.context
    if not _checks_on(ctx, Stage.INPUT):
        return {}
    decision, step = await _check(ctx, Stage.INPUT, state["messages"])
    return {"input_decision": decision, "verdicts": decision.verdicts, "steps": [step]}


async def route_input(state: ChatState) -> Literal["refuse", "generate"]:
    decision = state.get("input_decision")
    return "refuse" if decision is not None and decision.blocked else "generate"


async def generate(state: ChatState, runtime: Runtime[ChatContext]) -> dict:
    ctx = runtime.context
    start = time.perf_counter()
    messages = with_policy_system_prompt(state["messages"], generation_system_prompt(ctx))
    out = await ctx.backend.complete(messages, ctx.params)
    step = StepRecord(
        name="generate",
        ms=(time.perf_counter() - start) * 1000,
        model_calls=1,
        prompt_tokens=out.usage.prompt_tokens,
        completion_tokens=out.usage.completion_tokens,
    )
    return {
        "draft": out.text,
        "transcript": [Message(role=Role.ASSISTANT, content=out.text)],
        "steps": [step],
    }


async def output_check(state: ChatState, runtime: Runtime[ChatContext]) -> dict:
    ctx = runtime.context
    if not _checks_on(ctx, Stage.OUTPUT):
        return {}
    decision, step = await _check(ctx, Stage.OUTPUT, state["messages"], state["draft"])
    return {"output_decision": decision, "verdicts": decision.verdicts, "steps": [step]}


async def route_output(state: ChatState, runtime: Runtime[ChatContext]) -> Literal["critique_loop", "refuse", "respond"]:
    settings = runtime.context.policy.settings
    rounds = state.get("rounds", 0)
    can_revise = settings.critique is not CritiqueMode.OFF and rounds < settings.critique_rounds
    decision = state.get("output_decision")
    if decision is not None and decision.blocked:
        if settings.on_violation is ViolationAction.REVISE and can_revise:
            return "critique_loop"
        return "refuse"
    if settings.critique is CritiqueMode.ALWAYS and can_revise:
        return "critique_loop"
    return "respond"


_CRITIQUE_LOOP = build_critique_loop()


async def critique_loop(state: ChatState, runtime: Runtime[ChatContext]) -> dict:
    """Run the critique/revise subgraph on its own copy of the state and return only what it
    added (a subgraph sharing our reducers would otherwise re-append the whole lists)."""
    seen = len(state.get("transcript", []))
    out = await _CRITIQUE_LOOP.ainvoke(
        {
            "messages": state["messages"],
            "draft": state["draft"],
            "transcript": state.get("transcript", []),
            "rounds": state.get("rounds", 0),
        },
        context=runtime.context,
    )
    return {
        "draft": out["draft"],
        "rounds": out["rounds"],
        "transcript": out["transcript"][seen:],
        "steps": out.get("steps", []),
    }


async def refuse(state: ChatState, runtime: Runtime[ChatContext]) -> dict:
    return {"answer": refusal_text(runtime.context, state), "action": Action.REFUSED}


async def respond(state: ChatState) -> dict:
    action = Action.REVISED if state.get("rounds", 0) else Action.ALLOWED
    return {"answer": state["draft"], "action": action}


def refusal_text(ctx: ChatContext, state: ChatState) -> str:
    """The policy's refusal message; when the user's own profile is the reason, it says so
    (in the user's words), since the same request may be fine for someone else."""
    message = ctx.policy.settings.refusal_message
    decision = state.get("output_decision") or state.get("input_decision")
    if decision is None or not decision.categories:
        return message
    if PROFILE_CATEGORY in decision.categories and ctx.policy.profile is not None:
        return (f"{message} Given what you told us about yourself (\"{ctx.policy.profile.text}\"), "
                "this could be unsafe for you in particular.")
    return f"{message} (flagged: {', '.join(decision.categories)})"


def build_chat_graph(checkpointer=None):
    g = StateGraph(ChatState, context_schema=ChatContext)
    g.add_node("input_check", input_check)
    g.add_node("generate", generate)
    g.add_node("output_check", output_check)
    g.add_node("critique_loop", critique_loop)
    g.add_node("refuse", refuse)
    g.add_node("respond", respond)
    g.add_edge(START, "input_check")
    g.add_conditional_edges("input_check", route_input)
    g.add_edge("generate", "output_check")
    g.add_conditional_edges("output_check", route_output)
    g.add_edge("critique_loop", "output_check")
    g.add_edge("refuse", END)
    g.add_edge("respond", END)
    return g.compile(checkpointer=checkpointer)
