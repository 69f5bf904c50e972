"""Traces and per-request measurements of the guarded chat graph.

Every node of the chat graph (specguard.graph) runs through `traced_node`, which

- times the node into the request's `Observation` (when the server, or any caller, opened one
  with `observe()`): the server turns those times, the final safety report and upstream
  failures into Prometheus metrics and one JSON access-log line (specguard.server.metrics);
- opens an OpenTelemetry span per node once tracing is on (`enable_tracing`, or `specguard
  serve --otel-exporter`): verdict, tier, categories, spec versions, request id and tenant as
  `specguard.*` attributes, and the model's calls under the GenAI semantic conventions
  (`gen_ai.operation.name`, `gen_ai.request.model`, `gen_ai.usage.input_tokens`, ...).

Tracing needs `opentelemetry-sdk` (the `otel` extra) only to record and export; the spans use
the OpenTelemetry API, so a host application's own tracer provider works too:
`enable_tracing(provider)`. While tracing is off a node pays two clock reads and a context
lookup (bench/graph_overhead.py measures it).
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:  # the node's context is a ChatContext (context.py imports this module)
    from .guard import Verdict
    from .report import SafetyReport

TRACER_NAME = "specguard"
EXPORTERS = ("none", "auto", "console", "otlp")


@dataclass
class Observation:
    """What one request did, gathered as it runs: each graph node's time, each check's
    verdicts (chat, /v1/guard/check, moderations alike), the final safety report, and an
    upstream failure, if any. Read by whoever opened it (the server's edge)."""

    nodes: list[tuple[str, float]] = field(default_factory=list)  # (node, seconds)
    checks: list[tuple[str, list[Verdict]]] = field(default_factory=list)  # (tenant, verdicts)
    report: SafetyReport | None = None
    finish_reason: str | None = None
    upstream_error: str | None = None  # the failure's kind (an error class name)


_current: ContextVar[Observation | None] = ContextVar("specguard_observation", default=None)
_tracer: Any = None  # an OpenTelemetry Tracer while tracing is on
# Graph nodes running now, in this process, by node: where requests wait (a queue at the
# model shows as many in `generate`).
in_progress: Counter[str] = Counter()
# Told of each node's start (+1) and end (-1) where a gauge cannot read `in_progress` (the
# server's metrics across worker processes, specguard.server.metrics).
on_node: Callable[[str, int], None] | None = None


@contextmanager
def observe() -> Iterator[Observation]:
    """Gather what the request run inside this block does (the graph's tasks inherit it)."""
    obs = Observation()
    token = _current.set(obs)
    try:
        yield obs
    finally:
        _current.reset(token)


def current() -> Observation | None:
    return _current.get()


def note_check(tenant: str, verdicts: list[Verdict]) -> None:
    """Record one check's verdicts for the request (ChatContext.check calls it)."""
    obs = _current.get()
    if obs is not None:
        obs.checks.append((tenant, verdicts))


def note_upstream_error(exc: BaseException) -> None:
    """Record that the model upstream failed this request (for the upstream error metric)."""
    obs = _current.get()
    if obs is not None and obs.upstream_error is None:
        obs.upstream_error = type(exc).__name__


# -- tracing ---------------------------------------------------------------------------------


def enable_tracing(provider: Any = None) -> None:
    """Open spans from now on, with `provider` (an OpenTelemetry TracerProvider) or the global
    one. Without opentelemetry-sdk (or another SDK) configured, the global provider records
    nothing: use `configure_tracing`, or set up your own."""
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise ConfigError("Tracing needs OpenTelemetry.",
                          hint="pip install 'specguard[otel]'") from exc
    from . import __version__

    global _tracer
    _tracer = (provider or trace.get_tracer_provider()).get_tracer(TRACER_NAME, __version__)


def disable_tracing() -> None:
    global _tracer
    _tracer = None


def tracer() -> Any:
    """The tracer while tracing is on, else None."""
    return _tracer


def configure_tracing(exporter: str = "auto", *, service_name: str = "specguard") -> bool:
    """What `specguard serve --otel-exporter` does: set the global tracer provider to the SDK's,
    exporting in batches to `exporter` (otlp: OTLP over HTTP or gRPC, the standard
    OTEL_EXPORTER_OTLP_* variables say where; console: stdout; auto: otlp when an OTLP endpoint
    is set in the environment, else none), and turn tracing on. False when `exporter` is none
    (or auto with no endpoint); a clear error when the SDK or exporter is missing."""
    import os

    if exporter not in EXPORTERS:
        raise ConfigError(f"Unknown trace exporter {exporter!r}.",
                          hint=f"Use one of: {', '.join(EXPORTERS)}.")
    if exporter == "auto":
        endpoint = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                    or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        exporter = "otlp" if endpoint else "none"
    if exporter == "none":
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError as exc:
        raise ConfigError("Tracing needs the OpenTelemetry SDK.",
                          hint="pip install 'specguard[otel]'") from exc
    if exporter == "console":
        span_exporter = ConsoleSpanExporter()
    else:
        span_exporter = _otlp_exporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)
    enable_tracing(provider)
    return True


