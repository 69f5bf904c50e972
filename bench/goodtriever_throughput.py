"""Goodtriever decoding throughput against plain decoding on the same backend and batch.

Backend: the embedded llama.cpp model (one sequence at a time, CPU). Plain decoding is the same
loop without retrieval (top-p 0.9 sampling); Goodtriever adds, per token, a k-NN search in a
toxic and a non-toxic datastore and the combination. Datastores are synthetic (random keys of
the model's hidden size, random next tokens) at 10k, 100k and 1M keys; the same store serves as
both sides, so each step runs two searches like the real setup. Index: flat (exact) up to 100k
keys, IVF-PQ (nprobe 32) at 1M, as `specguard datastore build` chooses; --flat-1m also times an
exact flat search over 1M keys.

    python bench/goodtriever_throughput.py --tokens 32 --prompts 3 --threads 1

Prints tokens/s, ms/token, the ratio to plain decoding and the latency growth 10k -> 1M, and
writes docs/results/goodtriever_throughput.json (tables in docs/results/detox.md).
Other processes on the machine share its cores: compare ratios, not absolute numbers.

    python bench/goodtriever_throughput.py --smoke --out /tmp/x.json   # CI: 1k keys, 2 tokens
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

PROMPTS = [
    "The city council met on Tuesday to discuss",
    "I can't believe you would say something like",
    "After the game, the players went back to",
    "She opened the letter and read the first line:",
]


def make_store(root: Path, n: int, space, *, flat: bool, seed: int = 0):
    import numpy as np
    from specguard.decoding import Datastore, IndexKind

    rng = np.random.default_rng(seed)
    dim = space.dim
    kind = IndexKind.FLAT if flat else IndexKind.IVFPQ
    train = None
    if not flat:
        train = (rng.standard_normal((min(n, 40_000), dim)) * 2).astype(np.float32)
    store = Datastore.create(root / f"syn{n}{'f' if flat else ''}", space, index_kind=kind,
                             expected_keys=n, training_keys=train, overwrite=True)
    chunk = 50_000
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        keys = (rng.standard_normal((m, dim)) * 2).astype(np.float32)
        store.add(f"chunk{i}", keys, rng.integers(0, space.tokenizer.vocab_size, m).astype(np.int32))
    return store


def open_or_make(root: Path, n: int, space, *, flat: bool):
    from specguard.decoding import Datastore

    path = root / f"syn{n}{'f' if flat else ''}"
    if (path / "manifest.json").exists():
        return Datastore.open(path, space), 0.0
    t0 = time.perf_counter()
    store = make_store(root, n, space, flat=flat)
    store.save()
    return store, time.perf_counter() - t0


def step_latency(backend, space, root: Path, sizes, k: int, reps: int) -> None:
    """Per-step cost alone: the plain step vs search (both sides) + combination, on the
    model's real logits and hidden state, interleaved so load drifts hit both alike."""
    import numpy as np
    from specguard.decoding.loop_llama import LlamaDetoxGenerator
    from specguard.decoding.retrieval import DetoxSettings, Retriever, plain_step

    gen = LlamaDetoxGenerator(backend, None)

    import torch

    def first_step():
        logits, hidden = gen.steps.prefill(gen.tokenize(PROMPTS[0]))
        return torch.from_numpy(logits)[None, :], hidden[None, :]

    logits, hidden = gen.steps.executor.submit(first_step).result()
    print("| store | plain step (ms, median) | Goodtriever step (ms, median) | extra (ms) |")
    print("|---|---|---|---|")
    rows = {}
    for n in sizes:
        store, _ = open_or_make(root, n, space, flat=n <= 100_000)
        r = Retriever(DetoxSettings(toxic=[store.path], nontoxic=[store.path], k=k), [store], [store])
        r.step(logits, hidden)  # warm-up
        plain, good = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            plain_step(logits, 0.9)
            t1 = time.perf_counter()
            r.step(logits, hidden)
            t2 = time.perf_counter()
            plain.append(t1 - t0)
            good.append(t2 - t1)
        p, g = 1000 * np.median(plain), 1000 * np.median(good)
        rows[n] = g
        print(f"| {n:,} keys ({store.manifest.index_kind}) | {p:.1f} | {g:.1f} | {g - p:.1f} |")
    if len(rows) > 1:
        lo, hi = min(rows), max(rows)
        print(f"\nstep latency growth {lo:,} -> {hi:,} keys: {rows[hi] / rows[lo]:.2f}x")


