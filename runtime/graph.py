"""The guarded chat graph: the request, streaming or not.

    input_check --unsafe--> refuse
        | safe
    generate --flagged while streaming (chunked)--> critique | refuse
        |
    output_check --flagged, or critique always--> critique -> revise -> check_revision
        | pass                                                             |
    respond <--accepted and passing / rejected, draft not flagged----------+
                 (accepted but still flagged: another round, or refuse; rejected and the
                  draft flagged: refuse)

A step the policy switches off is routed around (no input check: START -> generate; no output
check and no critique: generate -> respond), so a pass-through policy runs generate and
respond only: the same graph with nothing to decide. Critique and revision run on the critic
role's model (specguard.roles); with the critic role off, a flagged draft is refused.

A revision replaces the draft only if it passes the revision gate (specguard.revision): safer
on the output check than the draft, still an answer (the trained compliance judge), on topic.
Otherwise the draft stands: a flagged draft is refused, an unflagged one is kept. Each
revision's fate and why is in the report (`SafetyReport.revisions`).

`Runtime.chat` runs it with `ainvoke`, `Runtime.stream` with `astream(stream_mode=["custom",
"updates"])`: the same nodes, the same routes. Text reaches a streaming client only through
the graph's stream writer, and only as the context's output protection allows:

- buffer: `generate` completes the draft; `respond` (or `refuse`) sends the final answer;
- chunked: `generate` streams the draft, checks it every `stream_holdback_chars` and sends
  what passed except the last `stream_holdback_chars` (a check may still flag them); a
  flagged prefix stops generation and goes where a flagged draft goes (critique or refuse);
- detox / pass: `generate` sends tokens as generated (detox decoding is itself the
  protection; pass has nothing to check); a later flag is reported, never hidden.

Text that went out is never recalled: a revision or refusal after it follows a paragraph
break. `respond` and `refuse` put the ChatResult (with its SafetyReport) into the state. Every node returns only
what it changes; routers return Literal names so the drawn graph (`specguard graph --draw`)
is the request; per-request read-only data is the context (specguard.context).
"""

from __future__ import annotations

import operator
import time
from typing import Annotated, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel
from langgraph.runtime import Runtime as LangGraphRuntime

from ._prompts import prompt
from .observability import traced_node
from .context import ChatContext
from .guard import GuardDecision, Label, Stage, Tier, Verdict
from .policy import CritiqueMode, Review, StreamProtection, ViolationAction
from .profiles import CATEGORY as PROFILE_CATEGORY
from .profiles import profile_match, profile_refusal
from .report import Action, SafetyReport, SpecRef, StageDecision, StepRecord
from .review import ReviewRecord
from .revision import RevisionFate
from .types import Cost, GenerationParams, Message, Role, Usage, assistant

SEPARATOR = "\n\n"  # between text already sent and what replaces the rest of it
PIECE = 16  # characters per event when a finished answer is streamed


class ChatResult(BaseModel):
    """What a request ends with: the answer the client received in all, the action, why the
    answer ended, and the safety report."""

    answer: str
    action: Action
    report: SafetyReport
    finish_reason: str = "stop"


class ChatState(TypedDict, total=False):
    messages: list[Message]  # the conversation as the client sent it
    draft: str  # the current answer candidate
    released: str  # what a streaming client has received so far (it only ever grows)
    finish_reason: str  # why generation stopped (the model's word)
    input_decision: GuardDecision
    output_decision: GuardDecision
    flagged_after_release: bool
    transcript: Annotated[list[Message], operator.add]  # draft/critique/revision turns
    rounds: int  # critique/revise rounds done
    revision: str  # the latest revision, before the revision gate decides on it
    revisions: Annotated[list[RevisionFate], operator.add]  # each revision's fate
    reviews: Annotated[list[ReviewRecord], operator.add]  # asynchronous reviews (specguard.review)
    verdicts: Annotated[list[Verdict], operator.add]
    steps: Annotated[list[StepRecord], operator.add]
    notes: Annotated[list[str], operator.add]
    result: ChatResult  # set by respond or refuse, the last step


