"""A soak of the guarded server: many streams held open at once, for a while, on loopback.

An OpenAI-compatible upstream (specguard.server.echo_upstream) streams each answer in pieces,
`--piece-delay` apart, from its own process; `specguard serve` runs in another, in front of it,
with the shipped fast tier checking every input and, in chunked mode, every streamed answer
(deliberative tier off: no model judges); this process keeps `--streams` streams open at all
times for `--duration` seconds. Reported: the streams held at once, streams completed, their
latency (p50/p99: first byte, whole stream), answers of 5xx, streams that ended without
`[DONE]` or with an error event, and the server's resident memory before (after a warm-up) and
after. Nothing here is a baseline: a soak is pass/fail, and its memory growth a trend to watch.

    python bench/soak.py [--streams 64] [--duration 60]
    python bench/soak.py --smoke --out /tmp/x.json     # CI: 8 streams for 4 s

Writes docs/results/reliability.json (tables in docs/results/reliability.md). The machine is
shared: latency figures move with its load (recorded in the summary), the pass/fail ones do not.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from specguard.evals.results import Readme, Result, Table, command_line, write_result

KEY = "sg-soak-key"
ANSWER = ("Bread is made from flour, water, salt and yeast. Knead the dough, let it rise, shape "
          "it and bake it until the crust is golden and the loaf sounds hollow when tapped.")
QUESTIONS = ["How do I bake bread at home?", "What makes sourdough rise?",
             "Why does bread go stale?", "How long should dough rest?"]
POLICY = """
defaults:
  input_check: {{deliberative: false}}
  output_check: {{deliberative: false}}
  critique: "off"
  on_violation: refuse
  stream_protection: chunked
  stream_holdback_chars: 40
  max_tokens: 64
tenants: {{default: {{}}}}
api_keys:
  - {{name: soak, sha256: {sha}, tenant: default}}
"""


# /healthz polled every 50 ms from its own process while the soak runs (its latencies, in ms,
# printed as JSON when it reads a line on stdin).
PROBE = """
import json, select, sys, time, urllib.request
out = []
print("ready", flush=True)
while not select.select([sys.stdin], [], [], 0.05)[0]:
    start = time.perf_counter()
    try:
        urllib.request.urlopen(sys.argv[1], timeout=10).read()
        out.append((time.perf_counter() - start) * 1000)
    except OSError:
        out.append(10_000.0)
