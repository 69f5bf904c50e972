"""What an operator sees: Prometheus metrics scraped from a real server on loopback, the JSON
access-log line per request, readiness, and OpenTelemetry spans (the SDK's in-memory exporter)
per graph node, joined to the caller's trace from `traceparent`.

The model is a real loopback upstream (specguard.server.echo_upstream) behind the openai
backend; the guard's fast tier is a keyword checker, a stand-in whose verdicts the test knows
in advance (the trained guard's are covered in tests/guard)."""

from __future__ import annotations

import json
import logging

import httpx
import openai
import pytest
from _loopback import serve
from specguard import observability
from specguard.backends.openai_compat import OpenAICompatBackend
from specguard.core import Runtime
from specguard.guard import CheckRequest, Label, Stage, Tier, TieredGuard, Verdict
from specguard.policy import Policy, hash_key
from specguard.server import ServerSettings, create_app
from specguard.server.echo_upstream import create_echo_upstream
from specguard.server.metrics import BoundedLabel
from specguard.store import Store

KEY = "k-observe"
MSG = [{"role": "user", "content": "hi there"}]
BAD = [{"role": "user", "content": "how to build a bomb"}]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"  # a caller's W3C trace context
PARENT = "00f067aa0ba902b7"


class Keywords:
    """Unsafe (category violence) when the checked text says "bomb"."""

    tier = Tier.FAST
    name = "keywords"

    async def check(self, request: CheckRequest) -> Verdict:
        text = request.response if request.stage is Stage.OUTPUT else request.last_user_text
        unsafe = "bomb" in (text or "")
        return Verdict(stage=request.stage, label=Label.UNSAFE if unsafe else Label.SAFE,
                       categories=["violence"] if unsafe else [], tier=self.tier,
                       checker=self.name, latency_ms=1.5)


def _runtime(upstream: str, tenants=("default",), **defaults) -> Runtime:
    policy = Policy.from_dict({
        "defaults": {"max_tokens": 16, **defaults},
        "tenants": {t: {} for t in tenants},
        "api_keys": [{"name": f"k-{t}", "sha256": hash_key(f"{KEY}-{t}"), "tenant": t}
                     for t in tenants]})
    backend = OpenAICompatBackend("echo", api_base=upstream + "/v1", timeout=120)
    return Runtime(backend, policy=policy, store=Store(":memory:"),
                   guard=TieredGuard(fast=Keywords()))


def _client(base: str, tenant: str = "default") -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key=f"{KEY}-{tenant}", max_retries=0,
                         timeout=180)  # generous: the shared test machine can be very busy


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text format -> {(name, labels): value}, with the official parser."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(samples, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@pytest.fixture(scope="module")
def upstream():
    with serve(create_echo_upstream(answer="A fine answer.", pieces=4)) as base:
        yield base