Run = LangGraphRuntime[ChatContext]  # what LangGraph hands a node (not specguard's Runtime)


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
    text = ctx.policy.settings.system_prompt
    if ctx.policy.profile is not None:
        from .profiles import remedy_prompt

        text += "\n\n" + remedy_prompt(ctx.policy.profile.text, ctx.guidelines)
    return text


def _checked(stage: Stage, decision: GuardDecision, step: StepRecord,
             ctx: ChatContext | None = None) -> dict:
    key = "input_decision" if stage is Stage.INPUT else "output_decision"
    update: dict = {key: decision, "verdicts": decision.verdicts, "steps": [step]}
    notes = []
    if decision.undecided:
        notes.append(f"{stage.value} check could not decide; the policy's on_undecided applied")
    if decision.deferred:
        notes.append(f"{stage.value} check: the fast tier was unsure and decided now; the "
                     "deliberative role reviews it asynchronously")
        record = ctx.reviews.get(decision.review) if ctx and ctx.reviews and decision.review else None
        if record is not None:
            update["reviews"] = [record.model_copy()]  # as it stood when the answer went out
    if notes:
        update["notes"] = notes
    return update


# -- nodes -----------------------------------------------------------------------------------


async def input_check(state: ChatState, runtime: Run) -> dict:
    """The input check; first, the conversation's earlier turns that an asynchronous review
    found unsafe (specguard.review) refuse this turn."""
    ctx = runtime.context
    earlier = ([r.model_copy() for r in ctx.reviews.earlier(ctx.policy.tenant, ctx.policy.user,
                                                          state["messages"])]
               if ctx.reviews is not None else [])
    unsafe = [r for r in earlier if r.unsafe]
    if unsafe:
        decision = GuardDecision(label=Label.UNSAFE, decided_by=Tier.DELIBERATIVE,
                                 categories=list(dict.fromkeys(c for r in unsafe for c in r.categories)))
        return {"input_decision": decision, "reviews": earlier, "notes": [
            f"an earlier turn of this conversation (request {unsafe[0].request_id}, "
            f"{unsafe[0].stage.value}) was found unsafe on asynchronous review"]}
    update = {"reviews": earlier} if earlier else {}
    if not ctx.checks_on(Stage.INPUT):
        return update
    checked = _checked(Stage.INPUT, *await ctx.check(Stage.INPUT, state["messages"]), ctx)
    if earlier:
        checked["reviews"] = [*earlier, *checked.get("reviews", [])]
    return checked


async def generate(state: ChatState, runtime: Run) -> dict:
    """The draft. Under buffer it is completed in one call; otherwise it streams, and what may
    go out goes out through the stream writer (see the module docstring)."""
    ctx = runtime.context
    start = time.perf_counter()
    messages = with_policy_system_prompt(state["messages"], generation_system_prompt(ctx))
    if ctx.release is StreamProtection.BUFFER:
        out = await ctx.backend.complete(messages, ctx.params)
        step = StepRecord.timed("generate", start, Cost.of(out.usage))
        return {"draft": out.text, "finish_reason": out.finish_reason, "steps": [step],
                "transcript": [assistant(out.text)]}

    write = runtime.stream_writer
    chunked = ctx.release is StreamProtection.CHUNKED
    holdback = ctx.policy.settings.stream_holdback_chars
    draft = released = ""
    checked = 0  # length of the longest prefix checked so far
    usage, finish = Usage(), "stop"
    update: dict = {"verdicts": [], "steps": [], "notes": [], "reviews": []}
    check_ms = 0.0
    stream = ctx.backend.stream(messages, ctx.params)
    try:
        async for chunk in stream:
            draft += chunk.text
            usage = chunk.usage or usage
            finish = chunk.finish_reason or finish
            if not chunked:
                if chunk.text:
                    write({"text": chunk.text})
                released = draft
            elif len(draft) - checked >= max(1, holdback):
                decision, step = await ctx.check(Stage.OUTPUT, state["messages"], draft)
                check_ms += step.ms
                checked = len(draft)
                for key, value in _checked(Stage.OUTPUT, decision, step, ctx).items():
                    update[key] = update[key] + value if isinstance(value, list) else value
                if decision.blocked:
                    break  # the flagged text stays unsent; generation stops here
                safe = len(draft) - holdback
                if safe > len(released):
                    write({"text": draft[len(released):safe]})
                    released = draft[:safe]
    finally:
        await stream.aclose()
    step = StepRecord.timed("generate", start, Cost.of(usage))
    step.ms -= check_ms  # the checks in between have their own records
    update.update(draft=draft, released=released, finish_reason=finish,
                  transcript=[assistant(draft)])
    update["steps"] = [step, *update["steps"]]
    return {k: v for k, v in update.items() if v != []}