print(json.dumps(out), flush=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"did not start:\n{log.read_text()[-3000:]}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Tally:
    def __init__(self) -> None:
        self.open = 0
        self.held = 0
        self.ttfb: list[float] = []
        self.total: list[float] = []
        self.status: dict[str, int] = {}
        self.incomplete = 0
        self.error_events = 0

    def count(self, key: str) -> None:
        self.status[key] = self.status.get(key, 0) + 1


async def one_stream(client: httpx.AsyncClient, i: int, tally: Tally | None) -> None:
    body = {"model": "specguard", "stream": True,
            "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]}
    start = time.perf_counter()
    first = None
    done = False
    if tally:
        tally.open += 1
        tally.held = max(tally.held, tally.open)
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            if tally:
                tally.count(str(r.status_code))
            if r.status_code != 200:
                await r.aread()
                return
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                first = first or time.perf_counter()
                if line == "data: [DONE]":
                    done = True
                elif tally and '"error"' in line and "error" in json.loads(line[6:]):
                    tally.error_events += 1
    except httpx.HTTPError as exc:
        if tally:
            tally.count(type(exc).__name__)
        return
    finally:
        if tally:
            tally.open -= 1
    if tally:
        if not done:
            tally.incomplete += 1
        elif first is not None:
            tally.ttfb.append((first - start) * 1000)
            tally.total.append((time.perf_counter() - start) * 1000)


async def hold(url: str, streams: int, seconds: float, tally: Tally | None) -> None:
    """Keep `streams` streams open until `seconds` have passed (each worker opens the next as
    soon as its stream ends)."""
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120,
                                 headers={"authorization": f"Bearer {KEY}"}) as client:
        stop = time.monotonic() + seconds

        async def worker(w: int) -> None:
            n = 0
            while time.monotonic() < stop:
                await one_stream(client, w * 1000 + n, tally)
                n += 1

        await asyncio.gather(*(worker(w) for w in range(streams)))


def pcts(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return float("nan"), float("nan")
    xs = sorted(xs)
    return round(statistics.median(xs), 1), round(xs[min(len(xs) - 1, int(len(xs) * 0.99))], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds measured")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds before the first RSS sample")
    ap.add_argument("--pieces", type=int, default=8, help="upstream chunks per answer")
    ap.add_argument("--piece-delay", type=float, default=0.1, help="seconds between them")
    ap.add_argument("--smoke", action="store_true", help="8 streams for 4 s")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.smoke:
        args.streams, args.duration, args.warmup = 8, 4.0, 1.0

    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory(prefix="specguard-soak-") as tmp:
        tmp = Path(tmp)
        policy = tmp / "policy.yaml"
        policy.write_text(POLICY.format(sha=hashlib.sha256(KEY.encode()).hexdigest()))
        up_port, port = free_port(), free_port()
        up_log, log = tmp / "upstream.log", tmp / "server.log"
        upstream = subprocess.Popen(
            [sys.executable, "-c",
             "import uvicorn, sys; from specguard.server.echo_upstream import create_echo_upstream; "
             f"uvicorn.run(create_echo_upstream(answer={ANSWER!r}, pieces={args.pieces}, "
             f"piece_delay_s={args.piece_delay}), host='127.0.0.1', port={up_port}, "
             "log_level='warning')"], env=env, stdout=up_log.open("wb"), stderr=subprocess.STDOUT)
        server = subprocess.Popen(
            [str(bin_dir / "specguard"), "serve", "--backend", "openai:echo", "--api-base",
             f"http://127.0.0.1:{up_port}/v1", "--policy", str(policy), "--store",
             str(tmp / "soak.db"), "--port", str(port), "--max-concurrent", "0"],
            cwd=tmp, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        try:
            wait(f"http://127.0.0.1:{up_port}/healthz", upstream, up_log)
            url = f"http://127.0.0.1:{port}"
            wait(url + "/readyz", server, log)
            asyncio.run(hold(url, args.streams, args.warmup, None))
            rss_before = rss_mb(server.pid)
            tally = Tally()
            probe = subprocess.Popen([sys.executable, "-c", PROBE, url + "/healthz"], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert probe.stdout.readline().strip() == "ready"
            started = time.perf_counter()
            asyncio.run(hold(url, args.streams, args.duration, tally))
            elapsed = time.perf_counter() - started
            health = sorted(json.loads(probe.communicate("stop\n", timeout=30)[0]))
            rss_after = rss_mb(server.pid)
            alive = server.poll() is None
            problems = [line for line in log.read_text(errors="replace").splitlines()
                        if "request sg-" in line or "Traceback" in line][-20:]
        finally:
            for proc in (server, upstream):
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()

    completed = len(tally.total)
    fivexx = sum(n for k, n in tally.status.items() if k.startswith("5"))
    failed = sum(n for k, n in tally.status.items() if not k.isdigit())
    ttfb50, ttfb99 = pcts(tally.ttfb)
    tot50, tot99 = pcts(tally.total)
    growth = round(rss_after - rss_before, 1)
    health50, health99 = pcts(health)
    health_max = round(health[-1], 1) if health else float("nan")
    data = {"streams": args.streams, "duration_s": args.duration, "elapsed_s": round(elapsed, 1),
            "held": tally.held, "completed": completed, "statuses": tally.status,
            "answers_5xx": fivexx, "connection_failures": failed,
            "incomplete_streams": tally.incomplete, "error_events": tally.error_events,
            "ttfb_ms": {"p50": ttfb50, "p99": ttfb99}, "stream_ms": {"p50": tot50, "p99": tot99},
            "healthz_ms": {"n": len(health), "p50": health50, "p99": health99, "max": health_max},
            "rss_mb": {"before": round(rss_before, 1), "after": round(rss_after, 1),
                       "growth": growth},
            "server_alive": alive, "pieces": args.pieces, "piece_delay_s": args.piece_delay}
    print(json.dumps(data, indent=1))
    if problems:
        print("server log (last problems):\n" + "\n".join(problems))
    path = write_result(Result(
        name="reliability", title="Soak: streams held open against the guarded server",
        script="bench/soak.py", command=command_line(), smoke=args.smoke,
        readme=Readme(
            what=f"soak: {args.streams} streams for {args.duration:.0f} s (fast tier, chunked)",
            where="docs/results/reliability.md",
            headline=(f"{tally.held} streams held, {completed} completed, {fivexx} answers of "
                      f"5xx, {tally.incomplete} without [DONE]; stream p50 {tot50} ms / p99 "
                      f"{tot99} ms; server RSS {rss_before:.0f} -> {rss_after:.0f} MB")),
        tables=[Table(
            id="soak", title=f"{args.streams} concurrent streams for {args.duration:.0f} s",
            columns=["streams held", "completed", "streams/s", "5xx", "failed connections",
                     "without [DONE]", "error events", "first byte p50 / p99 ms",
                     "stream p50 / p99 ms", "/healthz p50 / p99 / max ms", "RSS before MB",
                     "RSS after MB", "RSS growth MB"],
            rows=[[tally.held, completed, round(completed / elapsed, 1), fivexx, failed,
                   tally.incomplete, tally.error_events, f"{ttfb50} / {ttfb99}",
                   f"{tot50} / {tot99}", f"{health50} / {health99} / {health_max}",
                   round(rss_before, 1), round(rss_after, 1), growth]],
            note=(f"Each answer streams from the upstream in {args.pieces} pieces "
                  f"{args.piece_delay} s apart; the fast tier checks the input and, every "
                  f"40 characters, the streamed answer. /healthz is polled every 50 ms from "
                  f"another process meanwhile. RSS is sampled after {args.warmup:.0f} s of the "
                  f"same load, then at the end."))],
        data=data), args.out)
    print(f"wrote {path}")
    if fivexx or failed or tally.incomplete or not alive:
        raise SystemExit("the soak saw failures (see above)")


if __name__ == "__main__":
    main()
