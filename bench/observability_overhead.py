"""What observability costs a guarded request: the chat graph with its nodes unobserved (the
baseline) against the same graph with each level of observability switched on, interleaved
request by request in one run, in this process, on a scripted model that answers at once and
a keyword checker as both fast checks (so every microsecond measured is specguard's own):

- bare: the graph without the node hooks (build_chat_graph(observed=False));
- hooks: the node hooks with nothing listening (the Python API, tracing off);
- metrics: the server's per-request work: the request's Observation, the Prometheus metrics
  recorded from it and the JSON access-log line built (written to a null handler);
- traced: all of that plus OpenTelemetry: a server span and a span per node with their
  attributes, through the SDK's batch processor to an exporter that drops them.

Every request runs input_check, generate, output_check and respond (4 nodes, 4 spans + 1).

    python bench/observability_overhead.py [--requests 2000]
    python bench/observability_overhead.py --smoke --out /tmp/x.json     # CI: 50 requests

Writes docs/results/observability_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time

from specguard import observability
from specguard.backends.scripted import ScriptedBackend
from specguard.core import Runtime
from specguard.evals.results import Readme, Result, Table, command_line, write_result
from specguard.graph import build_chat_graph
from specguard.guard import CheckRequest, Label, Stage, Tier, TieredGuard, Verdict
from specguard.policy import Policy
from specguard.report import Action
from specguard.server.metrics import Metrics, Observe
from specguard.store import Store
from specguard.types import user

CONFIGS = ("bare", "hooks", "metrics", "traced")


class Keywords:
    tier = Tier.FAST
    name = "keywords"

    async def check(self, request: CheckRequest) -> Verdict:
        text = request.response if request.stage is Stage.OUTPUT else request.last_user_text
        unsafe = "bomb" in (text or "")
        return Verdict(stage=request.stage, label=Label.UNSAFE if unsafe else Label.SAFE,
                       tier=self.tier, checker=self.name)


class _Route:
    path = "/v1/chat/completions"


def _tracing():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    return provider


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def main(requests: int) -> dict[str, list[float]]:
    policy = Policy.from_dict({"defaults": {"max_tokens": 16}, "tenants": {"default": {}}})
    rt = Runtime(ScriptedBackend(["A fine answer."]), policy=policy, store=Store(":memory:"),
                 guard=TieredGuard(fast=Keywords()))
    graphs = {"bare": build_chat_graph(observed=False), "hooks": build_chat_graph()}
    metrics = Metrics()
    edge = Observe(None, metrics=metrics, access_log_on=True)
    access = logging.getLogger("specguard.access")
    access.addHandler(logging.NullHandler())
    access.setLevel(logging.INFO)
    access.propagate = False
    provider = _tracing()
    messages = [user("How is bread made?")]
    resolved = rt.policy.resolve("default", None)

    async def one(config: str) -> float:
        start = time.perf_counter()
        ctx = await rt.contexts.abuild_context(resolved)
        graph = graphs["bare" if config == "bare" else "hooks"]
        if config in ("bare", "hooks"):
            state = await graph.ainvoke({"messages": list(messages)}, context=ctx)
        else:
            scope = {"method": "POST", "path": _Route.path, "route": _Route, "headers": [],
                     "state": {"request_id": ctx.request_id}}
            with observability.observe() as obs:
                if config == "metrics":
                    state = await graph.ainvoke({"messages": list(messages)}, context=ctx)
                    edge._done(scope, 200, start, obs, None)
                else:
                    from opentelemetry.trace import SpanKind

                    tracer = observability.tracer()
                    with tracer.start_as_current_span("POST", kind=SpanKind.SERVER) as span:
                        state = await graph.ainvoke({"messages": list(messages)}, context=ctx)
                        edge._done(scope, 200, start, obs, span)
        assert state["result"].action is Action.ALLOWED
        return (time.perf_counter() - start) * 1000

    out: dict[str, list[float]] = {c: [] for c in CONFIGS}
    for i in range(50 + requests):  # the first 50: warm-up (imports, caches, first runs)
        for config in CONFIGS:
            if config == "traced":
                observability.enable_tracing(provider)
            try:
                ms = await one(config)
            finally:
                observability.disable_tracing()
            if i >= 50:
                out[config].append(ms)
    provider.shutdown()
    assert (sum(_value(metrics, "specguard_node_duration_seconds_count", node="generate"))
            == 2 * (50 + requests))
    return out


def _value(metrics: Metrics, name: str, **labels) -> list[float]:
    return [s.value for family in metrics.registry.collect() for s in family.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--smoke", action="store_true", help="50 requests")
    ap.add_argument("--out", default=None, help="the JSON summary (default docs/results/)")
    args = ap.parse_args()
    n = 50 if args.smoke else args.requests
    raw = asyncio.run(main(n))
    base = pct(raw["bare"], 0.5)
    rows = []
    for config in CONFIGS:
        xs = raw[config]
        # Each request of a configuration is paired with the bare request of the same round
        # (they ran back to back): the median of those differences is what the configuration
        # adds, less exposed to the shared machine's load than a difference of medians.
        paired = statistics.median(x - b for x, b in zip(xs, raw["bare"], strict=True))
        rows.append([config, n, round(pct(xs, 0.5), 3), round(pct(xs, 0.95), 3),
                     round(paired * 1000, 1),
                     f"{statistics.median(xs) / statistics.median(raw['bare']):.3f}x"])
    added = {r[0]: r[4] for r in rows}
    headline = (f"a guarded request (4 nodes, scripted model, in process): node hooks with "
                f"tracing off {added['hooks']:+} us, with Prometheus metrics and the JSON "
                f"access line {added['metrics']:+} us, with OpenTelemetry spans (SDK, batch "
                f"export) {added['traced']:+} us (median paired differences), on a "
                f"{base:.2f} ms p50 baseline")
    path = write_result(Result(
        name="observability_overhead", title="What observability costs a guarded request",
        script="bench/observability_overhead.py", command=command_line(), smoke=args.smoke,
        readme=Readme(what="observability overhead (metrics, access log, traces)",
                      where="docs/results/performance.md", headline=headline),
        tables=[Table(
            id="overhead", title="both fast checks on (keyword checker), scripted model, in process",
            columns=["configuration", "requests", "p50 ms", "p95 ms",
                     "added us (median paired difference)", "p50 ratio"], rows=rows,
            note="Baseline: the same graph without the node hooks (bare), interleaved with the "
                 "other configurations request by request in the same run; added: the median "
                 "over rounds of (this configuration's request - the bare request of the same "
                 "round). metrics: the "
                 "server's per-request Observation, Prometheus metrics and the JSON access "
                 "line; traced: plus a server span and 4 node spans through the OpenTelemetry "
                 "SDK's batch processor to an exporter that drops them. HTTP itself is not "
                 "included (bench/proxy_overhead.py measures the server).")],
        data={"requests": n, "rows": rows}), args.out)
    print(headline)
    print(f"wrote {path}")
