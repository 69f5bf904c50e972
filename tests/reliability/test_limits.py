"""Limits that hold (issue 14, items 6, 7, 9, 12 and the low ones), each through a real server
on loopback: generation stops when its request times out or its client goes away; per-key and
server-wide limits answer 429 / 503 with Retry-After; /v1/moderations and litellm's retries
have the request budget; a long stream is not cut by the upstream client's timeout; the memory
checkpointer is bounded; admin-written settings cannot name files; the admin API is not in
/openapi.json; a streaming client that disconnects leaves no traceback; specs written without a
provenance are an admin's; audit times keep their time zone; a generated API key is never
printed."""

from __future__ import annotations

import json
import stat
import threading
import time

import httpx
import openai
import pytest

from specguard.backends.openai_compat import OpenAICompatBackend
from specguard.backends.scripted import ScriptedBackend
from specguard.checkpoint import make_checkpointer
from specguard.core import Runtime
from specguard.guard import TieredGuard
from specguard.guard.deliberative import DeliberativeChecker
from specguard.policy import Policy, hash_key
from specguard.server import ServerSettings, create_app
from specguard.server.echo_upstream import create_echo_upstream
from specguard.spec import SpecSource
from specguard.store import Store
from specguard.types import GenerationParams, user

from _loopback import serve
from _procs import start_server

KEYS = {"a": "sg-limits-a", "b": "sg-limits-b", "op": "sg-limits-op"}
NO_CHECKS = {"input_check": {"enabled": False}, "output_check": {"enabled": False},
             "critique": "off"}


def _policy(**defaults) -> Policy:
    return Policy.from_dict({
        "defaults": {**NO_CHECKS, **defaults},
        "tenants": {"default": {}},
        "users": {"ann": {"tenant": "default"}},
        "api_keys": [
            {"name": "a", "sha256": hash_key(KEYS["a"]), "tenant": "default"},
            {"name": "b", "sha256": hash_key(KEYS["b"]), "tenant": "default"},
            {"name": "op", "sha256": hash_key(KEYS["op"]), "tenant": "default", "operator": True},
        ],
    })


def _runtime(backend, tmp_path=None, guard=None, **defaults) -> Runtime:
    store = Store(str(tmp_path / "s.db")) if tmp_path else Store(":memory:")
    return Runtime(backend, policy=_policy(**defaults), store=store,
                   guard=guard or TieredGuard(deliberative=DeliberativeChecker(backend)))


def _headers(who: str) -> dict:
    return {"authorization": f"Bearer {KEYS[who]}"}


CHAT = {"model": "specguard", "messages": [{"role": "user", "content": "hi"}]}
# A request the embedded model answers at full length (1,500 tokens, about 20 s here). "Count
# from 1 to 5000" was answered in 141 tokens, about 1.5 s: once the checks around it got
# faster, it finished inside the 2 s timeout this file tests.
LONG = {"model": "specguard", "max_tokens": 1500,
        "messages": [{"role": "user", "content": "Write the numbers from 1 to 1000 in words, "
                      "one per line: one, two, three, ..."}]}


