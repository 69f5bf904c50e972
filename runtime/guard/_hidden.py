"""Batched final hidden states from the embedded model for probes: several sequences per
llama.cpp decode (the embedding context has a unified KV cache and keeps sequences apart by
seq_id), read back as the last token's state and the token mean of each text in one pass."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ..types import Message, Role

MAX_TOKENS = 256  # a probe reads at most this many tokens of a text (its end, where it matters)
# Tokens per decode. The sequences of one decode share a KV cache and every token's attention
# spans all of it (masked), so the cost per text grows with the batch: a few hundred tokens
# per decode amortise the call overhead without paying that.
BATCH_TOKENS = 512


def _pooled(model: Any, texts: Sequence[str], chat: bool, max_tokens: int):
    import llama_cpp
    import numpy as np

    emb = model.embedder()
    n_embd = emb.n_embd()
    n_batch = min(emb.n_batch, max(BATCH_TOKENS, max_tokens))
    n_seq_max = max(1, int(emb.context_params.n_seq_max))
    last = np.zeros((len(texts), n_embd), dtype=np.float32)
    mean = np.zeros((len(texts), n_embd), dtype=np.float32)
    seqs: list[list[int]] = []
    for text in texts:
        if chat:
            # An empty system turn: the template's default system prompt would add ~30 tokens
            # to every text for nothing a probe needs.
            text = model.render([Message(role=Role.SYSTEM, content=""),
                                 Message(role=Role.USER, content=text)])
        toks = emb.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        seqs.append(toks[-max_tokens:] or [emb.token_bos()])

    def flush(idx: list[int]) -> None:
        emb._ctx.kv_cache_clear()
        emb._batch.reset()
        for seq_id, i in enumerate(idx):
            emb._batch.add_sequence(seqs[i], seq_id, True)
        emb._ctx.decode(emb._batch)
        total = sum(len(seqs[i]) for i in idx)
        ptr = llama_cpp.llama_get_embeddings(emb._ctx.ctx)
        rows = np.ctypeslib.as_array(ptr, shape=(total * n_embd,)).reshape(total, n_embd)
        pos = 0
        for i in idx:
            n = len(seqs[i])
            last[i] = rows[pos + n - 1]
            mean[i] = rows[pos:pos + n].mean(axis=0)
            pos += n
        emb._batch.reset()

    batch: list[int] = []
    used = 0
    for i, toks in enumerate(seqs):
        if batch and (used + len(toks) > n_batch or len(batch) >= n_seq_max):
            flush(batch)
            batch, used = [], 0
        batch.append(i)
        used += len(toks)
    if batch:
        flush(batch)
    emb._ctx.kv_cache_clear()
    return last, mean


async def pooled_hidden_states(backend: Any, texts: Sequence[str], *, chat: bool,
                               max_tokens: int = MAX_TOKENS):
    """(last-token states, token-mean states) as two (n, n_embd) float32 arrays, computed on
    the embedded backend's first worker thread, many texts per decode. (One worker: its
    embedding context already decodes a batch on every core.)"""
    model = backend.model
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(model.executor, _pooled, model, list(texts), chat, max_tokens)
