"""What an operator sees of the server: Prometheus metrics at `GET /metrics`, one JSON
access-log line per request, and a server span per request while tracing is on.

`Observe` is the outermost ASGI middleware. Around each HTTP request it opens the request's
`Observation` (specguard.observability: the chat graph's nodes write their times and the final
safety report into it), joins the caller's trace from `traceparent` when tracing is on, and at
the end (after a stream's last byte) records:

    specguard_requests_total{route,method,status}           every HTTP request
    specguard_request_duration_seconds{route}               to the response's last byte
    specguard_chat_requests_total{tenant,action}            answered chat requests
    specguard_verdicts_total{stage,category,tier,label,action,tenant}
                                                            each checker's verdict, of chat,
                                                            /v1/guard/check and moderations
                                                            ("none": no category; action
                                                            "none": a request that only checks)
    specguard_node_duration_seconds{node}                   each chat graph node
    specguard_guard_duration_seconds{stage,tier}            each guard tier's verdicts
    specguard_model_calls_total{role} / specguard_tokens_total{role,kind}
    specguard_upstream_errors_total{kind}                   the model upstream failed
    specguard_requests_in_flight                            requests being answered
    specguard_graph_nodes_in_progress{node}                 where requests are (queue depth)

With several worker processes (`specguard serve --workers N`), prometheus_client's multiprocess
mode adds them up: the parent sets PROMETHEUS_MULTIPROC_DIR before the workers start, each
worker writes its values there, and any worker's /metrics reports the sum over all of them
(the two gauges: over the live workers).

Labels stay bounded: routes are route templates (unmatched paths are "unmatched"), methods
outside HTTP's usual seven are "_other", and the first `max_tenants` tenants (and first 100
categories: a guard model names its own) seen get their own label, the rest "_other". The access log line
(logger `specguard.access`, INFO) names the request, its route, status, time, tenant, trace (the
server span's, or with tracing off the caller's `traceparent`) and the safety report's summary,
never message text. `specguard serve` prints it on stdout; as a
library, specguard configures no logging.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .. import observability
from ..observability import Observation

if TYPE_CHECKING:
    from ..report import SafetyReport

access_log = logging.getLogger("specguard.access")

OTHER = "_other"
WARM_UP_HOST = b"specguard.start"  # app._warm_routes' requests
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# The steps of a safety report that call a model, and the role that model plays.
_STEP_ROLES = {"generate": "generate", "critique": "critic", "revise": "critic",
               "input_check": "guard", "output_check": "guard"}
_UPSTREAM_STATUS = {502: "bad_gateway", 504: "timeout"}
_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


class BoundedLabel:
    """A label's values as seen, at most `limit` distinct ones; later new values become
    "_other" (a tenant per customer must not grow the series without bound)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str | None) -> str:
        value = value or "none"
        if value in self._seen:
            return value
        if len(self._seen) < self.limit:
            self._seen.add(value)
            return value
        return OTHER