def _idle_within(model, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if model.busy == 0:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.model
def test_a_timed_out_or_abandoned_request_stops_generating(embedded_backend):
    """One worker: if a 504 left its generation running, the model would stay busy for the
    whole count (minutes on a loaded machine) and the next request would wait behind it."""
    from specguard.backends.embedded import EmbeddedBackend

    backend = EmbeddedBackend(workers=1, n_threads=embedded_backend._n_threads)  # the shared model
    model = backend.pool[0]
    runtime = _runtime(backend, max_tokens=1500)
    with serve(create_app(runtime, ServerSettings(request_timeout_s=2)), ready_path="/readyz") as base:
        timed_out = httpx.post(base + "/v1/chat/completions", json=LONG, headers=_headers("a"), timeout=60)
        assert timed_out.status_code == 504 and timed_out.headers["x-specguard-request-id"]
        assert _idle_within(model, 10), "generation went on after the 504"
        with pytest.raises(httpx.TimeoutException):  # a client that gives up after 1 s
            httpx.post(base + "/v1/chat/completions", json=LONG, headers=_headers("a"), timeout=1)
        assert _idle_within(model, 10), "generation went on after the client left"


def test_in_flight_limits_answer_429_per_key_and_503_for_the_server():
    with serve(create_echo_upstream(answer="slow", delay_s=2.0)) as up:
        backend = OpenAICompatBackend("echo", api_base=up + "/v1", timeout=30)
        settings = ServerSettings(max_concurrent_per_key=2, max_in_flight=3)
        with serve(create_app(_runtime(backend), settings)) as base:
            results: dict[str, list] = {"a": [], "b": []}

            def send(who):
                r = httpx.post(base + "/v1/chat/completions", json=CHAT, headers=_headers(who), timeout=30)
                results[who].append((r.status_code, r.headers.get("retry-after"), r.json()))

            first = [threading.Thread(target=send, args=("a",)) for _ in range(2)]
            first.append(threading.Thread(target=send, args=("b",)))
            for t in first:
                t.start()
            time.sleep(0.8)  # three in flight: a's two (its limit) and b's one (the server's)
            send("a")
            send("b")
            for t in first:
                t.join()
    codes = {who: sorted(r[0] for r in rs) for who, rs in results.items()}
    assert codes == {"a": [200, 200, 429], "b": [200, 503]}, codes
    for rs in results.values():
        for status, retry, body in rs:
            if status in (429, 503):
                assert retry and int(retry) >= 1
                assert body["error"]["type"] in ("rate_limit_error", "server_error")


def test_moderations_have_the_request_budget():
    """Every input escalates to a deliberative guard that answers after 3 s: 64 inputs would
    take minutes; the request budget cuts it at 1 s."""
    with serve(create_echo_upstream(answer="- Safety Assessment: safe", delay_s=3.0)) as up:
        guard_model = OpenAICompatBackend("guard", api_base=up + "/v1", timeout=30)
        runtime = _runtime(guard_model, input_check={"enabled": True, "escalate_band": [0.0, 1.0]})
        with serve(create_app(runtime, ServerSettings(request_timeout_s=1.0))) as base:
            start = time.monotonic()
            r = httpx.post(base + "/v1/moderations", headers=_headers("a"), timeout=60,
                           json={"input": [f"text {i}" for i in range(64)]})
    assert r.status_code == 504 and time.monotonic() - start < 10


def test_litellms_retries_stay_inside_the_request_budget():
    """litellm retries a failing upstream twice by default (here 0.4 s an answer, so about
    3.5 s for one call); the request budget (1 s) covers every attempt of every call of the
    graph: 504 soon after it, however many retries were left."""
    from specguard.backends.litellm import LiteLLMBackend

    with serve(create_echo_upstream(fail_status=503, delay_s=0.4)) as up:
        backend = LiteLLMBackend("openai/echo", api_base=up + "/v1", api_key="x")
        assert backend.num_retries == 2
        runtime = _runtime(backend, input_check={"enabled": True, "escalate_band": [0.0, 1.0]})
        with serve(create_app(runtime, ServerSettings(request_timeout_s=1.0))) as base:
            start = time.monotonic()
            r = httpx.post(base + "/v1/chat/completions", json=CHAT, headers=_headers("a"), timeout=60)
            took = time.monotonic() - start
    assert r.status_code == 504 and r.json()["error"]["type"] == "timeout_error", r.text
    assert took < 2.5, took


def test_a_long_stream_is_not_cut_by_the_upstream_clients_timeout():
    """The upstream client's timeout bounds each wait (here 1 s), not the whole answer (here
    six pieces 0.5 s apart): the stream arrives whole."""
    with serve(create_echo_upstream(answer="one two three four five six", pieces=6,
                                    piece_delay_s=0.5)) as up:
        backend = OpenAICompatBackend("echo", api_base=up + "/v1", timeout=1.0)
        with serve(create_app(_runtime(backend))) as base:
            client = openai.OpenAI(base_url=base + "/v1", api_key=KEYS["a"], max_retries=0)
            chunks = list(client.chat.completions.create(model="specguard", messages=CHAT["messages"],
                                                         stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four five six"


async def test_the_memory_checkpointer_keeps_a_bounded_number_of_requests():
    saver = make_checkpointer("memory:5")
    backend = ScriptedBackend(["ok"])
    runtime = Runtime(backend, policy=_policy(), store=Store(":memory:"), checkpointer=saver,
                      guard=TieredGuard(deliberative=DeliberativeChecker(backend)))
    for _ in range(30):
        await runtime.chat([user("hi")])
    assert 0 < len(saver.storage) <= 5
    assert {k[0] for k in saver.writes} <= set(saver.storage)


def test_admin_written_settings_cannot_name_files_and_errors_never_echo_them(tmp_path):
    secret = tmp_path / "secret.yaml"
    secret.write_text("harmful: [SECRET-CANARY-4242]\nbenign: []\n")
    with serve(create_app(_runtime(ScriptedBackend(["ok"]), tmp_path))) as base:
        op = _headers("op")
        answers = [httpx.patch(base + "/admin/users/ann", headers=op, json={"settings": s})
                   for s in ({"spec_update_canaries": str(secret)}, {"taxonomy": str(secret)},
                             {"taxonomy": "../../" + secret.stem},
                             {"detox": {"toxic": [str(tmp_path)]}, "stream_protection": "detox"})]
        fine = httpx.patch(base + "/admin/users/ann", headers=op,
                           json={"settings": {"spec_update_canaries": "default"}})
    for r in answers:
        assert r.status_code == 422, r.text
        assert "SECRET-CANARY" not in r.text and str(tmp_path) not in r.text
    assert fine.status_code == 200


def test_the_admin_api_is_not_in_the_published_schema():
    with serve(create_app(_runtime(ScriptedBackend(["ok"])))) as base:
        schema = httpx.get(base + "/openapi.json").json()
        docs = httpx.get(base + "/docs")
    assert "/v1/chat/completions" in schema["paths"]
    assert not [p for p in schema["paths"] if p.startswith("/admin")]
    assert docs.status_code == 200


def test_a_streaming_client_that_leaves_leaves_no_traceback(caplog):
    with serve(create_echo_upstream(answer="x" * 100, pieces=20, piece_delay_s=0.2)) as up:
        backend = OpenAICompatBackend("echo", api_base=up + "/v1")
        with serve(create_app(_runtime(backend))) as base:
            for _ in range(3):
                with httpx.stream("POST", base + "/v1/chat/completions", headers=_headers("a"),
                                  json={**CHAT, "stream": True}) as r:
                    next(r.iter_lines())
            time.sleep(1.0)
            assert httpx.get(base + "/healthz").status_code == 200
            # The in-flight slots came back: three more streams at once still fit key a's limit.
            after = [httpx.post(base + "/v1/chat/completions", json=CHAT, headers=_headers("a"),
                                timeout=60).status_code for _ in range(3)]
    assert after == [200, 200, 200]
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


def test_specs_written_without_a_provenance_are_an_admins_and_audit_times_keep_their_zone(tmp_path):
    store = Store(str(tmp_path / "p.db"))
    spec = store.specs.propose("general", "tenant:x", "Be careful.", parent=None)
    assert spec.provenance.source is SpecSource.ADMIN
    reread = Store(str(tmp_path / "p.db"))
    entry = reread.audit(1)[0]
    assert entry["at"].tzinfo is not None and entry["at"].utcoffset().total_seconds() == 0
    assert reread.specs.get("general", "tenant:x", 1).created_at.tzinfo is not None
    store.close()
    reread.close()


@pytest.mark.slow
def test_a_generated_key_is_written_to_a_private_file_never_printed(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("tenants: {default: {}}\n")
    with serve(create_echo_upstream(answer="fine")) as up:
        server = start_server(tmp_path, policy=policy, store=str(tmp_path / "k.db"),
                              api_base=up + "/v1")
        try:
            key_file = tmp_path / ".specguard-api-key"
            key = key_file.read_text().strip()
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
            assert key.startswith("sg-") and key not in server.output()
            assert httpx.get(server.url + "/v1/models",
                             headers={"authorization": f"Bearer {key}"}).status_code == 200
        finally:
            server.stop()


def test_policy_check_says_ungated_updates_wait_for_an_admin(tmp_path):
    from typer.testing import CliRunner

    from specguard.cli import app

    path = tmp_path / "p.yaml"
    path.write_text("defaults: {spec_update: metasc-10, spec_update_allow_ungated: true}\n")
    result = CliRunner().invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "waits as a candidate until an admin activates it" in " ".join(result.output.split())


def test_wire_limits_answer_the_right_status():
    with serve(create_echo_upstream(answer="fine")) as up:
        backend = OpenAICompatBackend("echo", api_base=up + "/v1")
        with serve(create_app(_runtime(backend))) as base:
            big = json.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * 1_100_000}]}).encode()
            chunked = httpx.post(base + "/v1/chat/completions", headers=_headers("a"),
                                 content=(big[i:i + 65536] for i in range(0, len(big), 65536)))
            options = {name: httpx.post(base + "/v1/chat/completions", headers=_headers("a"),
                                        json={**CHAT, name: value})
                       for name, value in (("logprobs", True), ("tool_choice", "required"),
                                           ("logit_bias", {"1": 5}),
                                           ("response_format", {"type": "json_object"}))}
            header = httpx.post(base + "/v1/chat/completions", json=CHAT,
                                headers={**_headers("a"), "x-filler": "y" * 20_000})
            ceiling = httpx.post(base + "/v1/chat/completions", headers=_headers("a"),
                                 json={**CHAT, "max_tokens": 40_000})
            stops = httpx.post(base + "/v1/chat/completions", headers=_headers("a"),
                               json={**CHAT, "stop": ["a", "b", "c", "d", "e"]})
            path_int = httpx.post(base + "/admin/specs/general/versions/99999999999999999999/activate",
                                  headers=_headers("op"))
    assert chunked.status_code == 413  # no Content-Length: counted as it arrives
    assert all(r.status_code == 400 and "not supported" in r.json()["error"]["message"]
               for r in options.values()), {k: r.text for k, r in options.items()}
    assert header.status_code == 431
    assert ceiling.status_code == 422 and stops.status_code == 422 and path_int.status_code == 422


async def test_the_policys_max_tokens_is_a_ceiling_the_client_cannot_lift():
    runtime = _runtime(ScriptedBackend(lambda messages, params: f"asked for {params.max_tokens}"),
                       max_tokens=32)
    result = await runtime.chat([user("hi")], params=GenerationParams(max_tokens=32768))
    assert result.answer == "asked for 32"
