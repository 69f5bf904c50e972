"""How sharp softmax(-d/T) is on real datastores, to pick Goodtriever's T for a model.

Queries: the per-token hidden states of RealToxicityPrompts VALIDATION prompts (as decoding
sees them); stores: a datastore recipe's (default `detox`).
For each T: the effective number of neighbours (1 / sum w^2, median over queries), the number
of distinct next tokens with p_kNN >= 1e-3, and the squared distances to the 1st and k-th
neighbour. The paper's T = 100 suits GPT-2 large; pick a T that keeps tens of neighbours.

    python bench/goodtriever_temperature.py --recipe detox --prompts 20
    python bench/goodtriever_temperature.py --smoke --out /tmp/x.json   # CI: tiny stores

Writes docs/results/goodtriever_temperature.json (tables in docs/results/detox.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="detox", help="the datastore recipe whose stores to read")
    ap.add_argument("--root", default=None, help="datastore root (default: the cache)")
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--temps", default="10,25,50,100,200,500")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("SPECGUARD_THREADS", "1")))
    ap.add_argument("--out", default=None, help="summary path (default docs/results/)")
    ap.add_argument("--smoke", action="store_true", help="tiny stores, 1 prompt, 2 temps: CI")
    args = ap.parse_args()
    if args.smoke:
        import tempfile
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).parent))
        from goodtriever_sweep import smoke_recipe

        from specguard.backends.embedded import EmbeddedBackend
        from specguard.decoding import EmbeddedKeyEncoder, Recipe, RecipeBuild, Side

        tmp = Path(tempfile.mkdtemp(prefix="gt_temp_"))
        args.recipe, args.root = str(smoke_recipe(tmp)), str(tmp / "stores")
        enc = EmbeddedKeyEncoder(EmbeddedBackend(n_threads=1), max_tokens=16, ubatch=1)
        build = RecipeBuild(Recipe.load(args.recipe), enc.key_space(), args.root)
        asyncio.run(build.encode(enc))
        for side in Side:
            build.finalize(side)
        args.prompts, args.k, args.temps = 1, 8, "10,100"

    import numpy as np
    import torch
    from specguard.backends.embedded import EmbeddedBackend
    from specguard.data import Part, in_part, load
    from specguard.decoding import Datastore, Neighbours, knn_logprobs, recipe_stores
    from specguard.decoding.encoders import embedded_key_space

    backend = EmbeddedBackend(n_threads=args.threads)
    space = embedded_key_space(backend)
    # T is a choice: read it on the VALIDATION prompts only
    prompts = [r.text for r in in_part(load("realtoxicityprompts"), Part.VALIDATION)]
    states = asyncio.run(backend.token_hidden_states(prompts[: args.prompts], ubatch=1))
    q = np.concatenate([s for _, s in states if s is not None]).astype(np.float32)
    print(f"{len(q)} query states from {args.prompts} RTP prompts, k={args.k}")
    print("| store | keys | d(1st) median | d(k-th) median | T | effective neighbours "
          "(median) | tokens with p >= 1e-3 (median) |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for path in recipe_stores(args.recipe, space, args.root):
        store = Datastore.open(path, space)
        dist, tok = store.search(q, args.k)
        for T in (float(t) for t in args.temps.split(",")):
            w = torch.softmax(-torch.from_numpy(dist) / T, dim=-1)
            eff = (1.0 / (w * w).sum(-1)).median().item()
            lp = knn_logprobs(Neighbours(torch.from_numpy(dist), torch.from_numpy(tok)),
                              space.tokenizer.vocab_size, T)
            n_tok = (lp.exp() >= 1e-3).sum(-1).float().median().item()
            print(f"| {store.manifest.name} | {len(store)} | {np.median(dist[:, 0]):.0f} | "
                  f"{np.median(dist[:, -1]):.0f} | {T:g} | {eff:.1f} | {n_tok:.0f} |")
            rows.append([store.manifest.name, len(store), round(float(np.median(dist[:, 0]))),
                         round(float(np.median(dist[:, -1]))), T, round(eff, 1), round(n_tok)])
    from specguard.evals.results import Result, Table, command_line, write_result

    path = write_result(Result(
        name="goodtriever_temperature", title="Goodtriever: softmax temperature on real stores",
        script="bench/goodtriever_temperature.py", command=command_line(), smoke=args.smoke,
        tables=[Table(id="temperature", title=f"{len(q)} query states from "
                      f"{min(args.prompts, len(prompts))} RTP validation prompts, k={args.k}",
                      columns=["store", "keys", "d(1st) median", "d(k-th) median", "T",
                               "effective neighbours (median)", "tokens with p >= 1e-3 (median)"],
                      rows=rows)],
        data={"rows": rows}), args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
