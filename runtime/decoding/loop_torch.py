"""Goodtriever on a torch model (transformers): batched, with a KV cache, on GPU or CPU.

The model can be a Hugging Face folder or the embedded GGUF loaded into torch
(`TorchDetoxGenerator.from_pretrained(folder, gguf_file=name)`, needs `gguf` and
`accelerate`). Keys are `hidden_states[-1]` (the final-norm output for Llama-type models), the
same hook as the llama.cpp loop, so a store built from one GGUF serves both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import require
from .keyspace import Hook, KeySpace, ModelId, file_sha256, tokenizer_id
from .retrieval import Retriever, plain_step, sample

if TYPE_CHECKING:
    import torch


class TorchDetoxGenerator:
    """Batched generation with an optional Goodtriever retriever (None: plain top-p)."""

    def __init__(
        self, model: Any, tokenizer: Any, retriever: Retriever | None = None, *,
        top_p: float = 0.9, model_id: ModelId | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.retriever = retriever
        self.top_p = retriever.settings.top_p if retriever else top_p
        self.model_id = model_id or ModelId(name=str(getattr(model, "name_or_path", "torch")))

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, *, gguf_file: str | None = None, device: str | None = None,
        retriever: Retriever | None = None, top_p: float = 0.9,
    ) -> TorchDetoxGenerator:
        torch = require("torch", "torch")
        transformers = require("transformers", "torch")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        kw = {"gguf_file": gguf_file} if gguf_file else {}
        tok = transformers.AutoTokenizer.from_pretrained(str(folder), **kw)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=dtype, **kw
        ).to(device)
        if gguf_file:
            path = Path(folder) / gguf_file
            mid = ModelId(name=path.stem, path=str(path), sha256=file_sha256(path))
        else:
            mid = ModelId(name=Path(folder).name, path=str(folder))
        return cls(model, tok, retriever, top_p=top_p, model_id=mid)

    def key_space(self) -> KeySpace:
        tok = self.tokenizer
        return KeySpace(
            model=self.model_id,
            hook=Hook.FINAL_NORM,
            dim=int(self.model.config.hidden_size),
            tokenizer=tokenizer_id(len(tok), lambda i: tok.convert_ids_to_tokens(int(i))),
        )

    @property
    def device(self):
        return next(self.model.parameters()).device

    def _forward(self, ids, attn, pos, past):
        import inspect

        # transformers 5 renamed past_key_values to cache (argument and output)
        name = "cache" if "cache" in inspect.signature(self.model.forward).parameters else (
            "past_key_values"
        )
        out = self.model(
            input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True,
            output_hidden_states=True, **{name: past},
        )
        return out.logits[:, -1].float(), out.hidden_states[-1][:, -1].float(), getattr(out, name)

    def _next(self, logits: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        if self.retriever is None:
            return plain_step(logits, self.top_p)
        return self.retriever.step(logits, hidden)  # search `torch`: stays on the device

    def generate(
        self, prompts: Sequence[str] | Sequence[Sequence[int]], *, max_new_tokens: int,
        temperature: float = 1.0, seed: int = 0,
    ) -> list[list[int]]:
        """New token ids per prompt (a batch, left-padded; each row stops at EOS)."""
        import torch

        dev = self.device
        rows = [
            list(p) if not isinstance(p, str)
            else self.tokenizer(p, add_special_tokens=False)["input_ids"]
            for p in prompts
        ]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=dev)
        attn = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=dev)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        gen = torch.Generator(device=dev).manual_seed(seed)
        eos = self.tokenizer.eos_token_id
        done = torch.zeros(len(rows), dtype=torch.bool, device=dev)
        out: list[list[int]] = [[] for _ in rows]
        with torch.inference_mode():
            logits, hidden, past = self._forward(ids, attn, pos, None)
            for _ in range(max_new_tokens):
                lp = self._next(logits, hidden).to(dev)
                tok = sample(lp, temperature, gen)
                for i, t in enumerate(tok.tolist()):
                    if not done[i]:
                        out[i].append(t)
                done |= tok == eos
                if bool(done.all()):
                    break
                attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=1)
                pos = pos[:, -1:] + 1
                logits, hidden, past = self._forward(tok[:, None], attn, pos, past)
        return out


__all__ = ["TorchDetoxGenerator"]