class Metrics:
    """The server's Prometheus metrics, in their own registry (one per app)."""

    def __init__(self, *, max_tenants: int = 50) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        except ImportError as exc:
            from ..errors import ConfigError

            raise ConfigError("The /metrics endpoint needs prometheus_client.",
                              hint="pip install 'specguard[server]'") from exc
        r = self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple, object] = {}  # bounded: every label value is bounded
        self.tenant = BoundedLabel(max_tenants)
        # A deliberative guard model names categories in its own words: bounded too.
        self.category = BoundedLabel(100)
        self.requests = Counter("specguard_requests", "HTTP requests by route, method and status.",
                                ["route", "method", "status"], registry=r)
        self.request_seconds = Histogram(
            "specguard_request_duration_seconds", "Time to a response's last byte, by route.",
            ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.chats = Counter("specguard_chat_requests", "Answered chat requests by action.",
                             ["tenant", "action"], registry=r)
        self.verdicts = Counter(
            "specguard_verdicts", "Checker verdicts by stage, category, tier, label and the "
            "request's action.", ["stage", "category", "tier", "label", "action", "tenant"],
            registry=r)
        self.node_seconds = Histogram("specguard_node_duration_seconds",
                                      "Time in each chat graph node.", ["node"],
                                      buckets=_LATENCY_BUCKETS, registry=r)
        self.guard_seconds = Histogram("specguard_guard_duration_seconds",
                                       "Time of each guard tier's verdicts.", ["stage", "tier"],
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.model_calls = Counter("specguard_model_calls", "Model calls by role.", ["role"],
                                   registry=r)
        self.tokens = Counter("specguard_tokens", "Model tokens by role and kind "
                              "(prompt, completion).", ["role", "kind"], registry=r)
        self.upstream_errors = Counter("specguard_upstream_errors",
                                       "Requests the model upstream failed, by kind.", ["kind"],
                                       registry=r)
        self.in_flight = Gauge("specguard_requests_in_flight",
                               "Requests being answered (streams until their last byte).",
                               registry=r, multiprocess_mode="livesum")
        nodes = Gauge("specguard_graph_nodes_in_progress",
                      "Chat graph nodes running now, by node (where requests wait).", ["node"],
                      registry=r, multiprocess_mode="livesum")
        self.multiprocess = multiprocess_dir() is not None
        if self.multiprocess:
            # Each worker's gauges live in its files: the graph's hooks move them as nodes
            # start and end (one app per worker process), and a worker that exits cleanly
            # takes its live gauges with it.
            import atexit
            import os

            from prometheus_client import multiprocess

            observability.on_node = lambda node, delta: nodes.labels(node).inc(delta)
            atexit.register(multiprocess.mark_process_dead, os.getpid())
        else:
            for node in ("input_check", "generate", "output_check", "critique", "revise",
                         "check_revision", "refuse", "respond"):
                nodes.labels(node).set_function(lambda n=node: observability.in_progress[n])

    def _child(self, metric, *labels: str):
        """`metric.labels(*labels)`, cached: prometheus_client validates the labels on every
        call, a third of the cost of recording a request."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def record(self, *, route: str, method: str, status: int, seconds: float,
               obs: Observation) -> None:
        c = self._child
        c(self.requests, route, method if method in _METHODS else OTHER, str(status)).inc()
        c(self.request_seconds, route).observe(seconds)
        for node, s in obs.nodes:
            c(self.node_seconds, node).observe(s)
        upstream = obs.upstream_error or _UPSTREAM_STATUS.get(status)
        if upstream is not None:
            c(self.upstream_errors, upstream).inc()
        report = obs.report
        # Every check the request ran (chat, /v1/guard/check, moderations); the action is the
        # chat answer's, "none" for a request that only checks.
        action = report.action.value if report is not None else "none"
        for tenant_name, verdicts in obs.checks:
            tenant = self.tenant(tenant_name)
            for v in verdicts:
                for category in v.categories or ("none",):
                    c(self.verdicts, v.stage.value, self.category(category), v.tier.value,
                      v.label.value, action, tenant).inc()
                c(self.guard_seconds, v.stage.value, v.tier.value).observe(v.latency_ms / 1000)
        if report is None:
            return
        c(self.chats, self.tenant(report.tenant), action).inc()
        for step in report.steps:
            role = _STEP_ROLES.get(step.name)
            if role is None or not step.model_calls:
                continue
            c(self.model_calls, role).inc(step.model_calls)
            c(self.tokens, role, "prompt").inc(step.prompt_tokens)
            c(self.tokens, role, "completion").inc(step.completion_tokens)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        registry = self.registry
        if self.multiprocess:
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # every worker's values, added up
        return generate_latest(registry), CONTENT_TYPE_LATEST


def multiprocess_dir() -> str | None:
    """Where the workers' metric values meet (prometheus_client's multiprocess mode), if set."""
    import os

    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


def report_summary(report: SafetyReport, finish_reason: str | None = None) -> dict[str, Any]:
    """The safety report's headline for the access log: decisions, specs, cost; no text."""
    out: dict[str, Any] = {
        "action": report.action.value,
        "decisions": [{"stage": d.stage.value, "label": d.label.value,
                       "tier": d.decided_by.value if d.decided_by else None,
                       "categories": d.categories, "escalated": d.escalated,
                       "undecided": d.undecided} for d in report.decisions],
        "specs": [str(s) for s in report.specs],
        "checks": report.checks_run,
        "model_calls": report.model_calls,
        "prompt_tokens": report.prompt_tokens,
        "completion_tokens": report.completion_tokens,
        "total_ms": round(report.total_ms, 2),
    }
    if finish_reason is not None:
        out["finish_reason"] = finish_reason
    if report.stream_protection is not None:
        out["stream_protection"] = report.stream_protection.value
    if report.flagged_after_release:
        out["flagged_after_release"] = True
    if report.critique_rounds:
        out["critique_rounds"] = report.critique_rounds
        out["revisions_accepted"] = sum(r.accepted for r in report.revisions)
    return out


class Observe:
    """The outermost middleware: see the module docstring."""

    def __init__(self, app, *, metrics: Metrics | None, access_log_on: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log_on = access_log_on

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or _warm_up(scope):
            return await self.app(scope, receive, send)
        counted = self.metrics is not None and scope.get("path") != "/metrics"
        if counted:
            self.metrics.in_flight.inc()
        try:
            await self._observe(scope, receive, send)
        finally:
            if counted:
                self.metrics.in_flight.dec()

    async def _observe(self, scope, receive, send):
        start = time.perf_counter()
        status = 500  # what a request that ends without a response counts as
        span = None

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        tracer = observability.tracer()
        with observability.observe() as obs:
            if tracer is None:
                try:
                    await self.app(scope, receive, send_status)
                finally:
                    self._done(scope, status, start, obs, None)
                return
            from opentelemetry import trace
            from opentelemetry.propagate import extract

            carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            with tracer.start_as_current_span(
                    f"{scope['method']} {scope['path']}", context=extract(carrier),
                    kind=trace.SpanKind.SERVER) as span:
                try:
                    await self.app(scope, receive, send_status)
                finally:
                    self._done(scope, status, start, obs, span)

    def _done(self, scope, status: int, start: float, obs: Observation, span) -> None:
        seconds = time.perf_counter() - start
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = scope.get("method", "")
        if self.metrics is not None:
            self.metrics.record(route=route, method=method, status=status, seconds=seconds,
                                obs=obs)
        rid = scope.get("state", {}).get("request_id")
        if span is not None:
            _annotate_server_span(span, scope, route, status, rid, obs)
            ctx = span.get_span_context()
            trace_id = f"{ctx.trace_id:032x}" if ctx.is_valid else None
        else:  # tracing off: still name the caller's trace, so its logs and ours join up
            trace_id = _caller_trace(scope)
        if self.access_log_on and access_log.isEnabledFor(logging.INFO):
            line: dict[str, Any] = {
                "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "request_id": rid, "method": method, "route": route, "path": scope.get("path"),
                "status": status, "ms": round(seconds * 1000, 2),
            }
            if trace_id is not None:
                line["trace_id"] = trace_id
            if obs.upstream_error is not None:
                line["upstream_error"] = obs.upstream_error
            if obs.report is not None:
                line["tenant"] = obs.report.tenant
                line["user"] = obs.report.user
                line["report"] = report_summary(obs.report, obs.finish_reason)
            elif obs.checks:  # a request that only checks (/v1/guard/check, moderations)
                line["tenant"] = obs.checks[0][0]
                line["verdicts"] = [{"stage": v.stage.value, "label": v.label.value,
                                     "tier": v.tier.value, "checker": v.checker,
                                     "categories": v.categories}
                                    for _, verdicts in obs.checks for v in verdicts]
            access_log.info(json.dumps(line, separators=(",", ":")))


_TRACEPARENT = re.compile(rb"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


def _caller_trace(scope) -> str | None:
    """The trace id of a valid W3C `traceparent` header, if the request has one."""
    for k, v in scope["headers"]:
        if k == b"traceparent":
            m = _TRACEPARENT.match(v.strip().lower())
            if m and m.group(1) != b"0" * 32:
                return m.group(1).decode()
    return None


def _warm_up(scope) -> bool:
    """The server's own start-up requests (app._warm_routes, in process, to host
    specguard.start) are not traffic."""
    return scope.get("client") is not None and scope["client"][0] == "127.0.0.1" and any(
        k == b"host" and v == WARM_UP_HOST for k, v in scope["headers"])


def _annotate_server_span(span, scope, route: str, status: int, rid: str | None,
                          obs: Observation) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.update_name(f"{scope.get('method', '')} {route}")
    span.set_attribute("http.request.method", scope.get("method", ""))
    span.set_attribute("http.route", route)
    span.set_attribute("url.path", scope.get("path", ""))
    span.set_attribute("http.response.status_code", status)
    if rid:
        span.set_attribute("specguard.request_id", rid)
    if obs.report is not None:
        span.set_attribute("specguard.tenant", obs.report.tenant)
        span.set_attribute("specguard.action", obs.report.action.value)
    if obs.upstream_error is not None:
        span.set_attribute("error.type", obs.upstream_error)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


def install(app, *, metrics_on: bool = True, access_log_on: bool = True,
            max_tenants: int = 50) -> None:
    """Add the `Observe` middleware (call it after every other middleware: it must be the
    outermost) and, with metrics on, `GET /metrics`."""
    from starlette.responses import Response

    metrics = Metrics(max_tenants=max_tenants) if metrics_on else None
    app.state.metrics = metrics
    if metrics is not None:
        @app.get("/metrics", include_in_schema=False)
        async def prometheus():
            body, content_type = metrics.exposition()
            return Response(body, media_type=content_type)

    app.add_middleware(Observe, metrics=metrics, access_log_on=access_log_on)


__all__ = ["BoundedLabel", "Metrics", "Observe", "install", "report_summary"]