def run(gen, backend, prompts, tokens: int, seed: int) -> tuple[float, int]:
    def work() -> tuple[float, int]:
        n = 0
        t0 = time.perf_counter()
        for i, p in enumerate(prompts):
            toks = gen.tokenize(p)
            for _ in gen.generate(toks, max_new_tokens=tokens, temperature=1.0, seed=seed + i):
                n += 1
        return time.perf_counter() - t0, n

    return backend.model.executor.submit(work).result()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("SPECGUARD_THREADS", "1")))
    ap.add_argument("--flat-1m", action="store_true", help="also time exact flat search at 1M")
    ap.add_argument("--root", default=None, help="where the synthetic stores are (reused)")
    ap.add_argument("--steps", type=int, default=0,
                    help="only time N isolated decoding steps per store size")
    ap.add_argument("--out", default=None, help="summary path (default docs/results/)")
    ap.add_argument("--smoke", action="store_true", help="1 prompt x 2 tokens, 1k keys: CI")
    args = ap.parse_args()
    if args.smoke:
        args.tokens, args.prompts, args.sizes, args.k = 2, 1, "1000", 16

    import faiss
    import torch
    from specguard.backends.embedded import EmbeddedBackend
    from specguard.decoding.encoders import embedded_key_space
    from specguard.decoding.loop_llama import LlamaDetoxGenerator
    from specguard.decoding.retrieval import DetoxSettings, Retriever

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    backend = EmbeddedBackend(n_threads=args.threads)
    space = embedded_key_space(backend)
    prompts = PROMPTS[: args.prompts]
    root = Path(args.root or tempfile.mkdtemp(prefix="gt_bench_"))
    sizes = [int(s) for s in args.sizes.split(",")]

    if args.steps:
        step_latency(backend, space, root, sizes, args.k, args.steps)
        return
    plain = LlamaDetoxGenerator(backend, None)
    run(plain, backend, prompts[:1], 4, 0)  # warm-up
    results = []
    t, n = run(plain, backend, prompts, args.tokens, 0)
    results.append(("plain", "-", t, n))
    for size in sizes:
        variants = [size <= 100_000] + ([True] if size > 100_000 and args.flat_1m else [])
        for j, flat in enumerate(variants):
            store, build = open_or_make(root, size, space, flat=flat)
            settings = DetoxSettings(toxic=[store.path], nontoxic=[store.path], k=args.k)
            gen = LlamaDetoxGenerator(backend, Retriever.open(settings, space))
            run(gen, backend, prompts[:1], 2, 0)  # warm-up (loads the index)
            t, n = run(gen, backend, prompts, args.tokens, 0)
            label = f"goodtriever {size:,} keys ({'flat' if flat else 'ivfpq'}; built in {build:.0f}s)"
            if not build:
                label = f"goodtriever {size:,} keys ({'flat' if flat else 'ivfpq'}; reused)"
            results.append((label, size if j == 0 else "-", t, n))
            # search alone, one query of real shape, both sides
            import numpy as np

            q = np.random.default_rng(1).standard_normal((1, space.dim)).astype(np.float32)
            s0 = time.perf_counter()
            for _ in range(20):
                store.search(q, args.k)
            results[-1] = (*results[-1], (time.perf_counter() - s0) / 20 * 1000)
            del gen, store
            plain_t, plain_n = run(plain, backend, prompts, args.tokens, 0)  # drift check
            results.append(("plain (again)", "-", plain_t, plain_n))

    base_tps = results[0][3] / results[0][2]
    print(f"threads={args.threads}, k={args.k}, {len(prompts)} prompts x {args.tokens} tokens, "
          f"batch 1, embedded llama.cpp, CPU ({os.cpu_count()} cores, shared)")
    print("| decoding | tokens/s | ms/token | ratio to first plain | ratio to plain runs "
          "around it | one search (ms) |")
    print("|---|---|---|---|---|---|")
    per_tok = {}
    table_rows = []
    for i, row in enumerate(results):
        label, size, t, n = row[:4]
        tps = n / t
        search = f"{row[4]:.1f}" if len(row) > 4 else "-"
        around = "-"
        if len(row) > 4 and i + 1 < len(results):  # plain runs just before and after
            near = [results[j][3] / results[j][2] for j in (i - 1, i + 1)]
            around = f"{tps / (sum(near) / 2):.2f}"
        print(f"| {label} | {tps:.1f} | {1000 * t / n:.1f} | {tps / base_tps:.2f} | {around} | "
              f"{search} |")
        table_rows.append([label, round(tps, 1), round(1000 * t / n, 1),
                           round(tps / base_tps, 2), around, search])
        if size != "-":  # the index `specguard datastore build` would pick at this size
            per_tok[size] = 1000 * t / n
    growth = ""
    if len(per_tok) >= 2:
        lo, hi = min(per_tok), max(per_tok)
        growth = (f"latency growth {lo:,} -> {hi:,} keys: {per_tok[hi] / per_tok[lo]:.2f}x "
                  f"({per_tok[lo]:.1f} -> {per_tok[hi]:.1f} ms/token)")
        print("\n" + growth)
    from specguard.evals.results import Readme, Result, Table, command_line, write_result

    first = next((r for r in table_rows if r[0].startswith("goodtriever")), None)
    path = write_result(Result(
        name="goodtriever_throughput", title="Goodtriever decoding throughput",
        script="bench/goodtriever_throughput.py", command=command_line(), smoke=args.smoke,
        readme=Readme(
            what="Goodtriever decoding throughput", where="docs/results/detox.md",
            headline=(f"{first[3]}x the tokens/s of plain decoding at the smallest store"
                      if first else "no Goodtriever row") + (f"; {growth}" if growth else "")),
        tables=[Table(
            id="throughput", title=f"threads={args.threads}, k={args.k}, {len(prompts)} "
            f"prompts x {args.tokens} tokens, batch 1, embedded llama.cpp, CPU "
            f"({os.cpu_count()} cores, shared)",
            columns=["decoding", "tokens/s", "ms/token", "ratio to first plain",
                     "ratio to plain runs around it", "one search (ms)"], rows=table_rows,
            note="Baseline: plain decoding (the same loop without retrieval), re-measured "
                 "after each store so drifting load shows.")],
        data={"rows": table_rows, "growth": growth}), args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
