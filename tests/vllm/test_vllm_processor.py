"""SpecguardLogitsProcessor maps batch rows to requests only through update_state: driven with
vLLM's own BatchUpdate objects (processor_check.py, in the vLLM venv) through a swap, a removal
with a move and a preempted request that comes back, each recording gets exactly its rows."""

from __future__ import annotations

import pytest
from _vllm_common import run_check

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def test_rows_follow_requests_through_batch_changes(vllm_env):
    got = run_check(vllm_env, "processor_check.py", "PROCESSOR_CHECK", timeout=300)
    # step tag + row index: a was at rows 0, 2 (after the swap), 1 (after the move), then was
    # preempted after 3 tokens and came back at row 1 of the fifth step
    assert got["a_keys"] == [10.0, 22.0, 31.0, 51.0]
    assert got["a_last"] == [2, 101, 102, 103] and got["a_prompt"] == [1, 2]
    assert got["c_keys"] == [12.0, 20.0, 30.0, 40.0, 50.0]
    assert got["c_last"] == [4, 301, 302, 303, 304]
    assert got["b_files"] == []  # a request without switches is never touched
