"""Fast-tier comparison on held-out data: TF-IDF + logistic regression (the baseline) vs probes
over the embedded model's final hidden states (chat template or raw text, last token or token
mean, logistic regression or a small MLP), TF-IDF + hidden states combined (one classifier) or
fused (two classifiers' probabilities averaged), a 5-fold cross-validation on the training split
to choose among them, and prompt+response training for the output check.

    python bench/guard_probe.py [--cache runs/guard_hidden] [--out runs/guard_probe.json]

Hidden states are cached in --cache, the same files `specguard guard train --hidden-cache`
reads (npz, not committed: derived row by row from the datasets).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np
from specguard.guard.corpus import input_examples, output_examples
from specguard.guard.train import (
    FastConfig,
    eval_groups,
    example_weight,
    fit_stage,
    group_metrics,
    pooled_cached,
    predict_stage,
)


async def cached_hidden(backend, texts, chat: bool, cache: Path):
    """Hidden states through the trainer's cache (`specguard guard train --hidden-cache` reads
    the same files), timed when they are computed."""
    t0 = time.perf_counter()
    last, mean = await pooled_cached(backend, texts, chat, cache)
    print(f"  hidden states ({'chat' if chat else 'raw'}) of {len(texts)} texts: "
          f"{(time.perf_counter() - t0) / len(texts) * 1000:.1f} ms/text", flush=True)
    return last, mean


def _keep(text: str, share: float) -> bool:
    import hashlib

    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def run(cfg: FastConfig, examples, hidden=None):
    tr = [i for i, e in enumerate(examples) if e.split == "train"]
    texts = [e.text for e in examples]
    m = fit_stage([texts[i] for i in tr], [examples[i].harmful for i in tr], cfg,
                  hidden[tr] if hidden is not None else None,
                  weights=[example_weight(examples[i], cfg) for i in tr])
    scores = predict_stage(m, texts, hidden)
    return m, scores


def cross_validated(cfg: FastConfig, examples, hidden, folds: int = 5) -> dict:
    """Out-of-fold scores on the training split (folds by a hash of the text): metrics over
    all training items, and the share of XSTest's safe look-alikes flagged."""
    import hashlib

    tr = [i for i, e in enumerate(examples) if e.split == "train"]
    fold = {i: int(hashlib.sha256(("cv:" + examples[i].text).encode()).hexdigest()[:8], 16) % folds
            for i in tr}
    scores = np.zeros(len(examples))
    texts = [e.text for e in examples]
    for k in range(folds):
        a = [i for i in tr if fold[i] != k]
        b = [i for i in tr if fold[i] == k]
        m = fit_stage([texts[i] for i in a], [examples[i].harmful for i in a], cfg,
                      hidden[a] if cfg.uses_hidden else None,
                      weights=[example_weight(examples[i], cfg) for i in a])
        scores[b] = predict_stage(m, [texts[i] for i in b], hidden[b] if cfg.uses_hidden else None)
    out = group_metrics([examples[i].harmful for i in tr], [float(scores[i]) for i in tr])
    safe = [i for i in tr if examples[i].source == "xstest" and not examples[i].harmful]
    out["xstest_safe_flagged"] = round(float(np.mean([scores[i] >= 0.5 for i in safe])), 4)
    return out


