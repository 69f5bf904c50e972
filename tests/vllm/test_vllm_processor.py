"""SpecguardLogitsProcessor maps batch rows to requests only through update_state: driven with
vLLM's own BatchUpdate objects (processor_check.py, in the vLLM venv) through a swap, a removal
with a move and a preempted request that comes back, each recording gets exactly its rows."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from _vllm_common import ENGINE_ENV

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def test_rows_follow_requests_through_batch_changes(vllm_env):
    python, model = vllm_env
    proc = subprocess.run(
        [str(python), str(Path(__file__).with_name("processor_check.py")), str(model)],
        env={**os.environ, **ENGINE_ENV}, capture_output=True, text=True, timeout=300, check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROCESSOR_CHECK ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    got = json.loads(lines[-1].removeprefix("PROCESSOR_CHECK "))
    # step tag + row index: a was at rows 0, 2 (after the swap), 1 (after the move), then was
    # preempted after 3 tokens and came back at row 1 of the fifth step
    assert got["a_keys"] == [10.0, 22.0, 31.0, 51.0]
    assert got["a_last"] == [2, 101, 102, 103] and got["a_prompt"] == [1, 2]
    assert got["c_keys"] == [12.0, 20.0, 30.0, 40.0, 50.0]
    assert got["c_last"] == [4, 301, 302, 303, 304]
    assert got["b_files"] == []  # a request without switches is never touched
