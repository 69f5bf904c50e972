"""litellm against a real llama.cpp server (python -m llama_cpp.server) on loopback serving the
embedded GGUF; and the lean OpenAI-compatible backend against the same server."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from specguard.backends.litellm import LiteLLMBackend
from specguard.backends.openai_compat import OpenAICompatBackend
from specguard.types import GenerationParams, user

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def llamacpp_server(embedded_backend, tmp_path_factory):
    pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
    from _loopback import free_port

    port = free_port()
    # One thread: this second llama.cpp context must not fight the test process's one.
    # The log goes to a file: a pipe nobody reads fills up and stalls the server.
    log_path = tmp_path_factory.mktemp("llamacpp") / "server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "specguard.backends.llama_server", "--model", str(embedded_backend.model_path),
         "--port", str(port), "--n_threads", "1", "--n_ctx", "2048", "--model_alias", "smollm2",
         "--verbose", "False"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ},
    )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(base + "/models", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"llama_cpp.server did not start: {log_path.read_text()[-1500:]}")
        time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


@pytest.mark.parametrize("make", [
    lambda base: LiteLLMBackend("openai/smollm2", api_base=base, api_key="none", num_retries=0),
    lambda base: OpenAICompatBackend("smollm2", api_base=base),
], ids=["litellm", "openai-compat"])
async def test_complete_and_stream_through_a_llamacpp_server(llamacpp_server, make):
    backend = make(llamacpp_server)
    params = GenerationParams(max_tokens=8)
    out = await backend.complete([user("Say hi.")], params)
    assert out.text and out.usage.completion_tokens > 0
    chunks = [c async for c in backend.stream([user("Say hi.")], params)]
    assert "".join(c.text for c in chunks) == out.text
    assert chunks[-1].finish_reason in {"stop", "length"}
    await backend.aclose()


async def test_guarded_runtime_answers_through_litellm(llamacpp_server):
    from specguard.core import Runtime
    from specguard.policy import Policy
    from specguard.store import Store

    # llama-cpp-python's server takes a schema as {"type": "json_object", "schema": ...}
    backend = LiteLLMBackend("openai/smollm2", api_base=llamacpp_server, api_key="none",
                             num_retries=0, schema_style="json_object")
    rt = Runtime(backend, policy=Policy.from_dict({"defaults": {"max_tokens": 12, "critique": "off"}}),
                 store=Store(":memory:"))
    result = await rt.chat([user("Name a colour.")])
    assert result.answer
    assert result.report.model_calls >= 1 and result.report.decisions
    assert all(v.parse_ok for v in result.report.verdicts)  # the guard's constrained output parsed


async def test_constrained_output_through_litellm(llamacpp_server):
    import json

    backend = LiteLLMBackend("openai/smollm2", api_base=llamacpp_server, api_key="none",
                             num_retries=0, schema_style="json_object")
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": ["safe", "unsafe"]}},
              "required": ["label"]}
    out = await backend.complete([user("Is tea safe?")], GenerationParams(max_tokens=16, json_schema=schema))
    assert json.loads(out.text)["label"] in {"safe", "unsafe"}
