"""The malformed-body corpus (tests/reliability/_corpus.py, 400+ requests) against real servers
on loopback: no request may answer 500 or drop the connection, none may take over 10 s, and
every error is OpenAI-shaped with the request's id. The upstream is the loopback echo server
(specguard.server.echo_upstream), also in its misbehaving modes; a second server runs the real
embedded model for what only a real tokenizer can get wrong."""

from __future__ import annotations

import collections
import json
import socket
import time

import httpx
import pytest

from specguard.backends.openai_compat import OpenAICompatBackend
from specguard.core import Runtime
from specguard.guard import TieredGuard
from specguard.guard.deliberative import DeliberativeChecker
from specguard.policy import Policy, hash_key
from specguard.server import ServerSettings, create_app
from specguard.server.echo_upstream import create_echo_upstream
from specguard.store import Store

from _corpus import admin_cases, chat_cases, moderation_cases
from _loopback import serve

KEY, OPERATOR = "sg-corpus-user", "sg-corpus-operator"
AUTH = {"authorization": f"Bearer {KEY}"}
ADMIN = {"authorization": f"Bearer {OPERATOR}"}
HANG_S = 10.0
# Nothing checks (the corpus is about the wire, not the guard); the guard that would check is
# the real deliberative tier, never called here.
PASS_THROUGH = {"input_check": {"enabled": False}, "output_check": {"enabled": False},
                "critique": "off", "stream_protection": "pass", "max_tokens": 4}


def _policy() -> Policy:
    return Policy.from_dict({
        "defaults": PASS_THROUGH,
        "tenants": {"default": {}},
        "api_keys": [
            {"name": "corpus", "sha256": hash_key(KEY), "tenant": "default", "trusted_gateway": True},
            {"name": "operator", "sha256": hash_key(OPERATOR), "tenant": "default", "operator": True},
        ],
    })


def _app(backend, tmp_path, **settings):
    runtime = Runtime(backend, policy=_policy(), store=Store(str(tmp_path / "corpus.db")),
                      guard=TieredGuard(deliberative=DeliberativeChecker(backend)))
    return create_app(runtime, ServerSettings(body_timeout_s=3, **settings))


def _send(client: httpx.Client, case) -> tuple[int | None, float, str]:
    """(status or None for a hang / dropped connection, seconds, problem or "")."""
    name, method, path, headers, body = case
    kwargs: dict = {"headers": headers}
    if isinstance(body, bytes) or hasattr(body, "__next__"):
        kwargs["content"] = body
    elif body is not None:
        kwargs["content"] = json.dumps(body, ensure_ascii=True).encode()
        kwargs["headers"] = {"content-type": "application/json", **headers}
    start = time.perf_counter()
    try:
        with client.stream(method, path, **kwargs) as r:
            data = r.read()
    except httpx.TimeoutException:
        return None, time.perf_counter() - start, "hang"
    except httpx.TransportError as exc:
        return None, time.perf_counter() - start, f"connection: {type(exc).__name__}"
    seconds = time.perf_counter() - start
    return r.status_code, seconds, _problem(r, data)


def _problem(r: httpx.Response, data: bytes) -> str:
    """What is wrong with an answer's shape ("" when nothing)."""
    if r.status_code >= 400:
        if "x-specguard-request-id" not in r.headers:
            return "no request id"
        try:
            error = json.loads(data)["error"]
        except (ValueError, KeyError, TypeError):
            return "error not OpenAI-shaped"
        if not {"message", "type", "code"} <= set(error):
            return "error not OpenAI-shaped"
        if r.status_code in (429, 503) and "retry-after" not in r.headers:
            return "no Retry-After"
        return ""
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        events = [line[6:] for line in data.decode().split("\n") if line.startswith("data: ")]
        if not events or events[-1] != "[DONE]":
            return "stream without [DONE]"
    return ""


def _run(base: str, cases) -> dict:
    statuses: collections.Counter = collections.Counter()
    bad: list[str] = []
    slowest = 0.0
    with httpx.Client(base_url=base, timeout=httpx.Timeout(HANG_S)) as client:
        for case in cases:
            status, seconds, problem = _send(client, case)
            statuses[status] += 1
            slowest = max(slowest, seconds)
            if status is None or status >= 500 and status not in (502, 503, 504) or problem:
                bad.append(f"{case[0]}: {status} {problem}")
            if status == 500:
                bad.append(f"{case[0]}: answered 500")
    return {"statuses": statuses, "bad": bad, "slowest_s": slowest, "n": len(cases)}


@pytest.fixture(scope="module")
def upstream():
    with serve(create_echo_upstream(answer="hello from upstream")) as url:
        yield url


def test_the_corpus_never_answers_500_or_hangs(upstream, tmp_path):
    backend = OpenAICompatBackend("echo", api_base=upstream + "/v1", timeout=5)
    cases = chat_cases(AUTH) + moderation_cases(AUTH) + admin_cases(ADMIN)
    assert len(cases) >= 300
    with serve(_app(backend, tmp_path)) as base:
        result = _run(base, cases)
        raw = _raw_socket_cases(base)
    print(f"\nmalformed corpus: {result['n']} requests + {len(raw)} raw; statuses "
          f"{dict(sorted(result['statuses'].items(), key=lambda kv: str(kv[0])))}; slowest "
          f"{result['slowest_s']:.2f} s")
    assert not result["bad"], "\n".join(result["bad"])
    assert result["statuses"][500] == 0 and result["statuses"][None] == 0
    assert result["slowest_s"] < HANG_S
    assert all(status not in (None, 500) for status in raw.values()), raw
    assert raw["stalled-body"] == 408  # a body that stops arriving is answered, not waited on


