"""Goodtriever on the embedded llama.cpp model, one sequence at a time.

The embedded backend's embeddings context (embeddings on, pooling none) returns both the
logits and the final normalised hidden state of the last token after each decode, so a step
costs one decode, one search per datastore side and the combination. Everything here runs on
the backend's single llama.cpp worker thread (call `run_on_worker` from async code): the
context's KV cache belongs to one generation at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from ..errors import BackendError
from .retrieval import Retriever, plain_step, sample

if TYPE_CHECKING:
    from ..backends.embedded import EmbeddedBackend


class LlamaDetoxGenerator:
    """Token-by-token generation with an optional Goodtriever retriever (None: plain
    top-p decoding on the same path, the baseline)."""

    def __init__(
        self, backend: EmbeddedBackend, retriever: Retriever | None, *, top_p: float = 0.9,
        ubatch: int | None = None,
    ) -> None:
        self.backend = backend
        self.ubatch = ubatch  # prompt tokens per decode call (None: the context's n_batch)
        self.retriever = retriever
        self.top_p = retriever.settings.top_p if retriever else top_p

    @property
    def _emb(self):
        return self.backend.model.embedder()

    @property
    def eos(self) -> int:
        return self._emb.token_eos()

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        return self._emb.detokenize(list(tokens))

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return self._emb.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def _read(self):
        import llama_cpp
        import numpy as np
        import torch

        emb = self._emb
        ctx = emb._ctx.ctx
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(emb.n_vocab(),))
        hidden = np.ctypeslib.as_array(llama_cpp.llama_get_embeddings_ith(ctx, -1), shape=(emb.n_embd(),))
        return torch.from_numpy(logits.copy())[None, :], hidden.copy()[None, :]

    def _decode(self, tokens: Sequence[int], n_past: int) -> None:
        emb = self._emb
        step = self.ubatch or emb.n_batch
        for i in range(0, len(tokens), step):
            emb._batch.set_batch(batch=list(tokens[i : i + step]), n_past=n_past + i, logits_all=True)
            emb._ctx.decode(emb._batch)

    def next_logprobs(self, logits, hidden):
        if self.retriever is None:
            return plain_step(logits, self.top_p)
        return self.retriever.step(logits, hidden)

    def generate(
        self,
        prompt: Sequence[int],
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        seed: int = 0,
        stop_ids: Sequence[int] = (),
        samples: int = 1,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Iterator[tuple[int, int, float]]:
        """Yield (sample index, token id, its log-prob under the combined distribution) as each
        token is chosen. With samples > 1 the prompt is decoded once and its KV cache reused."""
        import torch

        emb = self._emb
        n_ctx = emb.n_ctx()
        if not prompt:
            raise BackendError("Empty prompt.", hint="Give the model at least one token.")
        if len(prompt) + max_new_tokens > n_ctx:
            raise BackendError(
                f"The prompt ({len(prompt)} tokens) and {max_new_tokens} new tokens exceed the "
                f"context ({n_ctx}).",
                hint="Shorten the prompt or ask for fewer tokens.",
            )
        emb._ctx.kv_cache_clear()
        self._decode(prompt, 0)
        first = self._read()
        gen = torch.Generator().manual_seed(seed)
        stops = set(stop_ids) | {emb.token_eos()}
        for s in range(samples):
            if s:
                emb._ctx.kv_cache_seq_rm(0, len(prompt), -1)
            logits, hidden = first
            n_past = len(prompt)
            for _ in range(max_new_tokens):
                if cancelled():
                    return
                lp = self.next_logprobs(logits, hidden)
                tok = int(sample(lp, temperature, gen)[0])
                yield s, tok, float(lp[0, tok])
                if tok in stops:
                    break
                self._decode([tok], n_past)
                n_past += 1
                logits, hidden = self._read()


__all__ = ["LlamaDetoxGenerator"]
