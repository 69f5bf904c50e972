"""The server's added latency against calling the same upstream directly.

An OpenAI-compatible upstream that answers at once (specguard.server.echo_upstream) runs in
its own process; specguard serves in another, in front of it, with a pass-through policy (no
checks, no critique); this process is the client. For each concurrency level, the same
requests go to the upstream directly and through specguard; we report p50/p99 latency added
and the throughput ratio, all measured in this one run.

    python bench/proxy_overhead.py [--requests 2000] [--backend litellm|openai]
    python bench/proxy_overhead.py --smoke --out /tmp/x.json     # CI: 20 requests, c=1,2

Writes docs/results/proxy_overhead.json (tables in docs/results/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from specguard.evals.results import Readme, Result, Table, command_line, write_result

HERE = Path(__file__).resolve().parent
KEY = "sg-bench-key"
BODY = {"model": "specguard", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], url: str) -> subprocess.Popen:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{cmd} did not start: {proc.stderr.read().decode()[-2000:]}")


async def load(url: str, headers: dict, n: int, concurrency: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        queue = iter(range(n))

        async def worker():
            for _ in queue:
                t = time.perf_counter()
                r = await client.post(url, json=BODY, headers=headers)
                latencies.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()

        for _ in range(min(50, n)):  # warm up connections and code paths
            await client.post(url, json=BODY, headers=headers)
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return latencies, n / elapsed


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--backend", default="openai", choices=["openai", "litellm"],
                    help="how specguard reaches the upstream")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--out", default=None, help="summary path (default docs/results/)")
    ap.add_argument("--smoke", action="store_true", help="20 requests at concurrency 1 and 2")
    args = ap.parse_args()
    if args.smoke:
        args.requests, args.concurrency = 20, [1, 2]

    up_port, sg_port = free_port(), free_port()
    upstream = start([sys.executable, "-m", "uvicorn", "specguard.server.echo_upstream:app",
                      "--port", str(up_port), "--log-level", "warning", "--no-access-log"],
                     f"http://127.0.0.1:{up_port}/healthz")
    backend = ("openai:echo" if args.backend == "openai" else "litellm:openai/echo")
    proxy = start([sys.executable, "-m", "specguard.cli", "serve", "--backend", backend,
                   "--api-base", f"http://127.0.0.1:{up_port}/v1", "--port", str(sg_port),
                   "--policy", str(HERE / "passthrough_policy.yaml"), "--api-key", KEY,
                   "--upstream-api-key", "unused",
                   # one key sends every request: lift the per-key in-flight cap (a 429 at
                   # concurrency 64 would measure the limiter, not the proxy)
                   "--max-concurrent", "0"],
                  f"http://127.0.0.1:{sg_port}/healthz")
    rows: list[list] = []
    try:
        print(f"specguard -> upstream via the {args.backend} backend; {args.requests} requests per cell")
        print(f"{'conc':>5} {'direct p50':>11} {'direct p99':>11} {'proxy p50':>10} {'proxy p99':>10} "
              f"{'added p50':>10} {'added p99':>10} {'thr ratio':>10}")
        for c in args.concurrency:
            d_lat, d_thr = asyncio.run(load(f"http://127.0.0.1:{up_port}/v1/chat/completions", {},
                                            args.requests, c))
            p_lat, p_thr = asyncio.run(load(f"http://127.0.0.1:{sg_port}/v1/chat/completions",
                                            {"authorization": f"Bearer {KEY}"}, args.requests, c))
            print(f"{c:>5} {pct(d_lat, .5):>9.2f}ms {pct(d_lat, .99):>9.2f}ms {pct(p_lat, .5):>8.2f}ms "
                  f"{pct(p_lat, .99):>8.2f}ms {pct(p_lat, .5) - pct(d_lat, .5):>8.2f}ms "
                  f"{pct(p_lat, .99) - pct(d_lat, .99):>8.2f}ms {p_thr / d_thr:>9.2f}x"
                  f"   (direct {d_thr:.0f} req/s, proxy {p_thr:.0f} req/s, mean added "
                  f"{statistics.mean(p_lat) - statistics.mean(d_lat):.2f}ms)")
            rows.append([c, round(pct(d_lat, .5), 2), round(pct(d_lat, .99), 2),
                         round(pct(p_lat, .5), 2), round(pct(p_lat, .99), 2),
                         round(pct(p_lat, .5) - pct(d_lat, .5), 2),
                         round(pct(p_lat, .99) - pct(d_lat, .99), 2),
                         f"{p_thr / d_thr:.2f}x", round(d_thr), round(p_thr)])
    finally:
        proxy.terminate()
        upstream.terminate()
    first = rows[0]
    path = write_result(Result(
        name="proxy_overhead", title="Proxy overhead", script="bench/proxy_overhead.py",
        command=command_line(), smoke=args.smoke,
        readme=Readme(
            what="proxy overhead (pass-through policy, loopback upstream)",
            where="docs/results/performance.md",
            headline=f"+{first[5]} ms p50, +{first[6]} ms p99 at concurrency {first[0]} via the "
                     f"`{args.backend}:` backend"),
        tables=[Table(
            id="latency", title=f"specguard -> upstream via the {args.backend} backend, "
            f"{args.requests} requests per row",
            columns=["concurrency", "direct p50 ms", "direct p99 ms", "proxy p50 ms",
                     "proxy p99 ms", "added p50 ms", "added p99 ms", "throughput ratio",
                     "direct req/s", "proxy req/s"], rows=rows,
            note="Baseline: the same requests sent straight to the upstream in the same run. "
                 "The upstream answers at once (specguard.server.echo_upstream), so the added "
                 "time is specguard's own.")],
        data={"rows": rows, "backend": args.backend, "requests": args.requests}), args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
