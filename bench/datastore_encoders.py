"""Who reads a datastore's keys: llama.cpp (the embedded model, one token per decode as the
recipe build used to) against the same GGUF dequantized into torch (`--encoder torch`).

Both encoders read the same documents, in interleaved chunks (so both see the same load on a
shared machine), with the same number of threads. Reported: keys per second of wall time and
per CPU second of the process, and how far the two key spaces agree: the same token ids per
document, the cosine of each key pair, and how often a torch key's nearest llama.cpp key (L2,
as the stores search) is the one of its own token.

Documents: HELD_OUT parts of Davidson (tweets) and SemEval toxic spans (comments), the two
largest sources of the `detox` recipe, which builds from their TRAIN parts.

    python bench/datastore_encoders.py --docs 96 --threads 1
    python bench/datastore_encoders.py --smoke --out /tmp/x.json   # CI: 4 documents, a
                                                                   # 2-layer random torch model

Writes docs/results/datastore_encoders.json (table in docs/results/detox.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time


def documents(n: int) -> list[str]:
    from specguard.data import Part, in_part, load

    texts: list[str] = []
    for name in ("davidson_hate_offensive", "toxic_spans_semeval2021"):
        recs = [r.text for r in in_part(load(name), Part.HELD_OUT) if r.text and r.text.strip()]
        random.Random(f"encoders:{name}").shuffle(recs)
        texts += recs[: (n + 1) // 2]
    random.Random("encoders").shuffle(texts)
    return texts[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=96)
    ap.add_argument("--chunk", type=int, default=8, help="documents per interleaved chunk")
    ap.add_argument("--batch", type=int, default=8, help="torch: documents per forward")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("SPECGUARD_THREADS", "1")))
    ap.add_argument("--out", default=None, help="summary path (default docs/results/)")
    ap.add_argument("--smoke", action="store_true",
                    help="4 documents; torch side a 2-layer random model (plumbing only)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import numpy as np
    import torch
    from specguard.backends.embedded import EmbeddedBackend, default_model_path
    from specguard.decoding.encoders import EmbeddedKeyEncoder, TorchKeyEncoder

    torch.set_num_threads(args.threads)
    path = default_model_path()
    t0 = time.perf_counter()
    if args.smoke:
        import transformers
        from specguard.decoding.keyspace import ModelId

        args.docs, args.chunk = 4, 2
        kw = {"gguf_file": path.name}
        tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), **kw)
        cfg = transformers.AutoConfig.from_pretrained(str(path.parent), **kw)
        cfg.num_hidden_layers = 2
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(cfg)
        tenc = TorchKeyEncoder.from_model(model, tok, ModelId(name="random-2-layer"),
                                          max_tokens=args.max_tokens, batch=args.batch,
                                          threads=args.threads)
    else:
        tenc = TorchKeyEncoder(path, max_tokens=args.max_tokens, batch=args.batch,
                               threads=args.threads)
    tspace = tenc.key_space()
    load_s = time.perf_counter() - t0
    lenc = EmbeddedKeyEncoder(EmbeddedBackend(n_threads=args.threads),
                              max_tokens=args.max_tokens, ubatch=1)
    lspace = lenc.key_space()
    texts = documents(args.docs)
    asyncio.run(lenc.encode(texts[:1]))  # warm both
    asyncio.run(tenc.encode(texts[:1]))

    clock = {"llama.cpp": [0.0, 0.0, 0], "torch": [0.0, 0.0, 0]}  # wall, cpu, keys
    got: dict[str, list] = {"llama.cpp": [], "torch": []}
    for i in range(0, len(texts), args.chunk):
        part = texts[i:i + args.chunk]
        order = [("llama.cpp", lenc), ("torch", tenc)]
        if (i // args.chunk) % 2:
            order.reverse()
        for name, enc in order:
            w, c = time.perf_counter(), time.process_time()
            out = asyncio.run(enc.encode(part))
            clock[name][0] += time.perf_counter() - w
            clock[name][1] += time.process_time() - c
            clock[name][2] += sum(len(k) for k, _ in out)
            got[name] += out

    same_ids = sum(np.array_equal(a[1], b[1]) for a, b in zip(got["llama.cpp"], got["torch"],
                                                             strict=True))
    pairs = [(a[0], b[0]) for a, b in zip(got["llama.cpp"], got["torch"], strict=True)
             if np.array_equal(a[1], b[1]) and len(a[0])]
    ka = np.concatenate([a for a, _ in pairs]) if pairs else np.zeros((0, 1), np.float32)
    kt = np.concatenate([b for _, b in pairs]) if pairs else np.zeros((0, 1), np.float32)
    cos = (ka * kt).sum(1) / np.maximum(np.linalg.norm(ka, axis=1) * np.linalg.norm(kt, axis=1),
                                        1e-12)
    sub = np.random.default_rng(0).permutation(len(ka))[:2000]
    a_s, t_s = ka[sub], kt[sub]
    d = (t_s * t_s).sum(1)[:, None] - 2 * t_s @ a_s.T + (a_s * a_s).sum(1)[None, :]
    nn_self = float((d.argmin(1) == np.arange(len(sub))).mean()) if len(sub) else float("nan")

    rows = []
    for name in ("llama.cpp", "torch"):
        wall, cpu, keys = clock[name]
        rows.append([name, "1 token a decode" if name == "llama.cpp" else
                     f"{args.batch} documents a forward, fp32", keys, round(keys / wall, 1),
                     round(keys / cpu, 1) if cpu else None])
    ratio_wall = rows[1][3] / rows[0][3] if rows[0][3] else None
    ratio_cpu = rows[1][4] / rows[0][4] if rows[0][4] else None
    agree = [[len(texts), same_ids, len(ka),
              round(float(cos.min()), 4) if len(cos) else None,
              round(float(np.percentile(cos, 1)), 4) if len(cos) else None,
              round(float(np.median(cos)), 4) if len(cos) else None,
              round(nn_self, 4), len(sub)]]
    print(rows, agree, f"torch/llama.cpp wall {ratio_wall} cpu {ratio_cpu}")

    from specguard.evals.results import Result, Table, command_line, write_result

    same_space = tspace == lspace
    note = (f"Same key space (model sha256, hook, dimension, tokenizer): {same_space}. "
            f"torch / llama.cpp keys per second: {ratio_wall:.2f}x wall, {ratio_cpu:.2f}x per "
            f"CPU second, {args.threads} thread(s), measured in interleaved chunks of "
            f"{args.chunk} documents; loading the GGUF into torch took {load_s:.0f} s.")
    path_out = write_result(Result(
        name="datastore_encoders", title="Datastore key encoders: llama.cpp vs torch",
        script="bench/datastore_encoders.py", command=command_line(), smoke=args.smoke,
        tables=[
            Table(id="speed", title=f"{len(texts)} HELD_OUT documents (Davidson, SemEval toxic "
                  f"spans), at most {args.max_tokens} tokens each", columns=[
                      "encoder", "how", "keys", "keys/s (wall)", "keys per CPU second"],
                  rows=rows, note=note),
            Table(id="agreement", title="torch keys vs llama.cpp keys of the same documents",
                  columns=["documents", "same token ids", "key pairs", "cosine min",
                           "cosine 1st pct", "cosine median", "1-NN is its own token",
                           "keys in the 1-NN check"], rows=agree),
        ],
        data={"rows": rows, "agreement": agree, "same_key_space": same_space,
              "ratio_wall": ratio_wall, "ratio_cpu": ratio_cpu, "torch_load_s": load_s}),
        args.out)
    print(f"wrote {path_out}")


if __name__ == "__main__":
    main()
