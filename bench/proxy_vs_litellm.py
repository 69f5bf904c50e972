"""specguard against the LiteLLM proxy, side by side in one run on loopback (issue 19).

One OpenAI-compatible upstream that answers at once (specguard.server.echo_upstream, its own
process) sits behind each target; this process is the load generator. Targets:

- direct: the upstream itself (the baseline every "added" figure subtracts);
- litellm: the LiteLLM proxy (`litellm --config`, one worker, no guardrails);
- specguard pass-through: `specguard serve` with no checks (bench/passthrough_policy.yaml),
  through the same graph as every request;
- specguard fast checks: input and output checks by the shipped fast guard (fast_default);
- specguard fast checks, 2 workers: the same with `--workers 2`.

specguard runs as served (metrics and the JSON access log on, written to /dev/null). For each
concurrency level, each round sends `--requests` requests to every target in turn, and the
rounds are interleaved (`--rounds`, 3 by default), so load from elsewhere on the machine falls
on every target alike. Every guarded answer must be "allowed" (a refusal would skip the model).
The load generator shares the machine's cores: read the ratios, not the absolute times.

    python bench/proxy_vs_litellm.py [--requests 500] [--rounds 3] [--concurrency 1 16 64]
    python bench/proxy_vs_litellm.py --smoke --out /tmp/x.json   # CI: 20 requests, c=1,2, 1 round

Writes docs/results/proxy.json (docs/results/proxy.md is generated from it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from specguard.evals.results import Readme, Result, Table, command_line, write_result

HERE = Path(__file__).resolve().parent
KEY = "sg-bench-key"
LITELLM_KEY = "sk-" + "5e" * 32  # the proxy refuses to start without a master key
ANSWER = "Bread needs flour, water, salt and yeast: mix, knead, let it rise, shape and bake."
QUESTION = "How is bread made?"
_UPSTREAM = ("import sys, uvicorn; from specguard.server.echo_upstream import "
             "create_echo_upstream as c; uvicorn.run(c(answer=sys.argv[2]), host='127.0.0.1', "
             "port=int(sys.argv[1]), log_level='warning', access_log=False)")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], url: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{cmd} did not start: {proc.stderr.read().decode()[-3000:]}")


async def load(url: str, headers: dict, model: str, n: int, concurrency: int,
               guarded: bool) -> tuple[list[float], float]:
    body = {"model": model, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 32}
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        queue = iter(range(n))

        async def one() -> None:
            r = await client.post(url, json=body, headers=headers)
            r.raise_for_status()
            if guarded and r.headers.get("x-specguard-action") != "allowed":
                raise RuntimeError(f"a guarded answer was {r.headers.get('x-specguard-action')}: "
                                   "the bench measures allowed requests only")

        async def worker() -> None:
            for _ in queue:
                t = time.perf_counter()
                await one()
                latencies.append((time.perf_counter() - t) * 1000)

        for _ in range(min(20, n)):  # warm connections and code paths
            await one()
        start_t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start_t
    return latencies, n / elapsed


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=500, help="per target, round and level")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--out", default=None, help="summary path (default docs/results/)")
    ap.add_argument("--smoke", action="store_true", help="20 requests, c=1,2, one round")
    args = ap.parse_args()
    if args.smoke:
        args.requests, args.concurrency, args.rounds = 20, [1, 2], 1

    tmp = Path(tempfile.mkdtemp(prefix="proxy-vs-litellm-"))
    procs: list[subprocess.Popen] = []
    ports = {name: free_port() for name in ("upstream", "litellm", "pass", "checks", "workers")}
    up = f"http://127.0.0.1:{ports['upstream']}"
    (tmp / "litellm.yaml").write_text(
        "model_list:\n  - model_name: specguard\n    litellm_params:\n"
        f"      model: openai/echo\n      api_base: {up}/v1\n      api_key: unused\n"
        f"general_settings:\n  master_key: {LITELLM_KEY}\n")
    (tmp / "checks.yaml").write_text("tenants: {default: {}}\n")  # the default checks
    serve = [sys.executable, "-m", "specguard.cli", "serve", "--backend", "openai:echo",
             "--api-base", up + "/v1", "--store", str(tmp / "specguard.db"),
             # one key sends every request: no per-key cap (a 429 would measure the limiter)
             "--max-concurrent", "0", "--fast-guard", "fast_default"]
    targets = {
        "direct": (up, None, False),
        "litellm": (f"http://127.0.0.1:{ports['litellm']}", LITELLM_KEY, False),
        "specguard pass-through": (f"http://127.0.0.1:{ports['pass']}", KEY, True),
        "specguard fast checks": (f"http://127.0.0.1:{ports['checks']}", KEY, True),
        "specguard fast checks, 2 workers": (f"http://127.0.0.1:{ports['workers']}", KEY, True),
    }
    try:
        procs.append(start([sys.executable, "-c", _UPSTREAM, str(ports["upstream"]), ANSWER],
                           up + "/healthz", tmp))
        procs.append(start([sys.executable, "-m", "litellm.proxy.proxy_cli", "--config",
                            str(tmp / "litellm.yaml"), "--port", str(ports["litellm"]),
                            "--num_workers", "1"],
                           f"http://127.0.0.1:{ports['litellm']}/health/liveliness", tmp))
        env_key = {"SPECGUARD_API_KEY": KEY}
        os.environ.update(env_key)
        for name, policy, extra in (("pass", HERE / "passthrough_policy.yaml", []),
                                    ("checks", tmp / "checks.yaml", []),
                                    ("workers", tmp / "checks.yaml", ["--workers", "2"])):
            procs.append(start([*serve, "--policy", str(policy), "--port", str(ports[name]),
                                *extra], f"http://127.0.0.1:{ports[name]}/readyz", tmp))
        samples: dict[tuple[str, int], list[float]] = {}
        rates: dict[tuple[str, int], list[float]] = {}
        for c in args.concurrency:
            for _ in range(args.rounds):
                for name, (base, auth, guarded) in targets.items():
                    headers = {"authorization": f"Bearer {auth}"} if auth else {}
                    model = "echo" if name == "direct" else "specguard"
                    lat, rate = asyncio.run(load(base + "/v1/chat/completions", headers, model,
                                                 args.requests, c, guarded))
                    samples.setdefault((name, c), []).extend(lat)
                    rates.setdefault((name, c), []).append(rate)
            print(f"c={c}: " + ", ".join(
                f"{n} p50 {pct(samples[(n, c)], .5):.2f} ms {statistics.median(rates[(n, c)]):.0f} "
                "req/s" for n in targets))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()

    rows, checks = [], []
    for c in args.concurrency:
        d50, d99 = pct(samples[("direct", c)], .5), pct(samples[("direct", c)], .99)
        d_rate = statistics.median(rates[("direct", c)])
        l_added = pct(samples[("litellm", c)], .5) - d50
        l_rate = statistics.median(rates[("litellm", c)])
        for name in targets:
            xs = samples[(name, c)]
            rate = statistics.median(rates[(name, c)])
            rows.append([name, c, round(pct(xs, .5), 2), round(pct(xs, .99), 2),
                         round(pct(xs, .5) - d50, 2), round(pct(xs, .99) - d99, 2), round(rate),
                         f"{rate / d_rate:.2f}x", f"{rate / l_rate:.2f}x"])
        for name in ("specguard fast checks", "specguard fast checks, 2 workers"):
            added = pct(samples[(name, c)], .5) - d50
            rate = statistics.median(rates[(name, c)])
            if c == 1:
                checks.append([name, c, "added p50 <= 3 ms", f"{added:.2f} ms",
                               "met" if added <= 3 else "missed"])
            else:
                checks.append([name, c, "added p50 <= 1/3 of LiteLLM's",
                               f"{added:.2f} vs {l_added / 3:.2f} ms",
                               "met" if added <= l_added / 3 else "missed"])
            checks.append([name, c, "throughput >= 2x LiteLLM's", f"{rate / l_rate:.2f}x",
                           "met" if rate >= 2 * l_rate else "missed"])
        if c == 1:
            added = pct(samples[("specguard pass-through", c)], .5) - d50
            checks.append(["specguard pass-through", c, "added p50 <= 1 ms", f"{added:.2f} ms",
                           "met" if added <= 1 else "missed"])
    by = {(r[0], r[1]): r for r in rows}
    c0 = args.concurrency[0]
    headline = (f"added p50 at concurrency {c0}: LiteLLM proxy +{by[('litellm', c0)][4]} ms, "
                f"specguard pass-through +{by[('specguard pass-through', c0)][4]} ms, with both "
                f"fast checks +{by[('specguard fast checks', c0)][4]} ms; "
                f"{sum(x[-1] == 'met' for x in checks)} of {len(checks)} targets met")
    path = write_result(Result(
        name="proxy", title="specguard vs the LiteLLM proxy", script="bench/proxy_vs_litellm.py",
        command=command_line(), smoke=args.smoke,
        readme=Readme(what="specguard vs the LiteLLM proxy (loopback upstream)",
                      where="docs/results/proxy.md", headline=headline),
        tables=[
            Table(id="latency", title=f"{args.requests} requests per target, round and level, "
                  f"{args.rounds} interleaved rounds",
                  columns=["target", "concurrency", "p50 ms", "p99 ms", "added p50 ms",
                           "added p99 ms", "req/s (median round)", "throughput vs direct",
                           "throughput vs LiteLLM"], rows=rows,
                  note="Baseline: the upstream called directly in the same rounds. The upstream "
                       "answers at once, so added time is the proxy's own; the load generator "
                       "shares the cores."),
            Table(id="targets", title="issue 19's targets",
                  columns=["target", "concurrency", "target", "measured", "verdict"], rows=checks),
        ],
        data={"rows": rows, "checks": checks, "requests": args.requests,
              "rounds": args.rounds}), args.out)
    print(headline)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
