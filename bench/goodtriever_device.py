"""Goodtriever on the torch path: decode throughput, plain vs Goodtriever, at 10k, 100k and 1M
keys a store, batch 1 and 16, and the per-token latency growth from 10k to 1M keys.

One script for a GPU machine (`--device cuda`) and for this CPU (`--device cpu`): the model is
SmolLM2-135M's architecture built from its config with random weights (random weights decode
as fast as trained ones), the keys random vectors of its hidden size generated in place (two
stores, toxic and non-toxic, searched every step as in the real setup), the search exact with
torch (specguard.decoding.torch_search: one matmul and a top-k per block, fp16 keys on CUDA),
the combination specguard.decoding.combine.goodtriever_step, the one every loop calls. Nothing
is downloaded and no FAISS or vLLM is needed: on a machine with only torch and transformers
the two modules are loaded from this checkout's files.

Per (store size, batch): prefill a 32-token prompt per row, then `--tokens` steps with a KV
cache; plain = the same loop with the top-p step only, measured in the same run, interleaved
with the Goodtriever runs (`--repeats` times, median). The ratio Goodtriever / plain
throughput and the growth of Goodtriever's ms/token from 10k to 1M keys are the targets
(>= 0.8x and <= 1.2x on GPU).

    python bench/goodtriever_device.py --device cuda --out $OUT/goodtriever_device.json
    python bench/goodtriever_device.py --device cpu --tokens 8 --repeats 1   # this 2-core box
    python bench/goodtriever_device.py --smoke --out /tmp/x.json              # CI: tiny
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# SmolLM2-135M(-Instruct): transformers' LlamaConfig fields from the model's config.json
SMOLLM2_135M = dict(
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
    rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True, bos_token_id=1,
    eos_token_id=2, hidden_act="silu",
)


def _module(name: str, rel: str):
    """specguard's module if the package is importable, else the file from this checkout."""
    try:
        return importlib.import_module(f"specguard.decoding.{name}")
    except ImportError:
        spec = importlib.util.spec_from_file_location(f"_sg_{name}", REPO / rel)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        return mod


combine = _module("combine", "runtime/decoding/combine.py")
torch_search = _module("torch_search", "runtime/decoding/torch_search.py")


def build_model(device: str, layers: int | None):
    import torch
    import transformers

    cfg = dict(SMOLLM2_135M)
    if layers:
        cfg["num_hidden_layers"] = layers
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg))
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    return model.to(device=device, dtype=dtype).eval(), cfg


