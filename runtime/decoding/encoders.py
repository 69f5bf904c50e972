"""Key encoders: turn a document into (keys, next tokens) for a datastore.

A key is the hidden state after token i, its value the token i+1. The encoder also names its
key space, so a store records what it was built with and refuses any other model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .keyspace import Hook, KeySpace, ModelId, file_sha256, tokenizer_id

if TYPE_CHECKING:
    import numpy as np

    from ..backends.base import TokenStepBackend
    from ..backends.embedded import EmbeddedBackend


@runtime_checkable
class KeyEncoder(Protocol):
    def key_space(self) -> KeySpace: ...

    async def encode(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: keys [n-1, dim] (float32) and next-token ids [n-1] (int32)."""
        ...


def embedded_key_space(backend: TokenStepBackend) -> KeySpace:
    """The key space of a token-step backend (the embedded llama.cpp model) at the final-norm
    hook, read through its public token-step interface."""
    steps = backend.token_stepper()
    return KeySpace(
        model=ModelId(
            name=steps.model_path.stem,
            path=str(steps.model_path),
            sha256=file_sha256(steps.model_path),
        ),
        hook=Hook.FINAL_NORM,
        dim=steps.n_embd,
        tokenizer=tokenizer_id(steps.vocab_size, steps.token_text),
    )


class EmbeddedKeyEncoder:
    """Keys from the embedded llama.cpp model (final normalised hidden state)."""

    name = "llama.cpp"

    def __init__(
        self, backend: EmbeddedBackend, *, max_tokens: int = 512, ubatch: int | None = None
    ) -> None:
        self.backend = backend
        self.max_tokens = max_tokens
        self.ubatch = ubatch  # tokens per llama.cpp decode call (None: the whole text)
        self._space: KeySpace | None = None

    def key_space(self) -> KeySpace:
        if self._space is None:
            self._space = embedded_key_space(self.backend)
        return self._space

    async def encode(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        import numpy as np

        dim = self.key_space().dim
        out = []
        for toks, states in await self.backend.token_hidden_states(
            texts, max_tokens=self.max_tokens, ubatch=self.ubatch
        ):
            if states is None or len(toks) < 2:
                out.append((np.zeros((0, dim), np.float32), np.zeros(0, np.int32)))
                continue
            out.append((states[:-1].astype(np.float32), np.asarray(toks[1:], np.int32)))
        return out


class TorchKeyEncoder:
    """Keys of the same GGUF model read through torch: transformers dequantizes the file into
    a Llama model and the keys are its final-norm output (the hook of the llama.cpp encoder, on
    the same token ids), so it reports the same key space and a store may hold keys of both.

    Why it exists: with the CPU's extra llama.cpp buffer types off (they crash this machine),
    llama.cpp read about 25-45 tokens per CPU second here, torch about 400 (one thread, fp32,
    documents batched by length). Loading the GGUF into torch takes a minute or more.
    """

    name = "torch"

    def __init__(self, gguf_path: str | Path, *, max_tokens: int = 512, batch: int = 8,
                 threads: int | None = None, device: str = "cpu") -> None:
        self.path = Path(gguf_path)
        self.max_tokens = max_tokens
        self.batch = batch
        self.threads = threads
        self.device = device
        self._model: Any = None
        self._tok: Any = None
        self._space: KeySpace | None = None
        self._model_id: ModelId | None = None

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, model_id: ModelId, *, max_tokens: int = 512,
                   batch: int = 8, threads: int | None = None) -> TorchKeyEncoder:
        """An encoder over a model already in memory (a transformers causal LM)."""
        enc = cls(model_id.path or model_id.name, max_tokens=max_tokens, batch=batch,
                  threads=threads, device=str(next(model.parameters()).device))
        enc._model, enc._tok, enc._model_id = model.eval(), tokenizer, model_id
        return enc

    def _load(self) -> None:
        if self._model is not None:
            return
        from ..errors import require

        torch = require("torch", "torch")
        transformers = require("transformers", "torch")
        if self.threads:
            torch.set_num_threads(self.threads)
        kw = {"gguf_file": self.path.name}
        self._tok = transformers.AutoTokenizer.from_pretrained(str(self.path.parent), **kw)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(self.path.parent), dtype=torch.float32, **kw).to(self.device).eval()
        self._model = model

    def key_space(self) -> KeySpace:
        if self._space is None:
            self._load()
            tok = self._tok
            self._space = KeySpace(
                model=self._model_id or ModelId(name=self.path.stem, path=str(self.path),
                                                sha256=file_sha256(self.path)),
                hook=Hook.FINAL_NORM,
                dim=int(self._model.config.hidden_size),
                tokenizer=tokenizer_id(len(tok), lambda i: tok.convert_ids_to_tokens(int(i))),
            )
        return self._space

    def token_ids(self, text: str) -> list[int]:
        """Raw text to ids as the llama.cpp encoder reads it (no BOS, specials as text)."""
        self._load()
        return list(self._tok(text, add_special_tokens=False,
                              split_special_tokens=True)["input_ids"])[: self.max_tokens]

    def _run(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        import numpy as np
        import torch

        self._load()
        if self.threads:
            torch.set_num_threads(self.threads)
        dim = int(self._model.config.hidden_size)
        rows = [self.token_ids(t) for t in texts]
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(rows)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # batches of like length
        base = getattr(self._model, "model", None)
        pad = 0
        for start in range(0, len(order), self.batch):
            idx = [i for i in order[start:start + self.batch] if len(rows[i]) >= 2]
            for i in order[start:start + self.batch]:
                if len(rows[i]) < 2:
                    out[i] = (np.zeros((0, dim), np.float32), np.zeros(0, np.int32))
            if not idx:
                continue
            width = max(len(rows[i]) for i in idx)
            ids = torch.tensor([rows[i] + [pad] * (width - len(rows[i])) for i in idx],
                               device=self.device)
            attn = torch.tensor([[1] * len(rows[i]) + [0] * (width - len(rows[i]))
                                 for i in idx], device=self.device)
            with torch.inference_mode():  # right padding: causal attention never sees it
                if base is not None:
                    states = base(input_ids=ids, attention_mask=attn).last_hidden_state
                else:
                    states = self._model(input_ids=ids, attention_mask=attn,
                                         output_hidden_states=True).hidden_states[-1]
            states = states.float().cpu().numpy()
            for j, i in enumerate(idx):
                n = len(rows[i])
                out[i] = (np.ascontiguousarray(states[j, : n - 1], dtype=np.float32),
                          np.asarray(rows[i][1:], np.int32))
        return [o for o in out if o is not None]

    async def encode(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        import asyncio

        return await asyncio.to_thread(self._run, list(texts))


__all__ = ["EmbeddedKeyEncoder", "KeyEncoder", "TorchKeyEncoder", "embedded_key_space"]