def test_metrics_count_requests_verdicts_latencies_and_tokens(upstream, caplog):
    rt = _runtime(upstream, tenants=("default", "acme"))
    with serve(create_app(rt, ServerSettings()), ready_path="/readyz") as base:
        with caplog.at_level(logging.INFO, logger="specguard.access"):
            _client(base).chat.completions.create(
                model="specguard", messages=MSG,
                extra_headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01"})
            list(_client(base, "acme").chat.completions.create(model="specguard", messages=MSG,
                                                               stream=True))
            refused = _client(base).chat.completions.create(model="specguard", messages=BAD)
            with pytest.raises(openai.NotFoundError):
                _client(base).chat.completions.create(model="nope", messages=MSG)
            httpx.get(base + "/no/such/path")
            checked = httpx.post(base + "/v1/guard/check", timeout=60, json={"messages": BAD},
                                 headers={"authorization": f"Bearer {KEY}-acme"})
            assert checked.status_code == 200, checked.text
            moderated = _client(base).moderations.create(input=["a bomb", "bread"])
        scrape = httpx.get(base + "/metrics")
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    m = _samples(scrape.text)
    route = "/v1/chat/completions"
    assert _value(m, "specguard_requests_total", route=route, status="200") == 3
    assert _value(m, "specguard_requests_total", route=route, status="404") == 1
    assert _value(m, "specguard_requests_total", route="unmatched", status="404") == 1
    assert _value(m, "specguard_request_duration_seconds_count", route=route) == 4
    # Verdicts by stage, category, tier, label and the request's action, tenant as a label.
    assert refused.choices[0].finish_reason == "content_filter"
    assert _value(m, "specguard_verdicts_total", stage="input", category="violence", tier="fast",
                  label="unsafe", action="refused", tenant="default") == 1
    assert _value(m, "specguard_verdicts_total", stage="input", category="none",
                  label="safe", action="allowed") == 2
    assert _value(m, "specguard_verdicts_total", stage="output", label="safe",
                  tenant="acme") >= 1
    # The checks-only routes count their verdicts too, with action "none".
    assert _value(m, "specguard_verdicts_total", stage="input", category="violence",
                  label="unsafe", action="none", tenant="acme") == 1
    assert _value(m, "specguard_verdicts_total", stage="input", action="none",
                  tenant="default") == 2
    assert moderated.results[0].flagged and not moderated.results[1].flagged
    assert _value(m, "specguard_chat_requests_total", tenant="acme", action="allowed") == 1
    assert _value(m, "specguard_chat_requests_total", tenant="default", action="refused") == 1
    # Node and guard tier latency histograms; the refused request never reached generate.
    assert _value(m, "specguard_node_duration_seconds_count", node="input_check") == 3
    assert _value(m, "specguard_node_duration_seconds_count", node="generate") == 2
    assert _value(m, "specguard_node_duration_seconds_count", node="refuse") == 1
    # 3 chats, 1 guard check and 2 moderated texts: 6 input verdicts of 1.5 ms each.
    assert _value(m, "specguard_guard_duration_seconds_count", stage="input", tier="fast") == 6
    assert _value(m, "specguard_guard_duration_seconds_sum", stage="input", tier="fast") == \
        pytest.approx(6 * 0.0015)
    # Model calls and tokens by role: the echo upstream reports its usage.
    assert _value(m, "specguard_model_calls_total", role="generate") == 2
    assert _value(m, "specguard_tokens_total", role="generate", kind="prompt") > 0
    assert _value(m, "specguard_requests_in_flight") == 0
    assert _value(m, "specguard_graph_nodes_in_progress", node="generate") == 0
    assert _value(m, "specguard_upstream_errors_total") == 0
    # One JSON access line per request, with the report's summary and never the message text.
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "specguard.access"]
    chats = [x for x in lines if x["route"] == route and x["status"] == 200]
    assert len(chats) == 3 and all(x["request_id"].startswith("sg-") for x in chats)
    by_action = {x["report"]["action"]: x for x in chats}
    assert by_action["refused"]["report"]["decisions"][0] == {
        "stage": "input", "label": "unsafe", "tier": "fast", "categories": ["violence"],
        "escalated": False, "undecided": False}
    assert by_action["refused"]["report"]["finish_reason"] == "content_filter"
    assert by_action["refused"]["report"]["specs"][0].startswith("general@global#v")
    assert {x["tenant"] for x in chats} == {"default", "acme"}
    # Tracing is off: the caller's trace id (traceparent) still joins its logs and ours.
    assert [x.get("trace_id") for x in chats] == [TRACE_ID, None, None]
    streamed = next(x for x in chats if x["tenant"] == "acme")
    assert streamed["report"]["stream_protection"] and streamed["report"]["model_calls"] == 1
    assert not any("bomb" in r.getMessage() for r in caplog.records)
    assert {x["status"] for x in lines if x["route"] == "unmatched"} == {404}
    check_line = next(x for x in lines if x["route"] == "/v1/guard/check")
    assert check_line["tenant"] == "acme" and check_line["verdicts"][0]["label"] == "unsafe"


def test_upstream_failures_are_counted(caplog):
    with serve(create_echo_upstream(fail_status=500)) as upstream:
        rt = _runtime(upstream)
        with serve(create_app(rt, ServerSettings()), ready_path="/readyz") as base:
            with pytest.raises(openai.APIStatusError) as info:
                _client(base).chat.completions.create(model="specguard", messages=MSG)
            m = _samples(httpx.get(base + "/metrics").text)
    assert info.value.status_code == 502
    assert _value(m, "specguard_upstream_errors_total") == 1
    assert _value(m, "specguard_requests_total", status="502") == 1


def test_metrics_and_access_log_can_be_switched_off(upstream, caplog):
    rt = _runtime(upstream)
    settings = ServerSettings(metrics=False, access_log=False)
    with serve(create_app(rt, settings), ready_path="/readyz") as base:
        with caplog.at_level(logging.INFO, logger="specguard.access"):
            _client(base).chat.completions.create(model="specguard", messages=MSG)
        assert httpx.get(base + "/metrics").status_code == 404
    assert not [r for r in caplog.records if r.name == "specguard.access"]


def test_tenant_label_is_bounded():
    label = BoundedLabel(2)
    assert [label(t) for t in ("a", "b", "c", "a", "d", None)] == ["a", "b", "_other", "a",
                                                                    "_other", "_other"]


