"""The same generation workload through llama.cpp (EmbeddedBackend, the default) and through a
vLLM server (VLLMServerBackend), on this machine: tokens/s and the ratio vLLM / llama.cpp.

    python bench/vllm_vs_llamacpp.py [--n 32] [--max-tokens 32] [--concurrency 16]
                                     [--dtype float32] [--json out.json]

Workload: n short chat questions, greedy. llama.cpp runs them the way EmbeddedBackend serves
concurrent requests (queued on its one worker thread, batch 1); vLLM gets them `--concurrency`
at a time (it batches) and also one at a time (like for like). The vLLM side needs what
.ci/vllm_setup.sh builds (its venv and the converted model; same weights as the GGUF, but
dequantized: llama.cpp computes on Q4_1, vLLM on float32 or bfloat16). On a GPU box pass
--model and --python for the GPU's vLLM (llama.cpp then stays the CPU baseline).
Other processes on the machine change both numbers; the ratio is measured in one run.
Writes docs/results/vllm_vs_llamacpp.json (tables in docs/results/performance.md).

    python bench/vllm_vs_llamacpp.py --smoke --out /tmp/x.json    # CI: 2 requests x 4 tokens
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from specguard.types import GenerationParams, user

CACHE = Path(os.environ.get("SPECGUARD_CACHE", Path.home() / ".cache" / "specguard"))
TOPICS = [
    "photosynthesis", "the water cycle", "gravity", "a rainbow", "volcanoes", "tides",
    "the seasons", "magnets", "electricity", "sound", "clouds", "earthquakes", "bread dough",
    "a compass", "the moon's phases", "wind", "snowflakes", "batteries", "thunder", "fossils",
    "bees", "rust", "yeast", "lightning", "deserts", "coral reefs", "glaciers", "comets",
    "microwaves", "vaccines", "recycling", "the internet",
]


def prompts(n: int):
    return [[user(f"Explain {TOPICS[i % len(TOPICS)]} in two sentences.")] for i in range(n)]


async def run(backend, convs, params, concurrency: int) -> dict:
    sem = asyncio.Semaphore(concurrency)

    async def one(messages):
        async with sem:
            return await backend.complete(messages, params)

    await backend.complete(convs[0], params)  # warm up (first request compiles/caches)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    results = await asyncio.gather(*(one(m) for m in convs))
    wall = time.perf_counter() - start
    tokens = sum(r.usage.completion_tokens for r in results)
    return {"requests": len(convs), "tokens": tokens, "seconds": round(wall, 2),
            "tokens_per_s": round(tokens / wall, 1), "concurrency": concurrency,
            "load_avg_1m_before": round(load, 1)}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--python", default=str(CACHE / "vllm-venv" / "bin" / "python"))
    ap.add_argument("--model", default=None, help="HF folder for vLLM (default: the converted one)")
    ap.add_argument("--json", default=None, help="also write the raw numbers here")
    ap.add_argument("--out", default=None, help="summary path (default docs/results/)")
    ap.add_argument("--smoke", action="store_true", help="2 requests x 4 tokens: CI")
    args = ap.parse_args()
    if args.smoke:
        args.n, args.max_tokens, args.concurrency = 2, 4, 2
    model = args.model or str(next(iter(sorted((CACHE / "models").glob("*-hf")))))
    params = GenerationParams(max_tokens=args.max_tokens, temperature=0.0)
    convs = prompts(args.n)
    out: dict = {"workload": {"n": args.n, "max_tokens": args.max_tokens, "greedy": True}}

    from specguard.backends.embedded import EmbeddedBackend

    llama = EmbeddedBackend()
    await llama.load()
    out["llama_cpp"] = await run(llama, convs, params, args.concurrency)
    print("llama.cpp  ", out["llama_cpp"], flush=True)
    del llama

    from specguard.backends.vllm import VLLMServerBackend, VLLMServerProcess

    server = VLLMServerProcess(
        model, python=args.python, served_name="bench",
        args=["--enforce-eager", "--dtype", args.dtype, "--max-model-len", "2048",
              "--max-num-seqs", str(max(args.concurrency, 1)), "--disable-log-stats",
              "--uvicorn-log-level", "warning"],
        env={"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "0-1",
             "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"},
    )
    with server:
        out["vllm_start_s"] = round(server.wait_ready(), 1)
        print(f"vLLM server ready in {out['vllm_start_s']} s ({args.dtype})", flush=True)
        backend = VLLMServerBackend("bench", api_base=server.url, timeout=300, num_retries=0)
        out["vllm_batched"] = await run(backend, convs, params, args.concurrency)
        print("vLLM batch ", out["vllm_batched"], flush=True)
        out["vllm_serial"] = await run(backend, convs[: max(args.n // 4, 1)], params, 1)
        print("vLLM serial", out["vllm_serial"], flush=True)
    base = out["llama_cpp"]["tokens_per_s"]
    out["ratio_batched"] = round(out["vllm_batched"]["tokens_per_s"] / base, 2)
    out["ratio_serial"] = round(out["vllm_serial"]["tokens_per_s"] / base, 2)
    out["dtype"] = args.dtype
    print(f"vLLM / llama.cpp tokens/s: batched x{out['ratio_batched']}, "
          f"one at a time x{out['ratio_serial']} (1-min load averages before each phase: "
          f"{out['llama_cpp']['load_avg_1m_before']}, {out['vllm_batched']['load_avg_1m_before']}, "
          f"{out['vllm_serial']['load_avg_1m_before']} on {os.cpu_count()} cores)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    from specguard.evals.results import Readme, Result, Table, command_line, write_result

    rows = [[name, out[key]["requests"], out[key]["concurrency"], out[key]["tokens"],
             out[key]["seconds"], out[key]["tokens_per_s"], out[key]["load_avg_1m_before"]]
            for name, key in (("llama.cpp (embedded, the baseline)", "llama_cpp"),
                              (f"vLLM {args.dtype}, batched", "vllm_batched"),
                              (f"vLLM {args.dtype}, one at a time", "vllm_serial"))]
    path = write_result(Result(
        name="vllm_vs_llamacpp", title="vLLM vs llama.cpp on this machine",
        script="bench/vllm_vs_llamacpp.py", command=command_line(), smoke=args.smoke,
        readme=Readme(what="vLLM server vs embedded llama.cpp (same weights)",
                      where="docs/results/performance.md",
                      headline=f"vLLM / llama.cpp tokens/s: batched x{out['ratio_batched']}, "
                               f"one at a time x{out['ratio_serial']} ({os.cpu_count()} CPUs)"),
        tables=[Table(id="throughput", title=f"{args.n} chat questions x {args.max_tokens} "
                      "tokens, greedy", columns=["engine", "requests", "concurrency", "tokens",
                                                 "seconds", "tokens/s", "load (1 min) before"],
                      rows=rows, note=f"vLLM server started in {out['vllm_start_s']} s.")],
        data=out), args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    asyncio.run(main())