async def output_check(state: ChatState, runtime: Run) -> dict:
    ctx = runtime.context
    if not ctx.checks_on(Stage.OUTPUT):
        return {}
    decision, step = await ctx.check(Stage.OUTPUT, state["messages"], state["draft"])
    update = _checked(Stage.OUTPUT, decision, step, ctx)
    if decision.blocked and state.get("released") and state["released"] == state["draft"]:
        update["flagged_after_release"] = True
        update["notes"] = [*update.get("notes", []),
                           "the output check flagged text the client had already received "
                           f"({ctx.protection.value} streams tokens as they are generated)"]
    return update


async def critique(state: ChatState, runtime: Run) -> dict:
    """MetaSC's critique, by the critic role's model: ways the answer could improve on the
    active spec. The transcript starts with the draft, so each round continues the same
    conversation (and critiques the last accepted answer)."""
    ctx = runtime.context
    start = time.perf_counter()
    ask = Message(role=Role.USER, content=prompt("critique").format(spec=ctx.spec_text))
    out = await ctx.critic.complete([*state["messages"], *state["transcript"], ask],
                                    _critique_params(ctx.params))
    return {"transcript": [ask, assistant(out.text)],
            "steps": [StepRecord.timed("critique", start, Cost.of(out.usage))]}


async def revise(state: ChatState, runtime: Run) -> dict:
    """MetaSC's revision, by the critic role's model: the answer alone, rewritten after the
    critique. It is a candidate: check_revision decides whether it replaces the draft."""
    ctx = runtime.context
    start = time.perf_counter()
    ask = Message(role=Role.USER, content=prompt("revise"))
    out = await ctx.critic.complete([*state["messages"], *state["transcript"], ask], ctx.params)
    revised = out.text.strip()
    return {"revision": revised, "rounds": state.get("rounds", 0) + 1,
            "transcript": [ask, assistant(revised)],
            "steps": [StepRecord.timed("revise", start, Cost.of(out.usage))]}


async def check_revision(state: ChatState, runtime: Run) -> dict:
    """The revision gate: the output check on the revision, then specguard.revision decides
    whether it replaces the draft (safer than the draft, still an answer, on topic)."""
    ctx = runtime.context
    revision = state["revision"]
    update: dict = {"steps": [], "verdicts": [], "notes": [], "reviews": []}
    decision = None
    if ctx.checks_on(Stage.OUTPUT):
        decision, step = await ctx.check(Stage.OUTPUT, state["messages"], revision)
        for key, value in _checked(Stage.OUTPUT, decision, step, ctx).items():
            if key in update:
                update[key] = update[key] + value
    start = time.perf_counter()
    n = state.get("rounds", 0)
    request = _request_text(state["messages"])
    if ctx.revision_gate is None:
        fate = RevisionFate(round=n, accepted=False, reasons=["no revision gate is configured"])
    else:
        fate = await ctx.revision_gate.judge(
            index=n, request=request, revision=revision, draft=state["draft"],
            draft_decision=state.get("output_decision"), revision_decision=decision,
            floor=ctx.policy.settings.revision_topic_floor)
    update["steps"].append(StepRecord.timed("revision_gate", start))
    update["revisions"] = [fate]
    if fate.accepted:
        update["draft"] = revision
        if decision is not None:
            update["output_decision"] = decision
    else:
        kept = "refused" if _flagged(state) else "kept"
        update["notes"].append(f"revision {n} rejected ({'; '.join(fate.reasons)}); "
                               f"the draft is {kept}")
    return {k: v for k, v in update.items() if v != []}