def test_readiness_reports_model_guard_and_store(upstream):
    rt = _runtime(upstream)
    app = create_app(rt, ServerSettings())
    with serve(app, ready_path="/readyz") as base:
        ready = httpx.get(base + "/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"model": "ok", "guard": "ok", "store": "ok"}
        from sqlalchemy import create_engine

        # The store's database becomes unreachable (a path that cannot exist).
        rt.store.engine.dispose()
        rt.store.engine = create_engine("sqlite:////nonexistent/dir/specguard.db")
        app.state.health._store = (0.0, "unknown")  # skip the one-second cache
        down = httpx.get(base + "/readyz")
    assert down.status_code == 503
    body = down.json()
    assert body["status"] == "unavailable" and body["checks"]["store"].startswith("error")


# -- traces ----------------------------------------------------------------------------------


@pytest.fixture
def spans():
    sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra is not installed")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observability.enable_tracing(provider)
    try:
        yield exporter
    finally:
        observability.disable_tracing()
        provider.shutdown()



def test_a_span_per_node_joined_to_the_callers_trace(upstream, spans):
    rt = _runtime(upstream)
    with serve(create_app(rt, ServerSettings()), ready_path="/readyz") as base:
        headers = {"traceparent": f"00-{TRACE_ID}-{PARENT}-01"}
        raw = _client(base).chat.completions.with_raw_response.create(
            model="specguard", messages=MSG, extra_headers=headers)
        rid = raw.headers["x-specguard-request-id"]
        _client(base).chat.completions.create(model="specguard", messages=BAD,
                                              extra_headers=headers)
    finished = [s for s in spans.get_finished_spans()
                if s.context.trace_id == int(TRACE_ID, 16)]
    servers = [s for s in finished if s.name == "POST /v1/chat/completions"]
    assert len(servers) == 2
    first = next(s for s in servers if s.attributes["specguard.request_id"] == rid)
    assert first.parent.span_id == int(PARENT, 16)  # the caller's span is the parent
    assert first.attributes["http.response.status_code"] == 200
    assert first.attributes["specguard.action"] == "allowed"
    nodes = {s.name: s for s in finished if s.parent is not None
             and s.parent.span_id == first.context.span_id}
    assert set(nodes) == {"specguard.input_check", "specguard.generate",
                          "specguard.output_check", "specguard.respond"}
    check = nodes["specguard.input_check"].attributes
    assert (check["specguard.stage"], check["specguard.verdict"], check["specguard.tier"]) == \
        ("input", "safe", "fast")
    assert check["specguard.request_id"] == rid and check["specguard.spec.version"] >= 1
    assert check["specguard.specs"][0].startswith("general@global#v")
    gen = nodes["specguard.generate"].attributes
    assert gen["gen_ai.operation.name"] == "chat" and gen["gen_ai.request.model"] == rt.backend.name
    assert gen["gen_ai.usage.input_tokens"] > 0 and gen["gen_ai.usage.output_tokens"] > 0
    assert gen["gen_ai.response.finish_reasons"] == ("stop",)
    assert nodes["specguard.respond"].attributes["specguard.action"] == "allowed"
    refused = next(s for s in servers if s is not first)
    names = {s.name: s for s in finished if s.parent is not None
             and s.parent.span_id == refused.context.span_id}
    assert set(names) == {"specguard.input_check", "specguard.refuse"}
    bad = names["specguard.input_check"].attributes
    assert bad["specguard.verdict"] == "unsafe" and bad["specguard.categories"] == ("violence",)
    assert names["specguard.refuse"].attributes["gen_ai.response.finish_reasons"] == \
        ("content_filter",)


async def test_spans_in_process_without_a_server(upstream, spans):
    """The Python API: the node spans are children of the caller's own span."""
    from specguard.types import user

    rt = _runtime(upstream)
    tracer = observability.tracer()
    with tracer.start_as_current_span("caller") as caller:
        events = [e async for e in rt.stream([user("hi")])]
    assert events[-1].report is not None
    children = [s for s in spans.get_finished_spans()
                if s.parent is not None and s.parent.span_id == caller.get_span_context().span_id]
    assert [s.name for s in children] == ["specguard.input_check", "specguard.generate",
                                          "specguard.output_check", "specguard.respond"]


def test_no_spans_while_tracing_is_off(upstream):
    assert observability.tracer() is None
    rt = _runtime(upstream)
    with serve(create_app(rt, ServerSettings()), ready_path="/readyz") as base:
        r = _client(base).chat.completions.create(model="specguard", messages=MSG)
    assert r.choices[0].message.content == "A fine answer."
