"""A real vLLM server for the session, from what .ci/vllm_setup.sh built: its own venv and the
embedded SmolLM2 converted to a Hugging Face folder. Absent (a developer machine that did not
run the setup): every test here skips and says how to build it.

One server per session, float32 (greedy text comparable with transformers), eager mode, with
the specguard hidden-state tap on. It takes ~3.6 GiB and both cores while it runs, so it is
started only when a test asks for it and stopped at the end of the session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from _vllm_common import ENGINE_ENV

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("SPECGUARD_CACHE", Path.home() / ".cache" / "specguard"))
SERVED_NAME = "smollm2"
START_TIMEOUT_S = 300


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
    from specguard.backends.vllm import VLLMServerProcess

    python, model = vllm_env
    record_root = tmp_path_factory.mktemp("vllm-records")
    store_root = tmp_path_factory.mktemp("vllm-datastores")
    server = VLLMServerProcess(
        model, python=python, served_name=SERVED_NAME, tap=True,
        args=["--enforce-eager", "--dtype", "float32", "--max-model-len", "2048",
              "--max-num-seqs", "32", "--disable-log-stats", "--uvicorn-log-level", "warning"],
        env={**ENGINE_ENV, "SPECGUARD_VLLM_RECORD_ROOT": str(record_root),
             "SPECGUARD_VLLM_DATASTORE_ROOT": str(store_root)},
        log_path=tmp_path_factory.mktemp("vllm-log") / "server.log",
    )
    with server:
        ready = server.wait_ready(START_TIMEOUT_S)
        print(f"\nvLLM server ready in {ready:.1f} s", file=sys.stderr)
        yield server.url, record_root, store_root


@pytest.fixture(scope="session")
def vllm_backend(vllm_server):
    from specguard.backends import load_backend

    url, _, _ = vllm_server
    return load_backend(f"vllm:{SERVED_NAME}", api_base=url, timeout=120, num_retries=0)
