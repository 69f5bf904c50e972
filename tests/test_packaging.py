"""Build the wheel, install it into a clean venv and import it there, away from the source
tree: catches modules or data files missing from the package list."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_wheel_installs_and_imports_in_a_clean_venv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
                   check=True, capture_output=True, cwd=tmp_path)
    wheel = next(dist.glob("specguard-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], check=True,
                   capture_output=True, cwd=tmp_path)
    probe = r"""
import sys, time, json
t = time.perf_counter()
import specguard
elapsed = time.perf_counter() - t
heavy = sorted(m for m in ("torch", "llama_cpp", "faiss", "vllm", "sklearn", "litellm", "fastapi") if m in sys.modules)
from specguard.spec import builtin_specs
from specguard.policy import Policy
from specguard.graph import build_chat_graph
from specguard.agents import SpecUpdater
import specguard.evals, specguard.guard, specguard.store, specguard.backends
from importlib import resources
policies = [p.name for p in (resources.files("specguard.specs") / "policies").iterdir()]
from specguard.evals.suites import builtin_suites
from specguard.guard.fast import SHIPPED_ARTIFACTS, shipped_artifact_path
artifacts = [n for n in SHIPPED_ARTIFACTS if shipped_artifact_path(n) is not None
             and (shipped_artifact_path(n) / "weights.npz").is_file()]
templates = [p.name for p in (resources.files("specguard.evals") / "templates").iterdir()]
from specguard.guard import written
print(json.dumps({"written": len(written.load()), "file": specguard.__file__, "import_s": elapsed, "heavy": heavy,
                  "specs": sorted(builtin_specs()), "policies": policies,
                  "suites": builtin_suites(), "artifacts": artifacts, "templates": templates}))
"""
    out = subprocess.run([str(py), "-c", probe], check=True, capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    import json

    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert str(ROOT) not in info["file"] and "site-packages" in info["file"]
    assert info["heavy"] == [], f"`import specguard` pulled in heavy modules: {info['heavy']}"
    assert {"general", "privacy", "honesty"} <= set(info["specs"])
    assert "two_tenants.yaml" in info["policies"]
    assert {"refusal", "metasc", "guard", "guard_fast"} <= set(info["suites"])
    assert info["artifacts"] == ["fast_default"]  # a folder with its model card
    assert info["templates"]
    assert info["written"] > 0  # the guard's written training requests ship as package data
    subprocess.run([str(env_dir / "bin" / "specguard"), "--help"], check=True, capture_output=True)