async def refuse(state: ChatState, runtime: Run) -> dict:
    ctx = runtime.context
    released = state.get("released", "")
    tail = (SEPARATOR if released else "") + refusal_text(ctx, state)
    _send(runtime, tail)
    s = ctx.policy.settings
    if (_flagged(state) and ctx.critic is None and s.on_violation is ViolationAction.REVISE
            and s.critique is not CritiqueMode.OFF):
        state = {**state, "notes": [*state.get("notes", []), "the critic role is off: the "
                                    "flagged draft is refused instead of revised"]}
    return _finish(ctx, state, answer=released + tail, action=Action.REFUSED,
                   finish_reason="content_filter")


async def respond(state: ChatState, runtime: Run) -> dict:
    ctx = runtime.context
    draft, released = state["draft"], state.get("released", "")
    # What is still unsent: the rest of the draft, or (a revision after text already out)
    # the whole revision after a paragraph break.
    tail = draft[len(released):] if draft.startswith(released) else SEPARATOR + draft
    _send(runtime, tail)
    flagged = state.get("flagged_after_release", False)
    revised = any(f.accepted for f in state.get("revisions", []))
    return _finish(ctx, state, answer=released + tail,
                   action=Action.REVISED if revised else Action.ALLOWED,
                   finish_reason="content_filter" if flagged else state.get("finish_reason", "stop"))


# -- routes ----------------------------------------------------------------------------------


async def route_start(state: ChatState, runtime: Run) -> Literal["input_check", "generate"]:
    """A policy without input checks (and no asynchronous review that could have found an
    earlier turn unsafe) has nothing to decide before generation."""
    ctx = runtime.context
    reviewed = ctx.reviews is not None and any(
        ctx.check_settings(s).review is Review.ASYNC for s in (Stage.INPUT, Stage.OUTPUT))
    return "input_check" if ctx.checks_on(Stage.INPUT) or reviewed else "generate"


async def route_input(state: ChatState) -> Literal["refuse", "generate"]:
    decision = state.get("input_decision")
    return "refuse" if decision is not None and decision.blocked else "generate"


async def route_draft(state: ChatState, runtime: Run
                      ) -> Literal["output_check", "critique", "refuse", "respond"]:
    """After generation: a draft flagged while it streamed goes where a flagged draft goes; a
    policy with no output check and no critique has nothing left to decide."""
    ctx = runtime.context
    decision = state.get("output_decision")
    if decision is not None and decision.blocked:
        return _on_violation(state, ctx)
    if ctx.checks_on(Stage.OUTPUT) or ctx.policy.settings.critique is CritiqueMode.ALWAYS:
        return "output_check"
    return "respond"


async def route_output(state: ChatState, runtime: Run) -> Literal["critique", "refuse", "respond"]:
    decision = state.get("output_decision")
    if decision is not None and decision.blocked:
        return _on_violation(state, runtime.context)
    if runtime.context.policy.settings.critique is CritiqueMode.ALWAYS and _can_revise(state, runtime.context):
        return "critique"
    return "respond"


async def route_revision(state: ChatState, runtime: Run) -> Literal["critique", "refuse", "respond"]:
    """After the revision gate: an accepted revision that passes is the answer, one that is
    still flagged gets another round (or a refusal); a rejected revision leaves the draft,
    refused when it was flagged and kept when it was not."""
    fate = state["revisions"][-1]
    if not _flagged(state):
        return "respond"
    if fate.accepted and _can_revise(state, runtime.context):
        return "critique"
    return "refuse"


def _flagged(state: ChatState) -> bool:
    decision = state.get("output_decision")
    return decision is not None and decision.blocked


def _can_revise(state: ChatState, ctx: ChatContext) -> bool:
    s = ctx.policy.settings
    return (ctx.critic is not None and s.critique is not CritiqueMode.OFF
            and state.get("rounds", 0) < s.critique_rounds)


def _on_violation(state: ChatState, ctx: ChatContext) -> Literal["critique", "refuse"]:
    revise_it = ctx.policy.settings.on_violation is ViolationAction.REVISE
    return "critique" if revise_it and _can_revise(state, ctx) else "refuse"


# -- helpers ---------------------------------------------------------------------------------