def make_store(n: int, dim: int, vocab: int, device: str, seed: int):
    import torch

    g = torch.Generator(device="cpu").manual_seed(seed)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    keys = torch.empty(n, dim, dtype=dtype, device=device)
    for i in range(0, n, 100_000):  # generated in blocks: no 1M x 576 float32 copy on the host
        m = min(100_000, n - i)
        keys[i:i + m] = (torch.randn(m, dim, generator=g) * 2.0).to(device=device, dtype=dtype)
    tokens = torch.randint(0, vocab, (n,), generator=g).to(device)
    return torch_search.TorchKeySearch(keys, tokens, device=device, dtype=dtype)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _cache_name(model) -> str:
    """transformers 5 calls the KV cache `cache` (argument and output); 4.x `past_key_values`."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def decode(model, batch: int, tokens: int, device: str, stores, *, k: int, alpha: float,
           temperature: float, top_p: float, seed: int) -> float:
    """Seconds for `tokens` decoding steps of `batch` rows after a 32-token prefill."""
    import torch

    vocab = model.config.vocab_size
    g = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.randint(100, vocab, (batch, 32), generator=g).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    name = _cache_name(model)
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=True, output_hidden_states=True)
        past = getattr(out, name)
        logits, hidden = out.logits[:, -1].float(), out.hidden_states[-1][:, -1]
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(tokens):
            if stores is None:
                lp = combine.goodtriever_logprobs(logits, alpha=0.0, top_p=top_p)
            else:
                found = [s.search(hidden, k) for s in stores]
                toxic = combine.Neighbours(found[0][0], found[0][1])
                nontoxic = combine.Neighbours(found[1][0], found[1][1])
                lp = combine.goodtriever_logprobs(logits, toxic=toxic, nontoxic=nontoxic,
                                                  alpha=alpha, temperature=temperature,
                                                  top_p=top_p)
            nxt = torch.multinomial(lp.exp(), 1, generator=gen)
            out = model(input_ids=nxt, use_cache=True, output_hidden_states=True,
                        **{name: past})
            past = getattr(out, name)
            logits, hidden = out.logits[:, -1].float(), out.hidden_states[-1][:, -1]
        _sync(device)
        return time.perf_counter() - t0


def run(args) -> dict:
    import torch

    if args.device == "cpu":
        torch.set_flush_denormal(True)
        if args.threads:
            torch.set_num_threads(args.threads)
    model, cfg = build_model(args.device, args.layers)
    dim, vocab = cfg["hidden_size"], cfg["vocab_size"]
    rows = []
    for n in args.sizes:
        t0 = time.perf_counter()
        stores = [make_store(n, dim, vocab, args.device, seed=1), make_store(n, dim, vocab,
                                                                             args.device, seed=2)]
        build_s = time.perf_counter() - t0
        for batch in args.batches:
            plain, good = [], []
            decode(model, batch, 2, args.device, stores, k=args.k, alpha=args.alpha,
                   temperature=args.T, top_p=args.top_p, seed=0)  # warm-up (kernels, caches)
            for r in range(args.repeats):
                plain.append(decode(model, batch, args.tokens, args.device, None, k=args.k,
                                    alpha=args.alpha, temperature=args.T, top_p=args.top_p,
                                    seed=r))
                good.append(decode(model, batch, args.tokens, args.device, stores, k=args.k,
                                   alpha=args.alpha, temperature=args.T, top_p=args.top_p,
                                   seed=r))
            p, q = statistics.median(plain), statistics.median(good)
            row = {"keys": n, "batch": batch, "tokens": args.tokens,
                   "plain_tok_s": batch * args.tokens / p, "goodtriever_tok_s": batch * args.tokens / q,
                   "plain_ms_per_step": 1000 * p / args.tokens,
                   "goodtriever_ms_per_step": 1000 * q / args.tokens,
                   "ratio": p / q, "store_build_s": build_s}
            rows.append(row)
            print(json.dumps(row), flush=True)
        del stores
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    growth = {}
    for batch in args.batches:
        by = {r["keys"]: r for r in rows if r["batch"] == batch}
        lo, hi = min(by), max(by)
        growth[batch] = {"from": lo, "to": hi, "growth": by[hi]["goodtriever_ms_per_step"]
                         / by[lo]["goodtriever_ms_per_step"]}
    dev = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
           else f"CPU ({platform.processor() or platform.machine()}, "
                f"{torch.get_num_threads()} torch threads)")
    return {"device": dev, "rows": rows, "growth": growth, "config": {
        "layers": cfg["num_hidden_layers"], "k": args.k, "alpha": args.alpha, "T": args.T,
        "top_p": args.top_p, "tokens": args.tokens, "repeats": args.repeats,
        "torch": torch.__version__}}


def write(summary: dict, args) -> Path:
    rows = [[f"{r['keys']:,}", r["batch"], f"{r['plain_tok_s']:.1f}",
             f"{r['goodtriever_tok_s']:.1f}", f"{r['ratio']:.2f}x",
             f"{r['plain_ms_per_step']:.1f}", f"{r['goodtriever_ms_per_step']:.1f}"]
            for r in summary["rows"]]
    growth = "; ".join(f"batch {b}: {g['growth']:.2f}x ({g['from']:,} -> {g['to']:,} keys)"
                       for b, g in summary["growth"].items())
    title = (f"torch path on {summary['device']}: SmolLM2-135M architecture (random weights, "
             f"{summary['config']['layers']} layers), two stores of random keys, exact torch "
             f"search, k={args.k}, {args.tokens} tokens x {args.repeats} repeats (median)")
    table_cols = ["keys a store", "batch", "plain tok/s", "Goodtriever tok/s",
                  "Goodtriever / plain", "plain ms/step", "Goodtriever ms/step"]
    try:
        from specguard.evals.results import Readme, Result, Table, command_line, write_result
    except ImportError:  # a device with only torch: plain JSON, same fields
        path = Path(args.out or "goodtriever_device.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"name": args.name, "title": title, "columns": table_cols,
                                    "rows": rows, "growth": growth, "data": summary,
                                    "command": " ".join(sys.argv)}, indent=1))
        return path
    top = max(r["keys"] for r in summary["rows"])
    at_top = ", ".join(f"batch {r['batch']} {r['ratio']:.2f}x" for r in summary["rows"]
                       if r["keys"] == top)
    headline = (f"{summary['device']}: Goodtriever / plain throughput at {top:,} keys: "
                f"{at_top}; latency growth {growth}")
    result = Result(
        name=args.name, title="Goodtriever torch path: throughput and latency growth",
        script="bench/goodtriever_device.py", command=command_line(), smoke=args.smoke,
        readme=Readme(what=f"Goodtriever torch path ({'CPU' if args.device == 'cpu' else 'GPU'})",
                      where="docs/results/detox.md", headline=headline),
        tables=[Table(id="throughput", title=title, columns=table_cols, rows=rows,
                      note=f"Latency growth of Goodtriever's ms/step: {growth}. Plain is the "
                           "same loop without retrieval, measured in the same run.")],
        data=summary)
    return write_result(result, args.out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", type=lambda s: [int(float(x)) for x in s.split(",")],
                    default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--k", type=int, default=1024)
    # the shipped settings, from combine.py (it loads without specguard installed); speed
    # does not depend on alpha or T
    ap.add_argument("--alpha", type=float, default=combine.DEFAULT_ALPHA)
    ap.add_argument("--T", type=float, default=combine.DEFAULT_TEMPERATURE)
    ap.add_argument("--top-p", type=float, default=combine.DEFAULT_TOP_P)
    ap.add_argument("--layers", type=int, default=None, help="fewer layers (smoke only)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--name", default=None, help="result name (default by device)")
    ap.add_argument("--out", default=None, help="summary path (default docs/results/<name>.json)")
    ap.add_argument("--smoke", action="store_true", help="CI: 2 layers, 2k keys, 2 tokens")
    args = ap.parse_args()
    if args.smoke:
        args.device, args.sizes, args.batches = "cpu", [500, 2000], [1, 2]
        args.tokens, args.repeats, args.layers, args.k, args.threads = 2, 1, 2, 64, 1
    args.name = args.name or ("goodtriever_device_cpu" if args.device == "cpu"
                              else "goodtriever_device_gpu")
    summary = run(args)
    print(f"wrote {write(summary, args)}")


if __name__ == "__main__":
    main()
