"""scripts/guard_publish.py republishes every page that reads the shipped fast tier: none is
forgotten (each guard_* summary in docs/results is a step or says why not), each step's script
exists, and the driver's own errors are clear. (Running the steps is the hour-long job itself;
each bench's smoke test covers its script.)"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "guard_publish.py"


def _module():
    spec = importlib.util.spec_from_file_location("guard_publish", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_every_guard_summary_is_republished_or_says_why_not():
    mod = _module()
    steps = mod.steps("2026-01-01")
    published = {p.stem for p in (REPO / "docs" / "results").glob("guard_*.json")}
    assert published, "no guard summaries in docs/results"
    assert published <= {s.name for s in steps} | set(mod.NOT_A_STEP)
    for s in steps:  # each script a step names is there
        scripts = [a for a in s.argv if a.endswith(".py")]
        assert all((REPO / a).is_file() for a in scripts), s
    # timing steps come after every accuracy step that measures the artifact
    kinds = [s.timing for s in steps if s.name not in ("guard_targets", "scoreboard")]
    assert kinds == sorted(kinds)
    for name in mod.THROUGH_THE_RUNTIME:
        assert (REPO / "docs" / "results" / f"{name}.json").is_file(), name
    # a bench that loads the shipped fast tier itself publishes figures of it: it is a step
    stepped = {a for s in steps for a in s.argv if a.endswith(".py")}
    loaders = {f"bench/{p.name}" for p in (REPO / "bench").glob("*.py")
               if "load_fast_checker(" in p.read_text(encoding="utf-8")}
    assert "bench/profile_check.py" in loaders
    assert loaders - {f"bench/{n}.py" for n in mod.NOT_A_STEP} <= stepped, loaders - stepped


def test_the_driver_lists_resumes_and_refuses_an_unknown_step():
    run = [sys.executable, str(SCRIPT)]
    listed = subprocess.run([*run, "--list"], capture_output=True, text=True, check=True)
    assert "guard_fast" in listed.stdout and "guard_latency" in listed.stdout
    dry = subprocess.run([*run, "--dry-run", "--from", "guard_targets"], capture_output=True,
                         text=True, check=True)
    assert "guard_targets" in dry.stdout and "guard_fast" not in dry.stdout
    bad = subprocess.run([*run, "--from", "nope"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "not a step" in bad.stderr and "guard_latency" in bad.stderr
