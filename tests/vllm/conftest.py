"""A real vLLM server for the session, from what .ci/vllm_setup.sh built: its own venv and the
embedded SmolLM2 converted to a Hugging Face folder. Absent (a developer machine that did not
run the setup): every test here skips and says how to build it.

One server per session, float32 (greedy text comparable with transformers), eager mode, with
the specguard hidden-state tap on. It takes ~3.6 GiB and both cores while it runs, so it is
started only when a test asks for it and stopped at the end of the session."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from _vllm_common import ENGINE_ENV

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("SPECGUARD_CACHE", Path.home() / ".cache" / "specguard"))
SERVED_NAME = "smollm2"
START_TIMEOUT_S = 300

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model_dir() -> Path | None:
    env = os.environ.get("SPECGUARD_VLLM_MODEL")
    if env:
        return Path(env)
    found = sorted((CACHE / "models").glob("*-hf/config.json"))
    return found[0].parent if found else None


@pytest.fixture(scope="session")
def vllm_env():
    """(python of the vLLM venv, converted model folder) or skip."""
    python = Path(os.environ.get("SPECGUARD_VLLM_PYTHON", CACHE / "vllm-venv" / "bin" / "python"))
    model = _model_dir()
    if not python.is_file() or model is None or not (model / "config.json").is_file():
        pytest.skip(
            f"the vLLM venv or converted model is absent ({python}, {model}); build them with "
            ".ci/vllm_setup.sh (or set SPECGUARD_VLLM_PYTHON / SPECGUARD_VLLM_MODEL)"
        )
    return python, model


@pytest.fixture(scope="session")
def hf_model(vllm_env):
    """The same weights in transformers (float32), the reference for text and hidden states."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    _, model = vllm_env
    tok = transformers.AutoTokenizer.from_pretrained(model)
    lm = transformers.AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    return tok, lm


@pytest.fixture(scope="session")
def vllm_server(vllm_env, tmp_path_factory):
    """A vLLM OpenAI server on loopback with the tap; yields (base URL with /v1, record root,
    datastore root)."""
    from specguard.vllm_plugin import tap_server_args

    python, model = vllm_env
    port = _free_port()
    record_root = tmp_path_factory.mktemp("vllm-records")
    store_root = tmp_path_factory.mktemp("vllm-datastores")
    log_path = tmp_path_factory.mktemp("vllm-log") / "server.log"
    env = {
        **os.environ,
        **ENGINE_ENV,
        "SPECGUARD_VLLM_RECORD_ROOT": str(record_root),
        "SPECGUARD_VLLM_DATASTORE_ROOT": str(store_root),
    }
    cmd = [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model), "--served-model-name", SERVED_NAME,
        "--host", "127.0.0.1", "--port", str(port),
        "--enforce-eager", "--dtype", "float32", "--max-model-len", "2048",
        "--max-num-seqs", "32", "--disable-log-stats", "--uvicorn-log-level", "warning",
        *tap_server_args(str(model)),
    ]
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {proc.returncode}:\n{_tail(log_path)}")
            try:
                if httpx.get(base + "/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - start > START_TIMEOUT_S:
                raise RuntimeError(f"vLLM not ready after {START_TIMEOUT_S} s:\n{_tail(log_path)}")
            time.sleep(0.5)
        print(f"\nvLLM server ready in {time.monotonic() - start:.1f} s", file=sys.stderr)
        yield f"{base}/v1", record_root, store_root
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the engine processes it started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:]


@pytest.fixture(scope="session")
def vllm_backend(vllm_server):
    from specguard.backends import load_backend

    url, _, _ = vllm_server
    return load_backend(f"vllm:{SERVED_NAME}", api_base=url, timeout=120, num_retries=0)
