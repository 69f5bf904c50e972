"""Real server processes for the reliability suite: `specguard serve` (and `specguard admin`) in
their own processes on loopback, so a test can kill one with SIGKILL, run two replicas, or
measure one from outside while it is under load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from _loopback import free_port

BIN = Path(sys.executable).parent
ENV = {**{k: v for k, v in os.environ.items() if k != "SPECGUARD_API_KEY"},
       "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1",
       "SPECGUARD_THREADS": "1", "SPECGUARD_ENCODER_THREADS": "1", "PYTHONUNBUFFERED": "1"}


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_server(tmp: Path, *, policy: Path, store: str, backend: str = "openai:echo",
                 api_base: str | None = None, extra: list[str] | None = None,
                 wait: bool = True, env: dict | None = None, name: str = "server") -> Server:
    port = free_port()
    log = tmp / f"{name}-{port}.log"
    cmd = [str(BIN / "specguard"), "serve", "--backend", backend, "--policy", str(policy),
           "--store", store, "--port", str(port), *(["--api-base", api_base] if api_base else []),
           *(extra or [])]
    proc = subprocess.Popen(cmd, cwd=tmp, env={**ENV, **(env or {})}, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    if wait:
        wait_ready(server)
    return server


def wait_ready(server: Server, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"the server exited ({server.proc.returncode}):\n{server.output()[-3000:]}")
        try:
            if httpx.get(server.url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"the server did not get ready:\n{server.output()[-3000:]}")


@contextmanager
def running(tmp: Path, **kwargs):
    server = start_server(tmp, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def admin_cli(tmp: Path, policy: Path, store: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "specguard"), "admin", "--policy", str(policy), "--store", store,
                           *args], cwd=tmp, env=ENV, capture_output=True, text=True, timeout=timeout)


_PROBE = """
import json, sys, time, urllib.request
url, every, timeout = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
out = []
sys.stdout.write("ready\\n"); sys.stdout.flush()
while True:
    start = time.perf_counter()
    try:
        urllib.request.urlopen(url, timeout=timeout).read()
        out.append((time.perf_counter() - start) * 1000)
    except OSError:
        out.append(timeout * 1000)
    if sys.stdin in __import__("select").select([sys.stdin], [], [], every)[0]:
        break
sys.stdout.write(json.dumps(out)); sys.stdout.flush()
"""


class HealthProbe:
    """Polls /healthz every `every_s` from its own process (so the load a test generates in its
    own process does not delay the probe) and records each answer's latency; a timeout or an
    error counts as the timeout."""

    def __init__(self, url: str, every_s: float = 0.02, timeout_s: float = 5.0) -> None:
        self.args = [sys.executable, "-c", _PROBE, url + "/healthz", str(every_s), str(timeout_s)]
        self.latencies_ms: list[float] = []
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> HealthProbe:
        self._proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True)
        assert self._proc.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self._proc is None:
            return
        out, _ = self._proc.communicate("stop\n", timeout=30)
        self.latencies_ms = json.loads(out)
        self._proc = None

    def summary(self) -> dict:
        self.stop()
        xs = sorted(self.latencies_ms)
        if not xs:
            return {"n": 0, "p50_ms": 0.0, "p95_ms": 0.0, "max_ms": 0.0, "over_100ms": 0}
        return {"n": len(xs), "p50_ms": xs[len(xs) // 2], "p95_ms": xs[int(len(xs) * 0.95)],
                "max_ms": xs[-1], "over_100ms": sum(x > 100 for x in xs)}