def _raw_socket_cases(base: str) -> dict[str, int | None]:
    """Framing an HTTP client library will not send: a body that stops arriving, a request
    line that is not HTTP. The status line's code, or None when the server closed silently."""
    host, port = base.removeprefix("http://").split(":")
    body = json.dumps({"model": "specguard", "messages": [{"role": "user", "content": "hi"}]})
    requests = {
        "stalled-body": (f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                         f"authorization: Bearer {KEY}\r\ncontent-type: application/json\r\n"
                         f"content-length: {len(body) + 500}\r\n\r\n{body}"),
        "short-content-length": (f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                                 f"authorization: Bearer {KEY}\r\ncontent-type: application/json\r\n"
                                 f"content-length: 10\r\n\r\n{body}"),
        "garbage": "THIS IS NOT HTTP\r\n\r\n",
        "no-host-huge-line": "GET /" + "a" * 70_000 + " HTTP/1.1\r\n\r\n",
    }
    out = {}
    for name, text in requests.items():
        with socket.create_connection((host, int(port)), timeout=HANG_S) as s:
            s.sendall(text.encode())
            try:
                first = s.recv(64).decode(errors="replace")
            except (TimeoutError, ConnectionResetError):
                first = ""
        out[name] = int(first.split()[1]) if first.startswith("HTTP/") else None
    return out


@pytest.mark.parametrize("mode", ["no_choices", "bad_json", "bad_sse_first", "bad_sse_mid",
                                  "list_event", "fail"])
def test_a_misbehaving_upstream_is_502_or_an_error_event_never_a_reset(mode, tmp_path):
    secret = "Bearer sk-live-upstream-secret at 10.1.2.3"
    kwargs = {"fail_status": 500, "error_detail": secret} if mode == "fail" else {"mode": mode}
    with serve(create_echo_upstream(answer="first piece second piece", pieces=2, **kwargs)) as up:
        backend = OpenAICompatBackend("echo", api_base=up + "/v1", timeout=5)
        with serve(_app(backend, tmp_path)) as base, httpx.Client(base_url=base, timeout=HANG_S) as c:
            plain = c.post("/v1/chat/completions", headers=AUTH,
                           json={"model": "specguard", "messages": [{"role": "user", "content": "hi"}]})
            streamed = c.post("/v1/chat/completions", headers=AUTH,
                              json={"model": "specguard", "stream": True,
                                    "messages": [{"role": "user", "content": "hi"}]})
    plain_fails = mode in ("no_choices", "bad_json", "fail")
    stream_fails_first = mode in ("bad_sse_first", "list_event", "fail")
    assert "sk-live" not in plain.text + streamed.text and "10.1.2.3" not in plain.text + streamed.text
    if plain_fails:
        assert plain.status_code == 502, plain.text
        assert plain.json()["error"]["type"] == "upstream_error"
        assert plain.headers["x-specguard-request-id"] in plain.json()["error"]["message"]
    else:
        assert plain.status_code == 200, plain.text
    if stream_fails_first:  # before the first byte: a status
        assert streamed.status_code == 502 and streamed.json()["error"]["type"] == "upstream_error"
        return
    assert streamed.status_code == 200
    events = [line[6:] for line in streamed.text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    if mode == "bad_sse_mid":  # after the first byte: the text so far, an error event, [DONE]
        assert "first" in streamed.text
        assert json.loads(events[-2])["error"]["type"] == "upstream_error"


@pytest.mark.model
def test_what_only_the_real_model_gets_wrong(embedded_backend, tmp_path):
    """Lone surrogates, a prompt longer than the context, huge max_tokens and seeds, stop lists
    with control-token text: 4xx where the client is wrong, answers where it is not."""
    with serve(_app(embedded_backend, tmp_path), ready_path="/readyz") as base, \
            httpx.Client(base_url=base, timeout=120) as c:
        def post(content, **extra):
            body = {"model": "specguard", "messages": [{"role": "user", "content": content}], **extra}
            return c.post("/v1/chat/completions", headers={**AUTH, "content-type": "application/json"},
                          content=json.dumps(body, ensure_ascii=True))

        surrogate = post("lone \ud800 surrogate")
        assert surrogate.status_code == 400 and "surrogate" in surrogate.json()["error"]["message"]
        assert post("lone \ud800", stream=True).status_code == 400
        too_long = post("word " * 6000)
        assert too_long.status_code == 400, too_long.text
        assert too_long.json()["error"]["code"] == "context_length_exceeded"
        assert post("hi", max_tokens=32768, seed=2**63 - 1, stop=["<|im_end|>", "\n\n"]).status_code == 200
        assert post("hi", max_tokens=32769).status_code == 422
        streamed = post("hi", stream=True, seed=-(2**63))
        assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")
