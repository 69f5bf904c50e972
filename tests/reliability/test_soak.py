"""The soak: bench/soak.py (a real `specguard serve`, a streaming loopback upstream, the shipped
fast tier on every input and every streamed answer) holds 64 streams open for 30 s. Every
stream must end with [DONE], none may answer 5xx or drop, the server must be alive at the end;
its memory growth is reported (and must stay bounded)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from specguard.evals.results import read_result

from _procs import ENV

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_64_streams_for_30_seconds(tmp_path):
    out = tmp_path / "reliability.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "soak.py"), "--streams", "64",
                           "--duration", "30", "--warmup", "5", "--out", str(out)],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = read_result(out).data
    print("\nsoak:", json.dumps(data))
    assert data["held"] == 64 and data["completed"] >= 64
    assert data["answers_5xx"] == 0 and data["connection_failures"] == 0
    assert data["incomplete_streams"] == 0 and data["error_events"] == 0
    assert data["server_alive"]
    # Memory that grows with traffic (no bound on a cache, a leak) shows over 30 s of this
    # load; the steady state after the warm-up moves by a few MB.
    assert data["rss_mb"]["growth"] < 100, data["rss_mb"]