def refusal_text(ctx: ChatContext, state: ChatState) -> str:
    """The policy's refusal message; when the user's own profile is the reason, it says so
    (in the user's words), since the same request may be fine for someone else."""
    message = ctx.policy.settings.refusal_message
    decision = state.get("output_decision") or state.get("input_decision")
    if decision is None or not decision.categories:
        return message
    if PROFILE_CATEGORY in decision.categories and ctx.policy.profile is not None:
        return profile_refusal(message, ctx.policy.profile.text, profile_match(decision),
                               alternatives=ctx.policy.settings.profile_check.alternatives)
    return f"{message} (flagged: {', '.join(decision.categories)})"


def _request_text(messages: list[Message]) -> str:
    """What the answer answers: the last user turn."""
    return next((m.content for m in reversed(messages) if m.role == Role.USER), "")


def _critique_params(params: GenerationParams) -> GenerationParams:
    return params.model_copy(update={"max_tokens": min(params.max_tokens, 256)})


def _send(runtime: Run, text: str) -> None:
    """Stream a finished piece of the answer (a no-op when nobody streams)."""
    for i in range(0, len(text), PIECE):
        runtime.stream_writer({"text": text[i : i + PIECE]})


def _finish(ctx: ChatContext, state: ChatState, *, answer: str, action: Action,
            finish_reason: str) -> dict:
    """The end of every request: the answer, its report, and (off the hot path) the spec
    update job when the policy asks for one."""
    result = ChatResult(answer=answer, action=action, finish_reason=finish_reason,
                        report=_report(ctx, state, action))
    if ctx.spec_updates is not None:
        ctx.spec_updates.submit_chat(ctx.policy, state["messages"], dict(state), ctx.request_id)
    return {"released": answer, "result": result}


def _report(ctx: ChatContext, state: ChatState, action: Action) -> SafetyReport:
    steps = state.get("steps", [])
    verdicts = state.get("verdicts", [])
    decisions = [StageDecision.of(stage, d) for stage, d in
                 ((Stage.INPUT, state.get("input_decision")), (Stage.OUTPUT, state.get("output_decision")))
                 if d is not None]
    resolved = ctx.policy
    return SafetyReport(
        request_id=ctx.request_id,
        tenant=resolved.tenant,
        user=resolved.user,
        profile=resolved.profile_id,
        action=action,
        decisions=decisions,
        verdicts=verdicts,
        checks_run=list(dict.fromkeys(v.checker for v in verdicts)),
        specs=[SpecRef(name=s.name, scope=s.scope, version=s.version) for s in ctx.specs],
        critique_rounds=state.get("rounds", 0),
        revisions=state.get("revisions", []),
        reviews=list({r.thread: r for r in state.get("reviews", [])}.values()),
        stream_protection=ctx.protection,
        flagged_after_release=state.get("flagged_after_release", False),
        decoding=ctx.detox.describe() if ctx.detox is not None else None,
        total_ms=(time.perf_counter() - ctx.started) * 1000,
        steps=steps,
        notes=state.get("notes", []),
        **Cost.total(steps).model_dump(),
    )


def build_chat_graph(checkpointer=None, *, observed: bool = True, context_schema=ChatContext,
                     adapt=None):
    """The compiled chat graph. `observed`: each node is timed into the request's observation
    and, while tracing is on, runs in its own span (specguard.observability); False only for
    measuring what that costs (bench/observability_overhead.py). `adapt` wraps every node and
    every route that reads the context, with `context_schema` the context a caller passes
    (specguard.studio: LangGraph Studio passes a tenant and a user, not a ChatContext)."""
    a = adapt or (lambda fn: fn)
    g = StateGraph(ChatState, context_schema=context_schema)
    for node in (input_check, generate, output_check, critique, revise, check_revision, refuse,
                 respond):
        g.add_node(node.__name__, a(traced_node(node.__name__, node) if observed else node))
    g.add_conditional_edges(START, a(route_start))
    g.add_conditional_edges("input_check", route_input)
    g.add_conditional_edges("generate", a(route_draft))
    g.add_conditional_edges("output_check", a(route_output))
    g.add_edge("critique", "revise")
    g.add_edge("revise", "check_revision")
    g.add_conditional_edges("check_revision", a(route_revision))
    g.add_edge("refuse", END)
    g.add_edge("respond", END)
    return g.compile(checkpointer=checkpointer)


def draw_mermaid() -> str:
    """The graph's drawing (Mermaid): what `specguard graph --draw` prints."""
    return build_chat_graph().get_graph().draw_mermaid()