def _otlp_exporter():
    import os

    protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise ConfigError("Exporting traces over OTLP needs an OTLP exporter.",
                          hint="pip install opentelemetry-exporter-otlp (or use "
                          "--otel-exporter console)") from exc
    return OTLPSpanExporter()


# -- the graph's nodes -----------------------------------------------------------------------


Node = Callable[[Any, Any], Awaitable[dict]]


def traced_node(name: str, fn: Node) -> Node:
    """`fn` (a chat graph node taking (state, runtime)) timed into the request's Observation and,
    while tracing is on, inside a span `specguard.<name>` with what the node decided."""

    @functools.wraps(fn)
    async def node(state, runtime):
        obs = _current.get()
        start = time.perf_counter()
        in_progress[name] += 1
        if on_node is not None:
            on_node(name, 1)
        try:
            if _tracer is None:
                update = await fn(state, runtime)
            else:
                with _tracer.start_as_current_span(f"specguard.{name}") as span:
                    update = await fn(state, runtime)
                    if span.is_recording():
                        span.set_attributes(node_attributes(name, runtime.context, state, update))
        finally:
            in_progress[name] -= 1
            if on_node is not None:
                on_node(name, -1)
            if obs is not None:
                obs.nodes.append((name, time.perf_counter() - start))
        if obs is not None and update and "result" in update:
            obs.report = update["result"].report
            obs.finish_reason = update["result"].finish_reason
        return update

    return node


_MODEL_NODES = {"generate": "generate", "critique": "critic", "revise": "critic"}


def node_attributes(name: str, ctx: Any, state: dict, update: dict) -> dict[str, Any]:
    """A node span's attributes: the request's (id, tenant, specs), then what this node did.
    OpenTelemetry's GenAI conventions where they exist (model calls and tokens), `specguard.*`
    for the safety decisions, which they do not cover."""
    attrs: dict[str, Any] = {
        "specguard.node": name,
        "specguard.request_id": ctx.request_id,
        "specguard.tenant": ctx.policy.tenant,
        "specguard.specs": [f"{s.name}@{s.scope}#v{s.version}" for s in ctx.specs],
    }
    if ctx.specs:
        attrs["specguard.spec.version"] = ctx.specs[0].version
    for key, stage in (("input_decision", "input"), ("output_decision", "output")):
        decision = update.get(key)
        if decision is None:
            continue
        attrs["specguard.stage"] = stage
        attrs["specguard.verdict"] = decision.label.value
        if decision.decided_by is not None:
            attrs["specguard.tier"] = decision.decided_by.value
        attrs["specguard.categories"] = list(decision.categories)
        attrs["specguard.escalated"] = decision.escalated
        attrs["specguard.undecided"] = decision.undecided
        attrs["specguard.checkers"] = list(dict.fromkeys(v.checker for v in decision.verdicts))
    steps = update.get("steps") or []
    prompt = sum(s.prompt_tokens for s in steps)
    completion = sum(s.completion_tokens for s in steps)
    if name in _MODEL_NODES:
        model = ctx.backend if name == "generate" else ctx.critic
        attrs["gen_ai.operation.name"] = "chat"
        attrs["specguard.role"] = _MODEL_NODES[name]
        if model is not None:
            attrs["gen_ai.request.model"] = model.name
        attrs["gen_ai.request.max_tokens"] = ctx.params.max_tokens
        attrs["gen_ai.request.temperature"] = ctx.params.temperature
        if update.get("finish_reason"):
            attrs["gen_ai.response.finish_reasons"] = [update["finish_reason"]]
    if prompt or completion or name in _MODEL_NODES:
        attrs["gen_ai.usage.input_tokens"] = prompt
        attrs["gen_ai.usage.output_tokens"] = completion
    if "revisions" in update:
        attrs["specguard.revision.accepted"] = update["revisions"][-1].accepted
    result = update.get("result")
    if result is not None:
        report = result.report
        attrs["specguard.action"] = report.action.value
        attrs["gen_ai.response.finish_reasons"] = [result.finish_reason]
        attrs["specguard.model_calls"] = report.model_calls
        attrs["specguard.total_input_tokens"] = report.prompt_tokens
        attrs["specguard.total_output_tokens"] = report.completion_tokens
        if report.stream_protection is not None:
            attrs["specguard.stream_protection"] = report.stream_protection.value
    return attrs


__all__ = ["Observation", "configure_tracing", "current", "disable_tracing", "enable_tracing",
           "note_check", "note_upstream_error", "observe", "traced_node", "tracer"]
