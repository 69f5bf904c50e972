"""What running a pass-through request through the guarded chat graph costs, against the
bypass the runtime used to take for it (no graph: resolve, build the context, call the model,
write the report), in this process, on a scripted model that answers at once (so every
millisecond measured is specguard's own).

The pass-through policy (bench/passthrough_policy.yaml: no checks, no critique) is the same
graph with nothing to decide: input_check and output_check return at once, generate calls the
model, respond writes the report. Both paths run interleaved, request by request, in one run.

    python bench/graph_overhead.py [--requests 3000]
    python bench/graph_overhead.py --smoke --out /tmp/x.json     # CI: 50 requests

Writes docs/results/graph_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

from specguard.backends.scripted import ScriptedBackend
from specguard.core import Runtime
from specguard.evals.results import Readme, Result, Table, command_line, write_result
from specguard.graph import generation_system_prompt, with_policy_system_prompt
from specguard.policy import Policy
from specguard.report import Action, SafetyReport, SpecRef, StepRecord
from specguard.store import Store
from specguard.types import Cost, user

HERE = Path(__file__).resolve().parent


async def bypass(rt: Runtime, messages) -> SafetyReport:
    """The old pass-through path: the same request without the graph."""
    start = time.perf_counter()
    resolved = rt.policy.resolve("default", None)
    ctx = rt.build_context(resolved)
    sent = with_policy_system_prompt(messages, generation_system_prompt(ctx))
    out = await ctx.backend.complete(sent, ctx.params)
    step = StepRecord.timed("generate", start, Cost.of(out.usage))
    return SafetyReport(request_id=ctx.request_id, tenant=resolved.tenant, action=Action.ALLOWED,
                        specs=[SpecRef(name=s.name, scope=s.scope, version=s.version) for s in ctx.specs],
                        stream_protection=ctx.protection, steps=[step],
                        total_ms=(time.perf_counter() - start) * 1000, **step.cost().model_dump())


def empty_graph():
    """Two nodes that do nothing: LangGraph's own fixed cost on this machine, for scale."""
    from typing import TypedDict

    from langgraph.graph import START, StateGraph

    class S(TypedDict, total=False):
        a: str
        b: str

    async def one(state):
        return {"a": "x"}

    async def two(state):
        return {"b": "y"}

    g = StateGraph(S)
    g.add_node("one", one)
    g.add_node("two", two)
    g.add_edge(START, "one")
    g.add_edge("one", "two")
    return g.compile()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def main(requests: int) -> dict:
    policy = Policy.load(HERE / "passthrough_policy.yaml")
    rt = Runtime(ScriptedBackend(["ok"]), policy=policy, store=Store(":memory:"))
    messages = [user("hi")]
    empty = empty_graph()
    graph_ms: list[float] = []
    bypass_ms: list[float] = []
    empty_ms: list[float] = []
    for _ in range(50):  # warm-up: imports, caches, the compiled graph's first run
        await rt.chat(messages)
        await bypass(rt, messages)
        await empty.ainvoke({"a": ""})
    for _ in range(requests):
        t0 = time.perf_counter()
        result = await rt.chat(messages)
        t1 = time.perf_counter()
        await bypass(rt, messages)
        t2 = time.perf_counter()
        await empty.ainvoke({"a": ""})
        t3 = time.perf_counter()
        graph_ms.append((t1 - t0) * 1000)
        bypass_ms.append((t2 - t1) * 1000)
        empty_ms.append((t3 - t2) * 1000)
    assert result.action is Action.ALLOWED and [s.name for s in result.report.steps] == ["generate"]
    return {"graph_ms": graph_ms, "bypass_ms": bypass_ms, "empty_ms": empty_ms}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--smoke", action="store_true", help="50 requests")
    ap.add_argument("--out", default=None, help="the JSON summary (default docs/results/)")
    args = ap.parse_args()
    n = 50 if args.smoke else args.requests
    raw = asyncio.run(main(n))
    g, b, e = raw["graph_ms"], raw["bypass_ms"], raw["empty_ms"]
    row = [n, round(pct(b, 0.5), 3), round(pct(b, 0.95), 3), round(pct(g, 0.5), 3),
           round(pct(g, 0.95), 3), round(pct(g, 0.5) - pct(b, 0.5), 3),
           f"{statistics.median(g) / statistics.median(b):.2f}x", round(pct(e, 0.5), 3)]
    path = write_result(Result(
        name="graph_overhead", title="The chat graph's overhead on a pass-through request",
        script="bench/graph_overhead.py", command=command_line(), smoke=args.smoke,
        readme=None,
        tables=[Table(
            id="overhead", title="pass-through policy, scripted model, in process",
            columns=["requests", "bypass p50 ms", "bypass p95 ms", "graph p50 ms", "graph p95 ms",
                     "added p50 ms", "p50 ratio", "empty 2-node LangGraph p50 ms"], rows=[row],
            note="Baseline: the bypass the runtime used to take for a pass-through policy "
                 "(resolve, context, model call, report; no graph), interleaved with the graph "
                 "request by request in the same run; for scale, an empty two-node LangGraph "
                 "(LangGraph's own fixed cost) in the same loop. Target: <= 1 ms added p50.")],
        data={"requests": n, "row": row}), args.out)
    print(f"bypass p50 {row[1]} ms, graph p50 {row[3]} ms: +{row[5]} ms ({row[6]}); an empty "
          f"2-node LangGraph p50 {row[7]} ms; wrote {path}")