def summarise(examples, scores):
    out = {}
    for name, idx in eval_groups(examples).items():
        out[name] = group_metrics([examples[i].harmful for i in idx], [float(scores[i]) for i in idx])
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default="runs/guard_hidden")
    ap.add_argument("--out", default="runs/guard_probe.json")
    ap.add_argument("--train-share", type=float, default=1.0)
    ap.add_argument("--big-test-share", type=float, default=1.0)
    ap.add_argument("--skip-output", action="store_true")
    ap.add_argument("--chat-share", type=float, default=0.35)
    ap.add_argument("--render", action="store_true", help="print --out as a markdown table and exit")
    args = ap.parse_args()
    if args.render:
        print(render(json.loads(Path(args.out).read_text())))
        return
    from specguard.backends.embedded import EmbeddedBackend

    backend = EmbeddedBackend()
    await backend.load()
    # The probe comparison runs on a subsample chosen by a hash of the text (a share of the
    # training split; of the held-out split all of XSTest, HarmBench, JBB, SST and U-SafeBench,
    # and a share of OpenAI moderation and ToxicChat), so that hidden states fit the time a
    # shared 2-core machine allows; the TF-IDF baseline is trained and scored on the same items.
    def keep(e) -> bool:
        if e.split == "train":
            return _keep(e.text, args.train_share)
        if e.source in ("openai_moderation", "toxicchat"):
            return _keep(e.text, args.big_test_share)
        return True

    examples = [e for e in input_examples() if keep(e)]
    print(f"{len(examples)} examples", flush=True)
    texts = [e.text for e in examples]
    cache = Path(args.cache)
    results = {}

    def record(cfg: FastConfig, ex, scores, note=""):
        s = summarise(ex, scores)
        results[cfg.label() + note] = s
        print(f"{cfg.label() + note:48s} " + "  ".join(
            f"{k[:10]}: F1 {v['f1']:.3f} AUPRC {v['auprc']:.3f} benign-flag {v['benign_flagged_rate']:.3f}"
            for k, v in s.items()), flush=True)

    # (A) Raw text on the whole probe sample: TF-IDF vs probes (last token / mean, logistic
    # regression / MLP) vs TF-IDF + hidden states.
    raw = {}
    raw["last"], raw["mean"] = await cached_hidden(backend, texts, False, cache)
    _, s = run(FastConfig(), examples)
    record(FastConfig(), examples, s)
    for pooling in ("last", "mean"):
        cfg = FastConfig(features="hidden", chat=False, pooling=pooling)
        _, s = run(cfg, examples, raw[pooling])
        record(cfg, examples, s)
    best = max(("last", "mean"), key=lambda p: np.mean(
        [g["auprc"] for g in results[FastConfig(features="hidden", chat=False, pooling=p).label()].values()]))
    cfg = FastConfig(features="hidden", chat=False, pooling=best, classifier="mlp")
    _, s = run(cfg, examples, raw[best])
    record(cfg, examples, s)
    for w in (0.05, 0.15, 0.3):
        cfg = FastConfig(features="combined", chat=False, pooling=best, hidden_weight=w)
        _, s = run(cfg, examples, raw[best])
        record(cfg, examples, s, f" w={w}")
    for clf in ("logreg", "mlp"):  # score fusion: TF-IDF and the probe, probabilities averaged
        cfg = FastConfig(features="fusion", chat=False, pooling="last", classifier=clf)
        _, s = run(cfg, examples, raw["last"])
        record(cfg, examples, s)
    # The choice between them, made without the held-out sets: 5-fold cross-validation on
    # the training split.
    results["cv"] = {}
    for cfg in (FastConfig(), FastConfig(features="hidden", chat=False, pooling="last"),
                FastConfig(features="hidden", chat=False, pooling="last", classifier="mlp"),
                FastConfig(features="combined", chat=False, pooling="last", hidden_weight=0.05),
                FastConfig(features="fusion", chat=False, pooling="last"),
                FastConfig(features="fusion", chat=False, pooling="last", classifier="mlp")):
        results["cv"][cfg.label()] = cv = cross_validated(cfg, examples, raw["last"])
        print(f"cv {cfg.label():45s} F1 {cv['f1']:.3f} AUPRC {cv['auprc']:.3f} benign flagged "
              f"{cv['benign_flagged_rate']:.3f} XSTest safe flagged {cv['xstest_safe_flagged']:.3f}",
              flush=True)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))

    # (B) Chat-template wrapping vs raw text, on a hash-chosen part of the sample (the chat
    # pass costs more tokens per text).
    if args.chat_share > 0:
        sub = [i for i, e in enumerate(examples) if _keep("chat:" + e.text, args.chat_share)]
        ex_b = [examples[i] for i in sub]
        chat = {}
        chat["last"], chat["mean"] = await cached_hidden(
            backend, [texts[i] for i in sub], True, cache)
        _, s = run(FastConfig(), ex_b)
        record(FastConfig(), ex_b, s, " [chat subsample]")
        for pooling in ("last", "mean"):
            for is_chat, h in ((False, raw[pooling][sub]), (True, chat[pooling])):
                cfg = FastConfig(features="hidden", chat=is_chat, pooling=pooling)
                _, s = run(cfg, ex_b, h)
                record(cfg, ex_b, s, " [chat subsample]")

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    if args.skip_output:
        return
    # Output check: prompt+response pairs (raw text, both poolings) vs TF-IDF.
    pairs = output_examples()
    ptexts = [e.text for e in pairs]
    plast, pmean = await cached_hidden(backend, ptexts, False, cache)
    te = [i for i, e in enumerate(pairs) if e.split == "test"]
    for cfg, hh in ((FastConfig(), None),
                    (FastConfig(features="hidden", chat=False, pooling="last"), plast),
                    (FastConfig(features="hidden", chat=False, pooling="mean"), pmean),
                    (FastConfig(features="combined", chat=False, pooling="mean", hidden_weight=0.15), pmean),
                    (FastConfig(features="fusion", chat=False, pooling="last", classifier="mlp"), plast),
                    (FastConfig(features="fusion", chat=False, pooling="mean", classifier="mlp"), pmean)):
        _, s = run(cfg, pairs, hh)
        m = group_metrics([pairs[i].harmful for i in te], [float(s[i]) for i in te])
        results["output:" + cfg.label()] = {"pairs": m}
        print(f"output {cfg.label():41s} F1 {m['f1']:.3f} AUPRC {m['auprc']:.3f} "
              f"benign-flag {m['benign_flagged_rate']:.3f}", flush=True)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print("written", args.out)


def render(results: dict) -> str:
    groups = ("openai_moderation", "toxicchat", "xstest", "harmful_vs_benign")
    lines = ["| features | " + " | ".join(f"{g} F1 / AUPRC" for g in groups) + " | XSTest safe flagged |",
             "|---|" + "---|" * (len(groups) + 1)]
    for name, r in results.items():
        if name.startswith("output:") or name == "cv":
            continue
        cells = [f"{r[g]['f1']:.3f} / {r[g]['auprc']:.3f}" if g in r else "-" for g in groups]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['xstest']['benign_flagged_rate']:.1%} |")
    if "cv" in results:
        lines += ["", "5-fold cross-validation on the training split (how the shipped one was chosen):", "",
                  "| features | F1 | AUPRC | benign flagged | XSTest safe flagged |", "|---|---|---|---|---|"]
        for name, r in results["cv"].items():
            lines.append(f"| {name} | {r['f1']:.3f} | {r['auprc']:.3f} | {r['benign_flagged_rate']:.1%} "
                         f"| {r['xstest_safe_flagged']:.1%} |")
    outs = {k.removeprefix("output:"): v["pairs"] for k, v in results.items() if k.startswith("output:")}
    if outs:
        lines += ["", "Output check (prompt + response pairs, held-out 30%):", "",
                  "| features | P | R | F1 | AUPRC | benign flagged |", "|---|---|---|---|---|---|"]
        for name, m in outs.items():
            lines.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} "
                         f"| {m['auprc']:.3f} | {m['benign_flagged_rate']:.1%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(main())
